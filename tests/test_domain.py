"""The sample domain: a model reads every input in the units it was fitted in
(integer samples at full scale), or refuses it naming both dtypes."""

import numpy as np
import pytest

from sklearn_walloc import WallocCodec, WallocTransformer
from sklearn_walloc._domain import from_domain, sample_dtype_name, to_domain
from sklearn_walloc.metrics import psnr

TINY = dict(decoder_width=8, decoder_depth=1, max_iter=0, random_state=0)


@pytest.fixture(scope="module")
def photo_codec(small_photos):
    return WallocCodec(latent_dim=6, levels=2, **TINY).fit(small_photos)


@pytest.fixture(scope="module")
def audio():
    """Stereo 16-bit 'music' and an int16 model fitted on it."""
    rng = np.random.default_rng(3)
    t = np.arange(4096) / 8000
    X = np.stack(
        [
            np.stack([np.sin(2 * np.pi * f * t), np.sin(2 * np.pi * 1.3 * f * t)], -1)
            * 0.5
            + 0.01 * rng.standard_normal((t.size, 2))
            for f in (220, 330, 440)
        ]
    )
    X16 = np.round(X * 2**15).astype(np.int16)
    codec = WallocCodec(latent_dim=4, levels=2, signal_ndim=1, **TINY).fit(X16)
    return codec, X, X16


def test_the_model_records_the_fitted_dtype(photo_codec, audio):
    assert photo_codec.spec_.sample_dtype == "uint8"
    assert photo_codec.data_range_ == 255.0
    assert audio[0].spec_.sample_dtype == "int16"
    assert audio[0].data_range_ == 65535.0


def test_float_photos_in_0_1_code_like_the_uint8_photos(photo_codec, small_photos):
    X = np.stack(small_photos[:2])
    Xf = X.astype(np.float64) / 255
    ref = psnr(
        photo_codec.decompress(photo_codec.compress(X), restore=True), X, data_range=255
    )
    Rf = photo_codec.decompress(photo_codec.compress(Xf), restore=True)
    assert Rf.dtype == np.float64 and Rf.min() >= 0 and Rf.max() <= 1
    assert abs(psnr(Rf, Xf, data_range=1.0) - ref) < 0.1
    # score is honest: in the model's units, on the converted input.
    assert abs(photo_codec.score(Xf) - photo_codec.score(X)) < 0.01
    per_signal = np.mean([psnr(r, x, data_range=1.0) for r, x in zip(Rf, Xf)])
    assert abs(photo_codec.score(Xf) - per_signal) < 0.1
    # restore=False and inverse_transform stay float32 in the model's units.
    Y = photo_codec.decompress(photo_codec.compress(Xf), restore=False)
    assert Y.dtype == np.float32 and Y.max() > 100


def test_float_photos_in_0_255_are_refused(photo_codec, small_photos):
    X = np.stack(small_photos[:1]).astype(np.float64)
    msg = r"X is float64 with values in \[0, 231\].*fitted on uint8.*\[0, 1\]"
    for method in ("transform", "score", "compress", "bits_per_sample"):
        with pytest.raises(ValueError, match=msg):
            getattr(photo_codec, method)(X)
    with pytest.raises(ValueError, match=r"X\[1\] is float64"):
        photo_codec.transform([small_photos[0], X[0]])


def test_negative_floats_into_an_unsigned_model_are_refused(photo_codec, small_photos):
    # Issue 20: -0.5 was accepted and clipped silently; floats are [0, 1] here.
    X = np.stack(small_photos[:1]).astype(np.float64) / 255
    bad = X.copy()
    bad[0, 3, 4, 1] = -0.5
    msg = r"X is float64 with values in \[-0.5, .*fitted on uint8.*\[0, 1\]"
    for method in ("transform", "compress", "score"):
        with pytest.raises(ValueError, match=msg):
            getattr(photo_codec, method)(bad)
    # Float rounding at the ends (1e-6 of full scale) is no error.
    edge = X.copy()
    edge[0, 0, 0] = (-1e-7, 1 + 1e-7, 0.0)
    R = photo_codec.decompress(photo_codec.compress(edge), restore=True)
    assert R.min() >= 0 and R.max() <= 1
    with pytest.raises(ValueError, match="fitted on uint8"):
        photo_codec.transform(X - 1e-5)


def test_signed_integers_into_an_unsigned_model(photo_codec, small_photos):
    # int16 is read at full scale ([-1, 1]); negative samples have no uint8 value.
    X16 = np.stack(small_photos[:1]).astype(np.int16) * 128
    assert np.isfinite(photo_codec.score(X16))
    X16[0, 0, 0, 0] = -3
    with pytest.raises(ValueError, match=r"X is int16 with values in \[-3, .*never"):
        photo_codec.compress(X16)


def test_16_bit_photos_through_an_8_bit_model(photo_codec, small_photos):
    X = np.stack(small_photos[:2])
    X16 = X.astype(np.uint16) * 257
    assert abs(photo_codec.score(X16) - photo_codec.score(X)) < 0.01
    R16 = photo_codec.decompress(photo_codec.compress(X16), restore=True)
    R8 = photo_codec.decompress(photo_codec.compress(X), restore=True)
    assert R16.dtype == np.uint16
    assert abs(psnr(R16, X16, data_range=65535) - psnr(R8, X, data_range=255)) < 0.1


def test_24_bit_and_float_audio_through_a_16_bit_model(audio):
    codec, X, X16 = audio
    X24 = np.round(X * 2**23).astype(np.int32) << 8  # left-justified, as soundfile
    Xf = X.astype(np.float32)
    ref = psnr(
        codec.decompress(codec.compress(X16), restore=True), X16, data_range=2**16
    )
    R24 = codec.decompress(codec.compress(X24), restore=True)
    Rf = codec.decompress(codec.compress(Xf), restore=True)
    assert R24.dtype == np.int32 and Rf.dtype == np.float32
    assert abs(psnr(R24, X24, data_range=2**32) - ref) < 0.1
    assert abs(psnr(Rf, Xf, data_range=2.0) - ref) < 0.1
    assert abs(codec.score(X24) - codec.score(X16)) < 0.1
    assert abs(codec.score(Xf) - codec.score(X16)) < 0.1
    with pytest.raises(ValueError, match=r"float32 .*fitted on int16.*\[-1, 1\]"):
        codec.transform(Xf * 2)


def test_value_domains_refuse_full_scale_integers(rng):
    X = rng.random((3, 16, 16, 3))
    w = WallocTransformer(latent_dim=4, levels=1, **TINY).fit(X)
    assert w.spec_.sample_dtype == "float64"
    with pytest.raises(ValueError, match=r"X is uint8.*float64.*X.astype\('float64'\)"):
        w.transform((X * 255).astype(np.uint8))
    # Value dtypes mix freely: numbers as they are.
    np.testing.assert_array_equal(
        w.transform(X.astype(np.float32)), w.transform(X.astype(np.float32))
    )
    assert w.transform((X > 0.5).astype(np.int64)).shape == (3, 8, 8, 4)


def test_int64_into_a_full_scale_model_is_read_as_is(photo_codec, small_photos):
    X = np.stack(small_photos[:1])
    np.testing.assert_array_equal(
        photo_codec.transform(X.astype(np.int64)), photo_codec.transform(X)
    )
    with pytest.raises(ValueError, match=r"int64 with values in \[-1, .*\[0, 255\]"):
        photo_codec.transform(X.astype(np.int64) - 1)


def test_values_beyond_float32_are_refused(photo_codec):
    X = np.zeros((1, 16, 16, 3))
    X[0, 3, 4, 1] = 1e39
    with pytest.raises(ValueError, match="float32's range"):
        photo_codec.transform(X)
    w = WallocTransformer(latent_dim=4, levels=1, **TINY)
    with pytest.raises(ValueError, match="float32's range"):
        w.fit(X)


@pytest.mark.parametrize(
    "source,domain,x,expected",
    [
        ("uint8", "uint8", 3.0, 3.0),
        ("float32", "float64", 3.0, 3.0),
        ("bool", "float32", 1.0, 1.0),
        ("uint16", "uint8", 65535.0, 255.0),
        ("int32", "int16", 2.0**31 - 2**16, 2.0**15 - 1),
        ("uint8", "int16", 255.0, 2.0**15),
        ("float64", "uint8", 0.5, 127.5),
        ("float32", "int16", -1.0, -(2.0**15)),
        ("int8", "int16", -128.0, -(2.0**15)),
        ("int64", "uint8", 200.0, 200.0),
        ("uint8", None, 200.0, 200.0),
        ("float64", None, 200.0, 200.0),
    ],
)
def test_the_rule_and_its_inverse(source, domain, x, expected):
    got = to_domain(np.array([x]), np.dtype(source), domain)
    np.testing.assert_allclose(got, [expected], rtol=1e-6)
    back = from_domain(got.astype(np.float32), np.dtype(source), domain)
    np.testing.assert_allclose(back, [x], rtol=1e-6)


def test_restore_clips_floats_to_full_scale():
    y = np.array([-300.0, 0.0, 300.0], np.float32)
    assert from_domain(y, np.dtype("float32"), "uint8").tolist() == [0.0, 0.0, 1.0]
    y = np.array([-40000.0, 40000.0], np.float32)
    assert from_domain(y, np.dtype("float64"), "int16").tolist() == [-1.0, 1.0]


def test_domain_names():
    assert sample_dtype_name(np.dtype(">i2")) == "int16"
    assert sample_dtype_name(np.longdouble) == "float64"
    assert sample_dtype_name(np.dtype(object)) == "float64"
    assert sample_dtype_name(np.dtype(bool)) == "bool"
