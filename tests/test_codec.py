"""WallocCodec: exact round trips, batch invariance, refusal of foreign or corrupt
blobs, rates, persistence and golden blobs.

The golden files in ``tests/data/golden_codec_*`` were written once by
``_write_golden()`` (``python tests/test_codec.py --write-golden``; ``_v3`` and
``_wide`` likewise); never
regenerate them to make a test pass: they prove that blobs written by an earlier
version still decode.
"""

import inspect
import pickle
import struct
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from _blob_helpers import repack
from sklearn.base import clone
from sklearn.datasets import load_digits

from sklearn_walloc import WallocTransformer, _signal
from sklearn_walloc import codec as codec_module
from sklearn_walloc._container import FORMAT_VERSION, unpack_blob
from sklearn_walloc._entropy import decode_latents, encode_latents
from sklearn_walloc.codec import GAIN_MAX_LOSS_DB, WallocCodec, blob_info
from sklearn_walloc.metrics import psnr, snr

DATA = Path(__file__).parent / "data"
TINY = dict(decoder_width=8, decoder_depth=1, max_iter=0, random_state=0)
DEFAULT_CHUNK = _signal._CHUNK_SCALARS


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Decode in smaller fixed chunks than the default, for speed.

    The transformer pads every chunk to a fixed number of values, so one small
    signal costs as much as a full chunk. The contract (exact equality with the
    transformer, batch invariance) must hold for any chunk size; the tests that
    need the default (batch invariance, golden blobs) set it back.
    """
    monkeypatch.setattr(_signal, "_CHUNK_SCALARS", 2**14)


def _perturb(codec, seed=0):
    """Give the (zero-initialised) residual decoder path random weights, so the
    tests exercise a nonlinear decoder without paying for training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in codec.module_.decoder.refine.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return codec


def _expected(codec, X):
    """``inverse_transform(transform(X))`` cropped to the original sizes."""
    R = codec.inverse_transform(codec.transform(X))
    if isinstance(X, list):
        return [
            r[tuple(slice(0, s) for s in np.shape(x)[: codec.signal_ndim])]
            for r, x in zip(R, X)
        ]
    if R.ndim == 2:  # flat rows are cropped by inverse_transform already
        return R
    spatial = X.shape[1 : 1 + codec.signal_ndim]
    return R[(slice(None), *(slice(0, s) for s in spatial))]


def _assert_same(a, b):
    if isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)


@pytest.fixture(scope="module")
def rgb_codec(small_photos):
    return _perturb(WallocCodec(latent_dim=6, levels=2, **TINY).fit(small_photos))


@pytest.fixture(scope="module")
def stereo_codec():
    rng = np.random.default_rng(1)
    t = np.arange(2048) / 8000
    X = np.stack(
        [
            np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * 1.5 * f * t)], -1)
            + 0.05 * rng.standard_normal((t.size, 2))
            for f in (220, 330, 440)
        ]
    )
    codec = WallocCodec(latent_dim=3, levels=2, signal_ndim=1, **TINY).fit(
        (X * 8000).astype(np.int16)
    )
    return _perturb(codec, 1)


# ------------------------------------------------------------ exact round trips
def test_rgb_batch_odd_size_round_trip_is_exact(rgb_codec, small_photos):
    X = np.stack([p[:37, :45] for p in small_photos])  # uint8, odd sizes
    blobs = rgb_codec.compress(X)
    assert isinstance(blobs, list) and all(isinstance(b, bytes) for b in blobs)
    Y = rgb_codec.decompress(blobs, restore=False)
    assert Y.shape == (4, 37, 45, 3) and Y.dtype == np.float32
    _assert_same(Y, _expected(rgb_codec, X))


def test_list_of_different_sizes_round_trip_is_exact(rgb_codec, small_photos):
    X = [small_photos[0], small_photos[1][:33, :50], small_photos[2][:5, :3]]
    Y = rgb_codec.decompress(rgb_codec.compress(X), restore=False)
    assert [y.shape for y in Y] == [(64, 80, 3), (33, 50, 3), (5, 3, 3)]
    _assert_same(Y, _expected(rgb_codec, X))


@pytest.mark.parametrize(
    "shape, latent_dim, levels",
    [
        ((3, 21, 13), 3, 2),  # grayscale batch without a channel axis
        ((2, 19, 17, 1), 3, 2),  # grayscale with a channel axis
        ((2, 12, 10, 31), 8, 1),  # 31-band hyperspectral
    ],
)
def test_grayscale_and_hyperspectral_round_trip(shape, latent_dim, levels):
    rng = np.random.default_rng(0)
    X = rng.random(shape).cumsum(axis=1).astype(np.float32)
    codec = WallocCodec(latent_dim=latent_dim, levels=levels, **TINY).fit(X)
    codec = _perturb(codec)
    blobs = codec.compress(X)
    Y = codec.decompress(blobs, restore=False)
    assert Y.shape == (*shape[:3], shape[3] if len(shape) == 4 else 1)
    _assert_same(Y, _expected(codec, X))
    # restore=True gives the original rank and dtype back.
    assert codec.decompress(blobs, restore=True).shape == shape


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_audio_round_trip_mono_stereo_multichannel(channels):
    rng = np.random.default_rng(channels)
    X = (rng.standard_normal((3, 301, channels)).cumsum(axis=1) * 500).astype(np.int16)
    codec = WallocCodec(latent_dim=channels, levels=2, signal_ndim=1, **TINY).fit(X)
    codec = _perturb(codec)
    # Without the gain (test_adaptive_gain_*), the identity with the
    # transformer holds for every signal, quiet ones included.
    codec.set_params(adaptive_gain=False)
    blobs = codec.compress(X)
    Y = codec.decompress(blobs, restore=False)
    assert Y.shape == (3, 301, channels) and Y.dtype == np.float32
    _assert_same(Y, _expected(codec, X))
    # Audio of different lengths, mono given without a channel axis.
    L = [
        x[: 100 + 37 * i, 0] if channels == 1 else x[: 100 + 37 * i]
        for i, x in enumerate(X[:2])
    ] + [X[2, :100, 0] if channels == 1 else X[2, :100]]
    blobs = codec.compress(L)
    Yl = codec.decompress(blobs, restore=False)
    assert isinstance(Yl, list)
    _assert_same(Yl, _expected(codec, L))
    R = codec.decompress(blobs, restore=True)
    for r, x, y in zip(R, L, Yl):
        assert r.dtype == np.int16 and r.shape == x.shape
        ref = np.clip(np.rint(y.astype(np.float64)), -32768, 32767).reshape(x.shape)
        assert np.array_equal(r, ref.astype(np.int16))


def _quiet_and_loud(rng, n=4096):
    t = np.arange(n) / 44100
    tone = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1330 * t + 1)
    loud = tone[:, None] * [9000, 7000] + rng.normal(0, 300, (n, 2))
    return loud, loud / 300  # -50 dB: a quiet clip


def test_adaptive_gain_keeps_quiet_audio_precise(rng):
    loud, quiet = _quiet_and_loud(rng)
    fit = np.stack([loud, loud[::-1]]).astype(np.int16)
    # The closed form: its linear decoder scales with the signal, so the SNR
    # of a scaled copy measures the quantiser alone.
    codec = WallocCodec(latent_dim=4, levels=3, signal_ndim=1, latent_bits=8, **TINY)
    codec.fit(fit)
    X = [loud.astype(np.int16), quiet.astype(np.int16)]
    blobs = codec.compress(X)
    gains = [unpack_blob(b).gain_steps for b in blobs]
    assert gains[0] == 0 and gains[1] >= 20  # quarter octaves: -50 dB
    assert blob_info(blobs[1])["gain_steps"] == gains[1]
    Y = codec.decompress(blobs, restore=False)
    R = _expected(codec, X)
    # Gain 1: exactly the transformer's round trip.
    assert np.array_equal(Y[0], R[0])

    # The quiet clip: much better than the gainless 8-bit round trip.
    def snr(x, y):
        return 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((x - y) ** 2))

    assert snr(X[1], Y[1]) > snr(X[1], R[1]) + 5
    # ... and as good as 16-bit latents, at a fraction of the bytes.
    wide = clone(codec).set_params(latent_bits=16).fit(fit)
    blobs16 = wide.compress(X)
    assert snr(X[1], Y[1]) > snr(X[1], wide.decompress(blobs16, restore=False)[1]) - 0.5
    assert len(blobs[1]) < 0.7 * len(blobs16[1])
    # Without the gain the blobs are the transformer's, and larger SNR gap.
    plain = codec.set_params(adaptive_gain=False).compress(X)
    assert [unpack_blob(b).gain_steps for b in plain] == [0, 0]
    assert plain[0] == blobs[0]
    _assert_same(list(codec.decompress(plain, restore=False)), R)
    # Batch invariance holds with gains: alone or together, the same bytes.
    codec.set_params(adaptive_gain=True)
    assert codec.compress([X[1]]) == blobs[1:]
    assert np.array_equal(codec.decompress(blobs[1:], restore=False)[0], Y[1])
    restored = codec.decompress(blobs, restore=True)
    assert restored[1].dtype == np.int16
    # The nonlinear decoder path undoes the gain before its first layer too.
    _perturb(codec, 1)
    (blob,) = codec.compress([X[1]])
    (y,) = codec.decompress([blob], restore=False)
    b = unpack_blob(blob)
    q = decode_latents(b.payload, (4, 512), 8)
    module = codec.module_
    ref = module.decode(torch.from_numpy(q[None].astype(np.float32)), b.gain_steps)
    ref = ref[0].numpy().T
    # Float32 kernels may differ in summation order between the chunked and
    # the direct call: compare relative to the signal's scale.
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_adaptive_gain_widens_latents_of_precise_clips(monkeypatch):
    # A clean tone: the model represents it to ~51 dB, which 8-bit latents
    # cannot carry (~42 dB). The codec then gives it a higher gain and wider
    # latents, recorded in the blob header; the noisy clip keeps 8 bits, g = 0.
    # First the loss rule alone (no SNR cap), then with the default cap.
    default_cap = codec_module.GAIN_MAX_SNR_DB
    monkeypatch.setattr(codec_module, "GAIN_MAX_SNR_DB", 200.0)
    rng = np.random.default_rng(0)
    loud, _ = _quiet_and_loud(rng)
    t = np.arange(len(loud)) / 44100
    tone = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1330 * t + 1)
    clean = tone[:, None] * [9000, 7000]
    fit = np.stack([loud, loud[::-1]]).astype(np.int16)
    codec = WallocCodec(latent_dim=4, levels=3, signal_ndim=1, latent_bits=8, **TINY)
    codec.fit(fit)
    X = [loud.astype(np.int16), clean.astype(np.int16)]
    blobs = codec.compress(X)
    info = [blob_info(b) for b in blobs]
    assert (info[0]["latent_bits"], info[0]["gain_steps"]) == (8, 0)
    assert 8 < info[1]["latent_bits"] <= 16 and info[1]["gain_steps"] > 0
    Y = codec.decompress(blobs, restore=False)
    assert np.array_equal(Y[0], _expected(codec, X)[0])

    def snr(x, y):
        return 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((x - y) ** 2))

    # Within the loss budget of 16-bit latents (unrounded, in effect), far
    # better than plain 8-bit latents, at fewer bytes than 16-bit ones.
    wide = clone(codec).set_params(latent_bits=16).fit(fit)
    blobs16 = wide.compress(X)
    ref16 = snr(X[1], wide.decompress(blobs16, restore=False)[1])
    assert snr(X[1], Y[1]) > ref16 - GAIN_MAX_LOSS_DB
    plain = codec.set_params(adaptive_gain=False).compress(X)
    snr8 = snr(X[1], codec.decompress(plain, restore=False)[1])
    assert snr(X[1], Y[1]) > snr8 + 4
    assert len(blobs[1]) < 0.7 * len(blobs16[1])
    codec.set_params(adaptive_gain=True)
    # The default cap: rounding noise 45 dB under the signal is accepted, so
    # the tone gets less: fewer bytes, an SNR between the 8-bit and the uncapped
    # ones (gains come in steps of 1.5 dB: it lands near 45 dB, not on it).
    monkeypatch.setattr(codec_module, "GAIN_MAX_SNR_DB", default_cap)
    capped = clone(codec).fit(fit)
    (blob,) = capped.compress(X[1:])
    (y,) = capped.decompress([blob], restore=False)
    assert len(plain[1]) < len(blob) < len(blobs[1])
    assert snr8 + 1 < snr(X[1], y) < snr(X[1], Y[1]) - 1
    monkeypatch.setattr(codec_module, "GAIN_MAX_SNR_DB", 200.0)
    # Batch invariance: alone, first or last in a batch, the same bytes and bits.
    assert codec.compress([X[1]]) == blobs[1:]
    assert codec.compress([X[1], X[0]]) == blobs[::-1]
    assert np.array_equal(codec.decompress(blobs[1:], restore=False)[0], Y[1])
    # The decode is the model's: expand at the blob's bits, undo the gain.
    b = unpack_blob(blobs[1])
    q = decode_latents(b.payload, b.latent_shape, b.latent_bits)
    assert np.abs(q).max() > 127  # really wider than 8 bits
    ref = codec.module_.decode(
        torch.from_numpy(q[None].astype(np.float32)), b.gain_steps, b.latent_bits
    )
    ref = ref[0].numpy().T
    np.testing.assert_allclose(Y[1], ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    # ... on the nonlinear decoder path too (a small residual, so that the
    # model still represents the tone precisely).
    _perturb(codec, 2)
    with torch.no_grad():
        for p in codec.module_.decoder.refine.parameters():
            p.mul_(0.01)
    blobs = codec.compress(X)
    b = unpack_blob(blobs[1])
    assert b.latent_bits > 8
    (y,) = codec.decompress(blobs[1:], restore=False)
    q = decode_latents(b.payload, b.latent_shape, b.latent_bits)
    ref = codec.module_.decode(
        torch.from_numpy(q[None].astype(np.float32)), b.gain_steps, b.latent_bits
    )
    ref = ref[0].numpy().T
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    restored = codec.decompress(blobs, restore=True)
    assert restored[1].dtype == np.int16 and restored[1].shape == X[1].shape


def test_wider_latents_refused_where_no_encoder_writes_them(rgb_codec, small_photos):
    rng = np.random.default_rng(0)
    loud, _ = _quiet_and_loud(rng)
    fit = np.stack([loud, loud[::-1]]).astype(np.int16)
    codec = WallocCodec(latent_dim=4, levels=3, signal_ndim=1, latent_bits=8, **TINY)
    codec.fit(fit)
    (blob,) = codec.compress([loud[:300].astype(np.int16)])
    assert blob_info(blob)["latent_bits"] == 8
    # Wider latents without a gain, or narrower than the model's: refused
    # before the payload is read.
    for fields, match in (
        ({"latent_bits": 9}, "latent_bits 9, but this model has 8"),
        ({"latent_bits": 7}, "latent_bits 7, but this model has 8"),
        ({"latent_bits": 7, "gain_steps": 3}, "latent_bits 7"),
    ):
        with pytest.raises(ValueError, match=match):
            codec.decompress([repack(blob, **fields)])
    # A payload coded at 12 bits with a gain is well-formed and decodes.
    b8 = unpack_blob(blob)
    q = decode_latents(b8.payload, b8.latent_shape, 8).astype(np.int64) * 16
    wide = repack(blob, encode_latents(q, 12), latent_bits=12, gain_steps=16)
    (y,) = codec.decompress([wide], restore=False)
    assert y.shape == (300, 2) and np.isfinite(y).all()
    # Truncated or corrupted wide blobs: a clear error.
    for bad in (wide[:-5], wide[:40], wide[:-6] + bytes([wide[-6] ^ 1]) + wide[-5:]):
        with pytest.raises(ValueError, match="blobs\\[0\\]"):
            codec.decompress([bad], restore=False)
    # Images widen only in format 4, and only with a finer gain.
    (img,) = rgb_codec.compress([small_photos[0][:16, :16]])
    for fields in (
        {"latent_bits": 9, "gain_steps": 1, "version": 3},
        {"latent_bits": 9, "gain_steps": -1},
        {"latent_bits": 9},
    ):
        with pytest.raises(ValueError, match="latent_bits 9"):
            rgb_codec.decompress([repack(img, **fields)], restore=False)


def test_images_never_get_a_gain(rgb_codec, small_photos):
    dark = [(p // 40).astype(np.uint8) for p in small_photos[:2]]
    blobs = rgb_codec.compress(dark)
    assert [unpack_blob(b).gain_steps for b in blobs] == [0, 0]
    Y = rgb_codec.decompress(blobs, restore=False)
    _assert_same(list(Y), _expected(rgb_codec, dark))


def test_flat_rows_round_trip_to_flat_rows():
    X, _ = load_digits(return_X_y=True)
    X = X[:60]
    codec = _perturb(
        WallocCodec(latent_dim=2, levels=1, signal_shape=(8, 8), **TINY).fit(X)
    )
    blobs = codec.compress(X)
    Y = codec.decompress(blobs, restore=False)
    assert Y.shape == (60, 64)
    _assert_same(Y, codec.inverse_transform(codec.transform(X)))
    restored = codec.decompress(blobs, restore=True)
    assert restored.shape == (60, 64) and restored.dtype == np.float64
    # The same signals given as a batch decode to the same values.
    Yb = codec.decompress(codec.compress(X.reshape(60, 8, 8)), restore=False)
    assert np.array_equal(Yb.reshape(60, -1), Y)


def test_restore_rounds_and_clips_to_the_original_dtype(rgb_codec, small_photos):
    X = np.stack(small_photos[:2])
    blobs = rgb_codec.compress(X)
    Y = rgb_codec.decompress(blobs, restore=False)
    R = rgb_codec.decompress(blobs, restore=True)
    assert R.dtype == np.uint8 and R.shape == X.shape
    assert np.array_equal(R, np.clip(np.rint(Y), 0, 255).astype(np.uint8))
    # Mixed dtypes come back as a list, each in its own dtype and scale: floats
    # are read at full scale ([0, 1] for a uint8 model).
    mixed = rgb_codec.decompress(
        rgb_codec.compress([X[0], X[1].astype(np.float32) / 255]), restore=True
    )
    assert isinstance(mixed, list)
    assert [m.dtype for m in mixed] == [np.uint8, np.float32]
    np.testing.assert_allclose(mixed[1], np.clip(Y[1] / 255, 0, 1), atol=1e-3)


def test_decompress_returns_the_callers_units_by_default(rgb_codec, small_photos):
    # Photos in [0, 1] given to a uint8 model come back in [0, 1], float32.
    x = small_photos[0][:40, :48].astype(np.float32) / 255
    (y,) = rgb_codec.decompress(rgb_codec.compress([x]))
    assert y.dtype == np.float32 and y.shape == x.shape
    (m,) = rgb_codec.decompress(rgb_codec.compress([x]), restore=False)
    np.testing.assert_allclose(y, np.clip(m / 255, 0, 1), atol=1e-6)
    # Model units only when asked: 0..255 floats, tens of dB away from the input.
    assert psnr(x, y, data_range=1.0) > psnr(x, m, data_range=1.0) + 20


def test_float_audio_into_an_int16_model_comes_back_in_its_units(stereo_codec, rng):
    t = np.arange(4096) / 8000
    x = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] * np.array([1.0, 0.5])
    x = (x + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)  # [-1, 1]
    (y,) = stereo_codec.decompress(stereo_codec.compress([x]))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y).max() <= 1
    (m,) = stereo_codec.decompress(stereo_codec.compress([x]), restore=False)
    np.testing.assert_allclose(y, np.clip(m / 2**15, -1, 1), atol=1e-6)
    assert snr(x, y) > snr(x, m) + 60  # model (int16) units: about -90 dB


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.uint16])
def test_tiled_restore_equals_restoring_the_float_decode(
    rgb_codec, small_photos, monkeypatch, dtype
):
    from sklearn_walloc import _tiles

    x = small_photos[1][:61, :70]
    x = x.astype(dtype) / 255 if dtype == np.float32 else x.astype(dtype)
    if dtype == np.uint16:
        x = x * 257
    blobs = rgb_codec.compress([x])
    whole = rgb_codec.decompress(blobs)[0]
    model = rgb_codec.decompress(blobs, restore=False)[0]
    monkeypatch.setattr(_tiles, "TILE_VALUES", 3 * 16 * 16)  # many small tiles
    tiled = rgb_codec.decompress(blobs)[0]
    assert tiled.dtype == dtype and tiled.shape == x.shape
    # Tiles run other convolution sizes than the whole: equal to float
    # rounding, which a rounding tie can turn into one step of the dtype.
    if dtype == np.float32:
        np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
        return
    scale = 257.0 if dtype == np.uint16 else 1.0
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    expect = np.clip(np.rint(model.astype(np.float64) * scale), lo, hi)
    for ref in (whole, expect):
        diff = np.abs(tiled.astype(np.int64) - ref.astype(np.int64))
        assert diff.max() <= scale and np.mean(diff > 0) < 0.01


def test_score_is_the_psnr_of_the_decoded_integer_photo(rgb_codec, small_photos):
    X = small_photos[:2]
    decoded = rgb_codec.decompress(rgb_codec.compress(X))
    by_hand = np.mean([psnr(x, y, data_range=255) for x, y in zip(X, decoded)])
    assert rgb_codec.score(X) == pytest.approx(by_hand, abs=1e-6)


# ------------------------------------------------------------- batch invariance
def test_batch_invariance_bytes_and_decode(small_photos, monkeypatch):
    monkeypatch.setattr(_signal, "_CHUNK_SCALARS", DEFAULT_CHUNK)
    codec = _perturb(WallocCodec(latent_dim=6, levels=1, **TINY).fit(small_photos))
    X = np.stack(small_photos)
    blobs = codec.compress(X)
    Y = codec.decompress(blobs, restore=False)
    Z = codec.transform(X)
    R = codec.inverse_transform(Z)
    _assert_same(Y, R)
    for i in (0, 3):
        assert codec.compress(X[i : i + 1]) == [blobs[i]]
        assert codec.compress([X[i]]) == [blobs[i]]
        assert np.array_equal(codec.decompress([blobs[i]], restore=False)[0], Y[i])
    assert np.array_equal(codec.inverse_transform(Z[2:3])[0], R[2])


def test_batch_invariance_across_chunks(rgb_codec, small_photos, monkeypatch):
    # Small chunks: a batch spans several chunks, the last one padded.
    monkeypatch.setattr(_signal, "_CHUNK_SCALARS", 2 * 3 * 32 * 32)
    X = np.stack([p[i : i + 29, i : i + 31] for p in small_photos for i in (0, 7)])
    blobs = rgb_codec.compress(X)
    Y = rgb_codec.decompress(blobs, restore=False)
    _assert_same(Y, _expected(rgb_codec, X))
    for i in (0, 4, 7):
        assert rgb_codec.compress(X[i : i + 1]) == [blobs[i]]
        assert np.array_equal(rgb_codec.decompress([blobs[i]], restore=False)[0], Y[i])
    # Any order and composition of blobs.
    order = [7, 3, 3, 0, 5]
    again = rgb_codec.decompress([blobs[i] for i in order], restore=False)
    assert np.array_equal(again, Y[order])


# ------------------------------------------------------------ refusal of blobs
def test_blob_from_another_model_is_refused(rgb_codec, small_photos):
    blobs = rgb_codec.compress([small_photos[0]])
    other = WallocCodec(latent_dim=6, levels=2, **TINY).fit(small_photos[1:])
    with pytest.raises(ValueError, match="another model"):
        other.decompress(blobs, restore=False)
    # Same structure, weights differ in one value: still another model.
    twin = pickle.loads(pickle.dumps(rgb_codec))
    with torch.no_grad():
        twin.module_.decoder.linear.bias[0] += 1e-6
    with pytest.raises(ValueError, match="another model"):
        twin.decompress(blobs, restore=False)
    # A 1D model refuses a 2D blob.
    X1 = np.random.default_rng(0).random((2, 64, 3))
    model_1d = WallocCodec(latent_dim=6, levels=1, signal_ndim=1, **TINY).fit(X1)
    with pytest.raises(ValueError):
        model_1d.decompress(blobs, restore=False)


def test_refit_with_same_seed_and_data_keeps_the_fingerprint(small_photos):
    a = WallocCodec(latent_dim=6, levels=2, **TINY).fit(small_photos)
    b = clone(a).fit(small_photos)
    assert len(a.fingerprint()) == 16 and a.fingerprint() == b.fingerprint()
    assert b.decompress(a.compress(small_photos[:1]), restore=False).shape == (
        1,
        64,
        80,
        3,
    )


@pytest.mark.parametrize(
    "bad",
    [b"", b"WLOC", b"\x00" * 100, "not bytes", 123, None, np.zeros(60, np.uint8)],
)
def test_items_that_are_not_blobs_are_refused(rgb_codec, bad):
    with pytest.raises(ValueError):
        rgb_codec.decompress([bad], restore=False)


def test_decompress_argument_forms(rgb_codec, small_photos):
    (blob,) = rgb_codec.compress([small_photos[0]])
    for bad in (blob, "abc", 5):
        with pytest.raises(ValueError):
            rgb_codec.decompress(bad, restore=False)
    assert rgb_codec.decompress([], restore=False) == []
    Y = rgb_codec.decompress(
        iter([blob, bytearray(blob), memoryview(blob)]), restore=False
    )
    assert Y.shape == (3, 64, 80, 3) and np.array_equal(Y[0], Y[2])


def test_max_values_refuses_declared_huge_signals(rgb_codec, small_photos):
    blobs = rgb_codec.compress([small_photos[0]])
    with pytest.raises(ValueError, match="max_values"):
        rgb_codec.decompress(blobs, max_values=64 * 80 * 3 - 1, restore=False)
    assert rgb_codec.decompress(blobs, max_values=64 * 80 * 3, restore=False).shape == (
        1,
        64,
        80,
        3,
    )
    for bad in (0, -1, 2.5, "big", True):
        with pytest.raises(ValueError, match="max_values"):
            rgb_codec.decompress(blobs, max_values=bad, restore=False)


def test_module_limit_is_read_at_each_call_as_pillow_does(
    rgb_codec, small_photos, monkeypatch
):
    from sklearn_walloc import codec as codec_module

    blobs = rgb_codec.compress(small_photos[:1])
    monkeypatch.setattr(codec_module, "MAX_DECODED_VALUES", 64 * 80 * 3 - 1)
    with pytest.raises(ValueError, match="max_values"):
        rgb_codec.decompress(blobs, restore=False)
    monkeypatch.setattr(codec_module, "MAX_DECODED_VALUES", None)  # check off
    assert rgb_codec.decompress(blobs, restore=False).shape == (1, 64, 80, 3)


def test_allocation_failure_is_a_memory_error_not_corruption(
    rgb_codec, small_photos, monkeypatch
):
    from sklearn_walloc import _entropy

    blobs = rgb_codec.compress(small_photos[:1])

    def no_memory(*args, **kwargs):
        raise MemoryError("cannot allocate 4 GiB")

    monkeypatch.setattr(_entropy, "_decode", no_memory)
    monkeypatch.setattr(_entropy, "_decode_batched", no_memory)
    with pytest.raises(MemoryError):
        rgb_codec.decompress(blobs, restore=False)


def _reseal(blob):
    body = blob[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_fuzzed_blobs_are_refused(rgb_codec, stereo_codec, small_photos):
    """Bit flips, truncations, extensions and random bytes: all ValueError."""
    rng = np.random.default_rng(0)
    audio = (np.random.default_rng(2).standard_normal((157, 2)) * 3000).astype(np.int16)
    cases = [
        (rgb_codec, rgb_codec.compress([small_photos[0][:21, :26]])[0]),
        (stereo_codec, stereo_codec.compress([audio])[0]),
    ]
    n = 0
    for codec, blob in cases:
        assert codec.decompress([blob], restore=False) is not None
        mutated = [blob[:k] for k in range(len(blob))]
        mutated += [blob + rng.bytes(k) for k in (1, 2, 3, 4, 7, 64)]
        for _ in range(1200):
            b = bytearray(blob)
            for pos in rng.integers(0, 8 * len(b), rng.integers(1, 4)):
                b[pos // 8] ^= 1 << (pos % 8)
            mutated.append(bytes(b))
        for _ in range(300):
            mutated.append(rng.bytes(int(rng.integers(0, 300))))
            mutated.append(b"WLOC\x01" + rng.bytes(int(rng.integers(0, 300))))
            mutated.append(blob[: int(rng.integers(0, len(blob)))] + rng.bytes(9))
        for m in mutated:
            if m == blob:
                continue
            with pytest.raises(ValueError):
                codec.decompress([m], restore=False)
            n += 1
    assert n > 4000


def test_forged_blobs_with_valid_checksum_never_crash(rgb_codec, small_photos):
    """A forged blob passes the CRC: it is refused or decodes at its declared
    shape, never anything else."""
    rng = np.random.default_rng(1)
    blob = rgb_codec.compress([small_photos[0][:21, :26]])[0]
    refused = 0
    trials = 0
    header = 12 + 4 * 6 + 16 + 8
    positions = [*range(header), *rng.integers(header, len(blob) - 4, 25)]
    for pos in positions:
        for value in rng.integers(0, 256, 3):
            if value == blob[pos]:
                continue
            b = bytearray(blob)
            b[pos] = value
            forged = _reseal(bytes(b))
            trials += 1
            try:
                Y = rgb_codec.decompress([forged], restore=False)
            except ValueError:
                refused += 1
                continue
            shape = unpack_blob(forged).signal_shape
            assert Y.shape[1:3] == shape[:2] and np.isfinite(Y).all()
    assert refused > 0.9 * trials


def test_forged_huge_declared_shapes_are_refused_without_allocating(rgb_codec):
    (blob,) = rgb_codec.compress([np.zeros((8, 8, 3), np.uint8)])
    head = bytearray(blob)
    # signal shape (H, W, C) at offset 12, latent shape (C_lat, h, w) after it.
    for h, w in ((40000, 40000), (20000, 20000), (10000, 5000)):
        forged = bytearray(head)
        struct.pack_into("<3I", forged, 12, h, w, 3)
        struct.pack_into("<3I", forged, 24, 6, -(-h // 4), -(-w // 4))
        with pytest.raises(ValueError):
            rgb_codec.decompress([_reseal(bytes(forged))], restore=False)


# --------------------------------------------------------------------- rates
def test_bits_per_sample_and_compression_ratio(rgb_codec, stereo_codec, small_photos):
    X = [small_photos[0], small_photos[1][:40, :33]]
    blobs = rgb_codec.compress(X)
    n_values = sum(x.size for x in X)
    bps = rgb_codec.bits_per_sample(X)
    assert bps == pytest.approx(8 * sum(map(len, blobs)) / n_values)
    assert rgb_codec.compression_ratio(X) == pytest.approx(8 / bps)
    assert rgb_codec.compression_ratio(X, source_bits=12) == pytest.approx(12 / bps)
    with pytest.raises(ValueError):
        rgb_codec.compression_ratio(X, source_bits=0)
    audio = np.zeros((2, 256, 2), np.int16)
    audio[:, ::7] = 1000
    blobs = stereo_codec.compress(audio)
    bps = stereo_codec.bits_per_sample(audio)
    assert bps == pytest.approx(8 * sum(map(len, blobs)) / audio.size)
    assert stereo_codec.compression_ratio(audio) == pytest.approx(16 / bps)


def test_blob_info(rgb_codec, small_photos):
    x = small_photos[0][:30, :27]
    (blob,) = rgb_codec.compress([x])
    info = blob_info(blob)
    assert info["signal_shape"] == (30, 27, 3) and info["dtype"] == "uint8"
    assert info["latent_shape"] == (6, 8, 7) and info["levels"] == 2
    assert info["fingerprint"] == rgb_codec.fingerprint().hex()
    assert info["total_bytes"] == len(blob)
    assert info["bits_per_sample"] == pytest.approx(8 * len(blob) / x.size)
    with pytest.raises(ValueError):
        blob_info(blob[:-1])


def test_verbose_shows_progress(small_photos, capsys):
    codec = WallocCodec(latent_dim=6, levels=2, **TINY).fit(small_photos)
    codec.set_params(verbose=1)
    blobs = codec.compress(small_photos)
    codec.decompress(blobs, restore=False)
    err = capsys.readouterr().err
    assert "compress" in err and "decompress" in err


def test_wrong_channel_count_is_refused(rgb_codec):
    with pytest.raises(ValueError, match="channel"):
        rgb_codec.compress(np.zeros((1, 16, 16, 4), np.uint8))


# --------------------------------------------------------------- persistence
def test_pickle_joblib_and_safe_format_decode_old_blobs(
    rgb_codec, small_photos, tmp_path
):
    X = np.stack(small_photos[:2])
    blobs = rgb_codec.compress(X)
    Y = rgb_codec.decompress(blobs, restore=False)
    joblib.dump(rgb_codec, tmp_path / "c.joblib")
    rgb_codec.save(tmp_path / "c.npz")
    copies = [
        pickle.loads(pickle.dumps(rgb_codec)),
        joblib.load(tmp_path / "c.joblib"),
        WallocCodec.load(tmp_path / "c.npz"),
    ]
    for c in copies:
        assert type(c) is WallocCodec
        assert c.fingerprint() == rgb_codec.fingerprint()
        assert np.array_equal(c.decompress(blobs, restore=False), Y)
        assert c.compress(X) == blobs


# -------------------------------------------------------------------- golden
GOLDEN = {
    # name -> (model file, signal)
    "golden_codec_2d": "golden_codec_model.npz",
    "golden_codec_1d": "golden_codec_model_1d.npz",
}

# Format 3, written by models of today (symmetric borders, model format 2).
GOLDEN_V3 = {
    "golden_codec_v3_2d": "golden_codec_v3_model.npz",
    "golden_codec_v3_1d": "golden_codec_v3_model_1d.npz",
}


@pytest.mark.parametrize(
    "name, model, version",
    [(n, m, None) for n, m in sorted(GOLDEN.items())]
    + [(n, m, 3) for n, m in sorted(GOLDEN_V3.items())],
)
def test_golden_blobs_still_decode(name, model, version, monkeypatch):
    # Format 1/2 blobs of earlier models and format 3 blobs of today's.
    monkeypatch.setattr(_signal, "_CHUNK_SCALARS", DEFAULT_CHUNK)
    codec = WallocCodec.load(DATA / model)
    blob = (DATA / f"{name}.bin").read_bytes()
    latents = np.load(DATA / f"{name}_latents.npy", allow_pickle=False)
    expected = np.load(DATA / f"{name}.npy", allow_pickle=False)
    parsed = unpack_blob(blob, codec.fingerprint())
    if version is not None:
        assert parsed.version == version
    # The coding path is integer-only: the latents are bit-exact everywhere.
    v = parsed.version
    q = decode_latents(
        parsed.payload, parsed.latent_shape, parsed.latent_bits, version=v
    )
    assert np.array_equal(q, latents)
    # The entropy encoder is deterministic too: the same latents, the same bytes.
    assert encode_latents(latents, parsed.latent_bits, version=v) == parsed.payload
    Y = codec.decompress([blob], restore=False)
    assert Y.shape == expected.shape and Y.dtype == np.float32
    # The float network may differ by float32 rounding between CPU builds and
    # kernel implementations: compare relative to the signal's scale.
    np.testing.assert_allclose(Y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    # And decompress is exactly the transformer's decode of those latents.
    grid = np.moveaxis(latents, 0, -1)[None].astype(np.float32)
    R = codec.inverse_transform(grid)
    spatial = expected.shape[1:-1]
    assert np.array_equal(Y, R[(slice(None), *(slice(0, s) for s in spatial))])


def _golden_codecs():  # pragma: no cover - used by the golden writers only
    """The models and signals of the golden blobs: (2D codec, photo crop),
    (1D codec, stereo clip)."""
    from sklearn_walloc.datasets import load_photos

    photos = [p[100:164, 120:200] for p in load_photos(["chelsea", "rocket"])]
    c2 = _perturb(WallocCodec(latent_dim=6, levels=2, **TINY).fit(photos))
    x2 = load_photos(["astronaut"])[0][200:230, 240:267]  # (30, 27, 3) uint8
    rng = np.random.default_rng(7)
    t = np.arange(203) / 8000
    x1 = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 510 * t)], -1)
    x1 = (x1 * 9000 + rng.normal(0, 300, x1.shape)).astype(np.int16)
    train = (rng.standard_normal((3, 512, 2)).cumsum(1) * 300).astype(np.int16)
    c1 = _perturb(
        WallocCodec(latent_dim=3, levels=2, signal_ndim=1, **TINY).fit(train), 1
    )
    return (c2, x2), (c1, x1)


def _write_golden_files(name, model_file, codec, x, latent_dtype):  # pragma: no cover
    """Save ``codec`` as ``model_file`` and its blob of ``x``, latents and
    decoded signal as ``name.bin``, ``name_latents.npy``, ``name.npy``."""
    codec.save(DATA / model_file)
    (blob,) = codec.compress([x])
    (DATA / f"{name}.bin").write_bytes(blob)
    p = unpack_blob(blob)
    q = decode_latents(p.payload, p.latent_shape, p.latent_bits).astype(latent_dtype)
    np.save(DATA / f"{name}_latents.npy", q)
    np.save(DATA / f"{name}.npy", codec.decompress([blob], restore=False))
    return p


def _write_golden():  # pragma: no cover - run once by hand, never in the tests
    (c2, x2), (c1, x1) = _golden_codecs()
    for name, codec, x in (("golden_codec_2d", c2, x2), ("golden_codec_1d", c1, x1)):
        _write_golden_files(name, GOLDEN[name], codec, x, np.int8)


def test_version_2_blobs_of_a_model_still_decode(rgb_codec, small_photos):
    # A symmetric-border model wrote version 2 (the interlaced payload order)
    # before format 3: those blobs decode to exactly what its version-3 blobs do.
    x = small_photos[0][:29, :35]
    (blob,) = rgb_codec.compress([x])
    p = unpack_blob(blob)
    assert p.version == FORMAT_VERSION
    q = decode_latents(p.payload, p.latent_shape, p.latent_bits)
    old = repack(blob, encode_latents(q, p.latent_bits, version=2), version=2)
    assert old != blob
    _assert_same(
        rgb_codec.decompress([old], restore=False),
        rgb_codec.decompress([blob], restore=False),
    )
    # Version 1 marks periodic borders: not this model's.
    legacy = old[:4] + b"\x01" + old[5:-4]
    legacy += struct.pack("<I", zlib.crc32(legacy))
    with pytest.raises(ValueError, match="format version 1"):
        rgb_codec.decompress([legacy], restore=False)


def _write_golden_v3():  # pragma: no cover - run once by hand, never in the tests
    (c2, x2), (c1, x1) = _golden_codecs()
    for name, codec, x in (
        ("golden_codec_v3_2d", c2, x2),
        ("golden_codec_v3_1d", c1, x1),
    ):
        _write_golden_files(name, GOLDEN_V3[name], codec, x, np.int16)


def _write_golden_wide():  # pragma: no cover - run once by hand, never in the tests
    # Format 3 with a gain and latents wider than the model's 8 bits. It wrote
    # the committed files at commit dc3999b (reproduced there byte for byte);
    # on the code merged since, this near-exact tone keeps 8 bits (gain 1), so
    # a re-run stops at the assertion: pick a signal that widens before using
    # it (the music of benchmarks/audio.py still widens as before).
    rng = np.random.default_rng(11)
    t = np.arange(203) / 8000
    x = np.sin(2 * np.pi * 300 * t)[:, None] * [1.0, 0.7]
    train = x[None] * 9000 + rng.normal(0, 10, (3, *x.shape))
    x, train = (x * 9000).astype(np.int16), train.astype(np.int16)
    codec = WallocCodec(latent_dim=3, levels=2, signal_ndim=1, latent_bits=8, **TINY)
    codec = _perturb(codec.fit(train), 1)
    with torch.no_grad():
        for p in codec.module_.decoder.refine.parameters():
            p.mul_(0.01)
    p = _write_golden_files(
        "golden_codec_v3_1d_wide",
        "golden_codec_v3_model_1d_wide.npz",
        codec,
        x,
        np.int16,
    )
    assert p.latent_bits > 8 and p.gain_steps > 0


def test_golden_wide_blob_still_decodes(monkeypatch):
    # A format 3 blob with a gain and wider latents (12 bits from an 8-bit
    # model), written once by _write_golden_wide().
    monkeypatch.setattr(_signal, "_CHUNK_SCALARS", DEFAULT_CHUNK)
    codec = WallocCodec.load(DATA / "golden_codec_v3_model_1d_wide.npz")
    name = "golden_codec_v3_1d_wide"
    blob = (DATA / f"{name}.bin").read_bytes()
    latents = np.load(DATA / f"{name}_latents.npy", allow_pickle=False)
    expected = np.load(DATA / f"{name}.npy", allow_pickle=False)
    p = unpack_blob(blob, codec.fingerprint())
    assert (p.version, codec.latent_bits_) == (3, 8)
    assert p.latent_bits > 8 and p.gain_steps > 0
    q = decode_latents(p.payload, p.latent_shape, p.latent_bits, version=3)
    assert np.array_equal(q, latents) and np.abs(q).max() > 127
    assert encode_latents(latents, p.latent_bits, version=3) == p.payload
    Y = codec.decompress([blob], restore=False)
    assert Y.shape == expected.shape and Y.dtype == np.float32
    np.testing.assert_allclose(Y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    ref = codec.module_.decode(
        torch.from_numpy(latents[None].astype(np.float32)), p.gain_steps, p.latent_bits
    )
    ref = ref[0].numpy().T[: expected.shape[1]]
    np.testing.assert_allclose(Y[0], ref, rtol=0, atol=1e-5 * np.abs(ref).max())


if __name__ == "__main__" and "--write-golden" in __import__("sys").argv:
    _write_golden()  # pragma: no cover
if __name__ == "__main__" and "--write-golden-v3" in __import__("sys").argv:
    _write_golden_v3()  # pragma: no cover
if __name__ == "__main__" and "--write-golden-wide" in __import__("sys").argv:
    _write_golden_wide()  # pragma: no cover


def test_zero_refinement_is_skipped_with_the_same_output(small_photos, monkeypatch):
    # A closed form leaves the residual decoder path exactly zero: inference
    # skips it (its cost), and the output does not change.
    codec = WallocCodec(latent_dim=12, levels=2, max_iter=0, random_state=0)
    codec.fit(small_photos)
    Z = codec.transform(small_photos)
    skipped = codec.inverse_transform(Z)
    refine = codec.module_.decoder.refine
    calls = []
    monkeypatch.setattr(refine, "forward", lambda z: calls.append(1) or torch.zeros(()))
    codec.inverse_transform(Z)
    assert calls == []
    monkeypatch.undo()
    with torch.no_grad():
        computed = codec.module_.decoder.linear(torch.zeros(1, 12, 2, 2))
        refined = computed + refine(torch.zeros(1, 12, 2, 2))
    torch.testing.assert_close(refined, computed, rtol=0, atol=0)
    # Once the last layer is non-zero, the path runs again.
    with torch.no_grad():
        refine[-1].bias.fill_(0.5)
    codec._runtime = {}
    assert not np.allclose(codec.inverse_transform(Z)[0], skipped[0])


def test_closed_form_decodes_through_the_fused_synthesis(small_photos, monkeypatch):
    codec = WallocCodec(latent_dim=12, levels=2, max_iter=0, random_state=0)
    codec.fit(small_photos)
    Z = codec.transform(small_photos)
    module = codec.module_
    calls = []
    decode = module.decode
    monkeypatch.setattr(
        module, "decode", lambda q, *a: calls.append(1) or decode(q, *a)
    )
    fused = codec.inverse_transform(Z)
    assert calls == []  # the elementwise chain never ran
    for z, y in zip(Z, fused):
        q = torch.from_numpy(np.moveaxis(z, -1, 0)[None])
        with torch.no_grad():
            ref = np.moveaxis(decode(q)[0].numpy(), 0, -1)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    # A non-zero residual path takes the refined inference decoder (the
    # features, then one factored synthesis), equal to the general decoder.
    _perturb(codec)
    codec._runtime = {}
    refined = codec.inverse_transform(Z)
    assert calls == []
    for z, y in zip(Z, refined):
        q = torch.from_numpy(np.moveaxis(z, -1, 0)[None])
        with torch.no_grad():
            ref = np.moveaxis(decode(q)[0].numpy(), 0, -1)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_sizes_that_pad_alike_share_chunks_with_the_same_bits(
    rgb_codec, small_photos, monkeypatch
):
    # levels=2: 29x35, 30x33 and 32x36 all pad to 32x36; 17x9 pads to 20x12.
    monkeypatch.setattr(_signal, "_CHUNK_SCALARS", DEFAULT_CHUNK)
    X = [
        small_photos[0][:29, :35],
        small_photos[1][:17, :9],
        small_photos[2][:30, :33],
        small_photos[3][:32, :36],
    ]
    calls = []
    run = _signal.run_in_chunks

    def counting(fn, x, device):
        calls.append(x.shape)
        return run(fn, x, device)

    monkeypatch.setattr(_signal, "run_in_chunks", counting)
    blobs = rgb_codec.compress(X)
    assert sorted(calls) == [(1, 3, 20, 12), (3, 3, 32, 36)]
    Z = rgb_codec.transform(X)
    monkeypatch.setattr(_signal, "run_in_chunks", run)
    # Each signal's bytes, latents and reconstruction are those it gets alone.
    for x, blob, z in zip(X, blobs, Z):
        assert rgb_codec.compress([x]) == [blob]
        assert np.array_equal(rgb_codec.transform([x])[0], z)
        np.testing.assert_array_equal(
            rgb_codec.decompress([blob], restore=False)[0], _expected(rgb_codec, [x])[0]
        )
    _assert_same(rgb_codec.decompress(blobs, restore=False), _expected(rgb_codec, X))


def test_codec_defaults_are_the_transformers():
    # WallocCodec re-declares __init__ (adaptive_gain, gain, enhancement_dim); the
    # shared parameters must keep the transformer's defaults (max_iter=0 too).
    ours = inspect.signature(WallocCodec.__init__).parameters
    theirs = inspect.signature(WallocTransformer.__init__).parameters
    assert set(ours) - set(theirs) == {"adaptive_gain", "gain", "enhancement_dim"}
    for name, p in theirs.items():
        assert ours[name].default == p.default, name
