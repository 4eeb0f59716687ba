"""The safe model format: version 2 round trips, version 1 still loads, and any
malformed file is a ValueError naming the file, checked before anything is built."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from sklearn_walloc import WallocCodec, WallocTransformer, _model_io

DATA = Path(__file__).parent / "data"
TINY = dict(decoder_width=8, decoder_depth=1, max_iter=0, random_state=0)


@pytest.fixture(scope="module")
def codec():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    return WallocCodec(latent_dim=4, levels=1, **TINY).fit(X)


@pytest.fixture(scope="module")
def model_bytes(codec, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    codec.save(path)
    return path.read_bytes()


def _members(data):
    """header dict and arrays of a model file's bytes."""
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays.pop("header").tobytes())
    return header, arrays


def _npy(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _write(path, header, arrays, compression=zipfile.ZIP_STORED, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("header.npy", _npy(np.frombuffer(text, np.uint8)))
        for k, v in arrays.items():
            z.writestr(f"{k}.npy", _npy(v))
    return path


def _refused(path, match="not a sklearn-walloc model file"):
    with pytest.raises(ValueError, match=match) as info:
        WallocCodec.load(path)
    assert type(info.value) is ValueError
    assert str(path) in str(info.value)
    return str(info.value)


def test_version_2_round_trip(codec, model_bytes, tmp_path):
    header, arrays = _members(model_bytes)
    assert header["format_version"] == _model_io.FORMAT_VERSION == 2
    assert header["spec"] == codec.spec_.to_json()
    assert set(arrays) == {f"tensor/{k}" for k in codec.spec_.tensor_shapes()}
    assert "n_channels_" not in header["fitted"]
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    path = tmp_path / "m.npz"
    path.write_bytes(model_bytes)
    loaded = WallocCodec.load(path)
    assert loaded.spec_ == codec.spec_
    assert (loaded.n_channels_, loaded.latent_bits_) == (3, 8)
    assert loaded.fingerprint() == codec.fingerprint()
    assert loaded.get_params() == codec.get_params()
    X = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(loaded.transform(X), codec.transform(X))
    assert loaded.compress(X) == codec.compress(X)


@pytest.mark.parametrize(
    "name", ["golden_codec_model.npz", "golden_codec_model_1d.npz"]
)
def test_version_1_files_load_as_legacy_models(name):
    codec = WallocCodec.load(DATA / name)
    assert codec.spec_.boundary == "periodization"
    assert codec.spec_.sample_dtype is None
    assert codec.module_.wpt.boundary == "periodization"


def test_flat_fits_round_trip_their_fitted_attributes(tmp_path):
    X = np.random.default_rng(0).random((6, 64))
    w = WallocTransformer(latent_dim=2, levels=1, signal_shape=(8, 8), **TINY).fit(X)
    w.save(tmp_path / "w.npz")
    loaded = WallocTransformer.load(tmp_path / "w.npz")
    assert (loaded.n_features_in_, loaded.signal_shape_) == (64, (8, 8, 1))
    assert np.array_equal(loaded.transform(X), w.transform(X))


def test_files_that_are_not_models(tmp_path, model_bytes):
    cases = {
        "empty.npz": b"",
        "junk.npz": b"not a model",
        "zip_prefix.npz": b"PK\x03\x04" + b"\x00" * 40,
        "truncated.npz": model_bytes[: len(model_bytes) // 2],
        "tail.npz": model_bytes[-200:],
    }
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    cases["array.npy"] = buf.getvalue()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        _refused(tmp_path / name)
    _refused(tmp_path / "missing.npz")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_truncated_or_flipped_files_are_value_errors(model_bytes, tmp_path, data):
    blob = bytearray(model_bytes)
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "mutated.npz"
    path.write_bytes(bytes(blob))
    try:
        est = WallocCodec.load(path)
    except ValueError as e:
        assert str(path) in str(e)
    else:  # a flip in padding or an unread byte: still a valid, finite model
        assert est.spec_ is not None


def test_compressed_members_and_zip_bombs_are_refused(codec, tmp_path, model_bytes):
    header, arrays = _members(model_bytes)
    _refused(
        _write(tmp_path / "deflated.npz", header, arrays, zipfile.ZIP_DEFLATED),
        "compressed",
    )
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.npy", b"\x00" * 2**26)
    assert bomb.stat().st_size < 2**20
    _refused(bomb, "compressed")


def test_members_declaring_more_than_the_file_are_refused(tmp_path, model_bytes):
    data = bytearray(model_bytes)
    # Raise the uncompressed size of the first central-directory entry.
    at = data.rfind(b"PK\x01\x02")
    while data.rfind(b"PK\x01\x02", 0, at) != -1:
        at = data.rfind(b"PK\x01\x02", 0, at)
    data[at + 24 : at + 28] = (2**31).to_bytes(4, "little")
    path = tmp_path / "big.npz"
    path.write_bytes(bytes(data))
    _refused(path)


def _mutated(model_bytes, tmp_path, edit, name="crafted.npz"):
    header, arrays = _members(model_bytes)
    edit(header, arrays)
    return _write(tmp_path / name, header, arrays)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda h, a: h.update(magic="other"), "header"),
        (lambda h, a: h.update(format_version=3), "format version 3"),
        (lambda h, a: h.update(format_version=True), "format version"),
        (lambda h, a: h.update(extra=1), "header keys"),
        (lambda h, a: h.pop("spec"), "header keys"),
        (lambda h, a: h.update({"class": "Pipeline"}), "Pipeline"),
        (lambda h, a: h["spec"].update(levels=11), "levels"),
        (lambda h, a: h["spec"].update(latent_bits=99), "latent_bits"),
        (lambda h, a: h["spec"].update(decoder_width=4096, decoder_depth=64), "param"),
        (lambda h, a: h["spec"].update(wavelet="morl"), "wavelet"),
        (lambda h, a: h["spec"].update(sample_dtype="object"), "sample_dtype"),
        (lambda h, a: h["spec"].update(hacked=1), "unknown keys"),
        (lambda h, a: h.update(spec=[]), "JSON object"),
        (lambda h, a: h["fitted"].update(compress=1), "compress"),
        (lambda h, a: h["fitted"].update(__class__="x"), "__class__"),
        (lambda h, a: h["fitted"].update(latent_bits_=99), "spec"),
        (lambda h, a: h["fitted"].update(n_channels_=3), "spec"),
        (lambda h, a: h["fitted"].pop("data_range_"), "missing"),
        (lambda h, a: h["fitted"].update(data_range_=float("nan")), "data_range_"),
        (lambda h, a: h["fitted"].update(data_range_="255"), "data_range_"),
        (lambda h, a: h["fitted"].update(latent_scale_=-1.0), "latent_scale_"),
        (lambda h, a: h["fitted"].update(n_iter_=-1), "n_iter_"),
        (lambda h, a: h["fitted"].update(loss_curve_=[1.0, "x"]), "loss_curve_"),
        (lambda h, a: h["fitted"].update(loss_curve_={"a": 1}), "loss_curve_"),
        (lambda h, a: h["fitted"].update(validation_scores_=[1e400]), "validation"),
        (lambda h, a: h["fitted"].update(best_validation_score_=[]), "best_valid"),
        (lambda h, a: h["fitted"].update(device_="x" * 100), "device_"),
        (lambda h, a: h["fitted"].update(device_=3), "device_"),
        (lambda h, a: h["fitted"].update(signal_shape_=[16, 16, 4]), "signal_shape_"),
        (lambda h, a: h["fitted"].update(signal_shape_=[16, True, 3]), "signal_shape_"),
        (lambda h, a: h["fitted"].update(signal_shape_="abc"), "signal_shape_"),
        (lambda h, a: h["fitted"].update(n_features_in_=12), "n_features_in_"),
        (
            lambda h, a: h["fitted"].update(signal_shape_=[4, 4, 3], n_features_in_=47),
            "n_features_in_",
        ),
        (lambda h, a: h.update(fitted=[]), "fitted must be"),
        (lambda h, a: h["params"].update(levels="x"), "levels"),
        (lambda h, a: h["params"].update(levels=2), "levels"),
        (lambda h, a: h["params"].update(max_iter=-1), "max_iter"),
        (lambda h, a: h["params"].update(fit=1), "fit"),
        (lambda h, a: h["params"].update(latent_bits=12), "latent_bits"),
        (lambda h, a: h["params"].update(signal_shape=[0, 3]), "signal_shape"),
        (lambda h, a: h["params"].update(signal_shape="abc"), "signal_shape"),
        (lambda h, a: h.update(params=None), "params must be"),
    ],
)
def test_crafted_headers_are_refused(model_bytes, tmp_path, edit, match):
    _refused(_mutated(model_bytes, tmp_path, edit), match)


def _set(name, value):
    def edit(h, a):
        a[name] = value

    return edit


@pytest.mark.parametrize(
    "edit,match",
    [
        (_set("tensor/encoder.weight", np.full((4, 12, 1, 1), np.nan, "f4")), "non-f"),
        (_set("tensor/encoder.bias", np.array([np.inf, 0, 0, 0], "f4")), "non-finite"),
        (_set("tensor/encoder.weight", np.zeros((4, 13, 1, 1), "f4")), "shape"),
        (_set("tensor/encoder.bias", np.zeros(4, "f8")), "dtype"),
        (_set("tensor/encoder.bias", np.zeros(4, ">f4")), "dtype"),
        (_set("tensor/encoder.bias", np.array(["a"] * 4)), "dtype"),
        (_set("tensor/data_scale", np.float32(0)), "data_scale"),
        (_set("tensor/extra", np.zeros(1, "f4")), "unexpected"),
        (_set("state/wpt.analysis", np.zeros(1, "f4")), "unexpected"),
        (lambda h, a: a.pop("tensor/decoder.linear.bias"), "missing"),
    ],
)
def test_crafted_tensors_are_refused(model_bytes, tmp_path, edit, match):
    _refused(_mutated(model_bytes, tmp_path, edit), match)


def test_object_arrays_are_never_unpickled(model_bytes, tmp_path):
    header, arrays = _members(model_bytes)
    path = _write(tmp_path / "obj.npz", header, arrays)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([{"a": 1}], dtype=object))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("tensor/obj.npy", buf.getvalue())
    _refused(path)


def test_header_json_problems(model_bytes, tmp_path):
    header, arrays = _members(model_bytes)
    deep = b"[" * 200_000 + b"]" * 200_000
    _refused(_write(tmp_path / "deep.npz", header, arrays, raw_header=deep), "nest")
    _refused(_write(tmp_path / "bad.npz", header, arrays, raw_header=b"\xff\xfe"))
    _refused(_write(tmp_path / "list.npz", header, arrays, raw_header=b"[1]"))
    # A header declaring a huge text is refused from its .npy header alone.
    path = _write(tmp_path / "huge.npz", header, arrays)
    fake = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.uint8))
    fake["shape"] = (2**40,)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, fake)
    _rewrite_member(path, "header.npy", buf.getvalue())
    _refused(path, "shape")


def _rewrite_member(path, name, data):
    with zipfile.ZipFile(path) as z:
        items = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for n, d in items:
            z.writestr(n, data if n == name else d)


def test_levels_11_is_refused_before_anything_is_allocated(model_bytes, tmp_path):
    import tracemalloc

    header, arrays = _members(model_bytes)
    header["spec"].update(levels=11, in_channels=1, latent_dim=1)
    path = _write(tmp_path / "deep_levels.npz", header, arrays)
    tracemalloc.start()
    _refused(path, "levels")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**24


def _deep_model_file(tmp_path, signal_ndim, levels):
    """A model as the library's own ``save`` would write it at ``levels``
    (1 channel, 1 latent, linear decoder): a fitted shallow model with the
    spec, the parameters and the tensors rewritten to the deeper structure."""
    rng = np.random.default_rng(0)
    shape = (2, 64, 1) if signal_ndim == 1 else (2, 16, 16, 1)
    X = rng.integers(-999, 999, shape).astype(np.int16)
    small = WallocCodec(
        signal_ndim=signal_ndim, levels=1, latent_dim=1, decoder_width=0,
        decoder_depth=0, max_iter=0, random_state=0,
    ).fit(X)  # fmt: skip
    small.save(tmp_path / "small.npz")
    header, arrays = _members((tmp_path / "small.npz").read_bytes())
    header["spec"]["levels"] = header["params"]["levels"] = levels
    bands = 2 ** (levels * signal_ndim)
    k1 = (1,) * signal_ndim
    arrays["tensor/encoder.weight"] = np.full((1, bands, *k1), 0.01, np.float32)
    arrays["tensor/decoder.linear.weight"] = np.ones((bands, 1, *k1), np.float32)
    arrays["tensor/decoder.linear.bias"] = np.zeros(bands, np.float32)
    return _write(tmp_path / f"levels{levels}.npz", header, arrays)


@pytest.mark.parametrize("signal_ndim,levels", [(1, 10), (2, 8)])
def test_model_files_costing_gigabytes_at_inference_are_refused(
    tmp_path, signal_ndim, levels
):
    # Issue 20: a 15 KB file (1D, levels=10) made the first compress ask for
    # 20 GiB, a 771 KB one (2D, levels=8) took 9 GB. Refused from the spec,
    # before any tensor is read or anything is built (no big allocation: the
    # estimate is arithmetic plus, at most, s impulses through the synthesis).
    import tracemalloc

    path = _deep_model_file(tmp_path, signal_ndim, levels)
    tracemalloc.start()
    msg = _refused(path, f"levels={levels} .* GiB of working memory at inference")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "MAX_INFERENCE_BYTES" in msg and peak < 2**24
    # The same file at levels=5 is a model like any other.
    WallocCodec.load(_deep_model_file(tmp_path, signal_ndim, 5))


def test_the_header_is_capped_before_it_is_read(model_bytes, tmp_path):
    import tracemalloc

    header, arrays = _members(model_bytes)
    assert _model_io.MAX_HEADER_BYTES == 2**22
    # Valid JSON, but 64 MB of it would take 2 GB to parse: never read.
    header["fitted"]["loss_curve_"] = [0.5] * (_model_io.MAX_HEADER_BYTES // 5 + 1)
    path = _write(tmp_path / "big_header.npz", header, arrays)
    tracemalloc.start()
    _refused(path, r"header\.npy.* 4194304 bytes")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20
    # save refuses to write what load would refuse, saying what to thin.
    est = WallocCodec.load(_write(tmp_path / "ok.npz", *_members(model_bytes)))
    est.loss_curve_ = [0.123456789] * (_model_io.MAX_HEADER_BYTES // 10)
    with pytest.raises(ValueError, match=r"MAX_HEADER_BYTES.*loss_curve_"):
        est.save(tmp_path / "long.npz")
    assert not (tmp_path / "long.npz").exists()
    est.loss_curve_ = est.loss_curve_[::10]
    est.save(tmp_path / "thinned.npz")
    assert len(WallocCodec.load(tmp_path / "thinned.npz").loss_curve_) == len(
        est.loss_curve_
    )


def test_version_1_files_are_validated_too(tmp_path):
    data = (DATA / "golden_codec_model.npz").read_bytes()
    header, arrays = _members(data)

    def write(name, edit):
        h, a = json.loads(json.dumps(header)), dict(arrays)
        edit(h, a)
        return _write(tmp_path / name, h, a)

    _refused(write("bits.npz", lambda h, a: h["fitted"].update(latent_bits_=99)))
    _refused(write("compress.npz", lambda h, a: h["fitted"].update(compress=1)))
    _refused(write("spec.npz", lambda h, a: h.update(spec={})), "header keys")
    _refused(
        write("wpt.npz", _set("state/wpt.analysis", arrays["state/wpt.analysis"] * 2)),
        "filter bank",
    )
    _refused(write("levels.npz", lambda h, a: h["params"].update(levels=11)), "levels")
    ok = write("ok.npz", lambda h, a: None)
    assert WallocCodec.load(ok).spec_.boundary == "periodization"


@settings(max_examples=60, deadline=None)
@given(
    where=st.sampled_from(["params", "fitted", "spec"]),
    key=st.text(max_size=20),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c),
        max_leaves=6,
    ),
)
def test_arbitrary_header_values_never_escape_as_other_errors(
    model_bytes, where, key, value
):
    import tempfile

    header, arrays = _members(model_bytes)
    section = header[where]
    if section and key not in section and len(key) % 2:
        key = sorted(section)[len(key) % len(section)]
    section[key] = value
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d) / "m.npz", header, arrays)
        try:
            WallocCodec.load(path)
        except ValueError as e:
            assert str(path) in str(e)


def test_legacy_models_saved_in_format_2_keep_their_fingerprint(tmp_path):
    old = WallocCodec.load(DATA / "golden_codec_model_1d.npz")
    old.save(tmp_path / "v2.npz")
    new = WallocCodec.load(tmp_path / "v2.npz")
    assert new.spec_ == old.spec_ and new.fingerprint() == old.fingerprint()
    blob = (DATA / "golden_codec_1d.bin").read_bytes()
    assert np.array_equal(
        new.decompress([blob], restore=False), old.decompress([blob], restore=False)
    )


def test_models_whose_auto_bits_meant_16_load_with_16(tmp_path):
    # Fitted when latent_bits="auto" meant 16 bits for 1D signals.
    x = (np.random.default_rng(0).standard_normal((2, 256, 2)) * 3000).astype(np.int16)
    tiny = dict(decoder_width=4, decoder_depth=1, max_iter=0, random_state=0)
    wide = WallocCodec(signal_ndim=1, levels=2, latent_dim=3, latent_bits=16, **tiny)
    wide.fit(x).save(tmp_path / "m.npz")
    header, arrays = _members((tmp_path / "m.npz").read_bytes())
    header["params"]["latent_bits"] = "auto"
    old = WallocCodec.load(_write(tmp_path / "old.npz", header, arrays))
    assert old.latent_bits_ == 16 and old.latent_bits == 16
    assert old.fingerprint() == wide.fingerprint()
    assert clone(old).fit(x).latent_bits_ == 16
    # "auto" with 12 bits never meant anything.
    header["spec"]["latent_bits"] = 12
    _refused(_write(tmp_path / "bad.npz", header, arrays), "latent_bits")
