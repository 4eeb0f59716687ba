"""from_reference: walloc 1.2.1 checkpoints, numerically equal to the reference.

The fixtures ``tests/data/reference_{2d,1d}.*`` were made by the reference
implementation itself (``tools/reference_fixtures/make_reference_fixtures.py``,
run in a separate environment): a Codec2D (RGB, 16x, AutoencoderKL decoder of
width 32) and a Codec1D (stereo, 4.9x, Oobleck decoder, post-filter) with
random weights, and their latents and clamped reconstructions on two photo
crops and two synthetic stereo clips whose sides are multiples of ``2**J``,
and on a third of each (a 100 x 75 crop, 1001 samples) that is not, padded
and cropped with the reference's own ``pad`` and ``crop`` helpers.
"""

import dataclasses
import json
import os
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

from sklearn_walloc import WallocCodec, WallocTransformer
from sklearn_walloc._reference import band_permutation, reference_bands
from sklearn_walloc._spec import ModelSpec, legacy_fingerprint
from sklearn_walloc._wavelets import WaveletPacket
from sklearn_walloc.codec import blob_info

DATA = os.path.join(os.path.dirname(__file__), "data")
# The reference's units per kind: x_reference = (x - offset) / scale.
UNITS = {"2d": (127.5, 255.0), "1d": (0.0, 65536.0)}


def _paths(kind):
    base = os.path.join(DATA, f"reference_{kind}")
    return f"{base}.pth", f"{base}.json"


@pytest.fixture(scope="module", params=["2d", "1d"])
def case(request):
    kind = request.param
    pth, cfg = _paths(kind)
    codec = WallocCodec.from_reference(pth, cfg, device="cpu")
    data = np.load(os.path.join(DATA, f"reference_{kind}.npz"))
    signals = [data[f"signal_{i}"] for i in range(2)]
    return kind, codec, data, signals


def _reference_latents(kind, data, i):
    z = np.moveaxis(data[f"latents_{i}"], 0, -1).astype(np.float32)
    # Codec1D's 1x1 encoder has padding=1: one constant latent at each end
    # (its bias alone), which this library leaves out and restores.
    return z[1:-1] if kind == "1d" else z


def _reference_signal(kind, data, i):
    offset, scale = UNITS[kind]
    return np.moveaxis(data[f"recon_{i}"], 0, -1) * scale + offset


def _check_latents(kind, data, i, ours):
    ref = _reference_latents(kind, data, i)
    assert ours.shape == ref.shape
    differ = ours != ref
    # Equal but at rounding ties: companded values within float32 rounding
    # of a half-integer (none in these fixtures).
    u = np.moveaxis(data[f"u_{i}"], 0, -1)
    u = u[1:-1] if kind == "1d" else u
    tie = np.abs(np.abs(u - np.floor(u)) - 0.5) < 1e-4
    assert not (differ & ~tie).any()
    assert np.abs(ours - ref).max() <= 1
    assert differ.sum() == 0  # what these fixtures show: exactly equal


def test_latents_equal_the_reference(case):
    kind, codec, data, signals = case
    for i, x in enumerate(signals):
        _check_latents(kind, data, i, codec.transform(x[None])[0])


def test_reconstructions_equal_the_reference(case):
    kind, codec, data, _ = case
    _, scale = UNITS[kind]
    for i in range(2):
        z = _reference_latents(kind, data, i)
        ours = codec.inverse_transform(z[None])[0]
        ref = _reference_signal(kind, data, i)
        assert ours.shape == ref.shape
        # 1e-4 of the signal range is the goal; float32 gives about 3e-6.
        assert np.abs(ours - ref).max() <= 1e-5 * scale
        # The clamp: the reference's [-0.5, 0.5] is the sample range.
        assert ours.min() >= UNITS[kind][0] - scale / 2
        assert ours.max() <= UNITS[kind][0] + scale / 2


# The third signal of each kind: sides that are not multiples of 2**J, which a
# user of the reference pads with its pad helper (reflection, centred) and
# whose decoded output it cuts back with its crop helper.
ODD = 2


def _centred(x, spatial):
    """The reference's crop of a padded signal ``x`` (channels last)."""
    starts = [(n - s) // 2 for n, s in zip(x.shape, spatial)]
    return x[tuple(slice(a, a + s) for a, s in zip(starts, spatial))]


def test_other_sizes_are_padded_as_the_reference_pads_them(case):
    kind, codec, data, _ = case
    x = data[f"signal_{ODD}"]
    assert all(s % 2**codec.levels for s in x.shape[:-1])
    assert codec.spec_.padding == "centred"
    _check_latents(kind, data, ODD, codec.transform(x[None])[0])
    _check_latents(kind, data, ODD, codec.transform([x])[0])
    # This library's own rule (symmetric extension at the end) gives other
    # latents: the fixture tells the two apart.
    end = pickle.loads(pickle.dumps(codec))
    end.spec_ = dataclasses.replace(codec.spec_, padding="end")
    assert (end.transform(x[None])[0] != _reference_latents(kind, data, ODD)).any()


def test_reconstructions_at_other_sizes_equal_the_reference(case):
    kind, codec, data, _ = case
    _, scale = UNITS[kind]
    x = data[f"signal_{ODD}"]
    spatial, stride = x.shape[:-1], 2**codec.levels
    ref = _reference_signal(kind, data, ODD)
    tol = 1e-5 * scale  # the goal is 1e-4 of the range; float32 gives ~1e-6
    # inverse_transform of a batch: the padded signal, the reference's output
    # before its crop.
    padded = codec.inverse_transform(_reference_latents(kind, data, ODD)[None])[0]
    assert padded.shape[:-1] == tuple(-(-s // stride) * stride for s in spatial)
    assert np.abs(_centred(padded, spatial) - ref).max() <= tol
    # Flat rows of a known signal_shape come back cropped.
    t = WallocTransformer.from_reference(*_paths(kind), signal_shape=x.shape)
    rows = t.inverse_transform(t.transform(x.reshape(1, -1)))
    assert np.abs(rows.reshape(x.shape) - ref).max() <= tol
    # score reads the same window: the PSNR of the reference's crop.
    err = x.astype(np.float64) - np.clip(np.round(ref), *_range(x.dtype))
    psnr = 10 * np.log10(t.data_range_**2 / np.mean(err**2))
    assert abs(t.score(x[None]) - psnr) < 0.01
    # compress/decompress (no gain: the latents above) crop as the reference.
    codec = clone_fitted(codec, adaptive_gain=False)
    (blob,) = codec.compress([x])
    y = codec.decompress([blob], restore=False)[0]
    assert y.shape == x.shape and np.abs(y - ref).max() <= tol
    restored = codec.decompress([blob])[0]
    expect = np.clip(np.round(ref), *_range(x.dtype)).astype(np.int64)
    assert np.abs(restored.astype(np.int64) - expect).max() <= 1


def test_sizes_sharing_a_latent_grid_keep_their_own_windows():
    """Lengths that pad to one grid are coded together and decoded together
    (as for this library's own models), each in its own centred window."""
    codec = WallocCodec.from_reference(*_paths("1d"), adaptive_gain=False)
    data = np.load(os.path.join(DATA, "reference_1d.npz"))
    x = data[f"signal_{ODD}"]  # 1001 samples: 32 latents
    parts = [x, x[:1000], x[3:], x[:-2]]  # 1001, 1000, 998, 999: all 32
    blobs = codec.compress(parts)
    assert blobs == [codec.compress([p])[0] for p in parts]
    together = codec.decompress(blobs, restore=False)
    for p, b, y in zip(parts, blobs, together):
        assert y.shape == p.shape
        np.testing.assert_array_equal(y, codec.decompress([b], restore=False)[0])
    ref = _reference_signal("1d", data, ODD)
    assert np.abs(together[0] - ref).max() <= 1e-5 * 65536


def test_strips_pad_as_the_whole_image(monkeypatch):
    """A large image is encoded in strips of rows (``_encode_tiles``): with
    the centred padding's row and column maps, to the same latents."""
    from sklearn_walloc import _encode_tiles

    codec = WallocCodec.from_reference(*_paths("2d"))
    x = np.load(os.path.join(DATA, "reference_2d.npz"))[f"signal_{ODD}"]
    x = np.concatenate([x, x[::-1]])[:, :99]  # 150 x 99: 1+1 and 2+3 padded
    monkeypatch.setattr(_encode_tiles, "LARGE_SAMPLES", 2**62)
    whole = codec.transform(x[None])
    blob = codec.compress([x], target_bpp=4.0)
    monkeypatch.setattr(_encode_tiles, "LARGE_SAMPLES", 1000)
    monkeypatch.setattr(_encode_tiles, "TILE_SAMPLES", 3000)  # strips of 8 rows
    calls = []
    latents = _encode_tiles._Strips.latents
    monkeypatch.setattr(
        _encode_tiles._Strips, "latents", lambda s: calls.append(1) or latents(s)
    )
    np.testing.assert_array_equal(codec.transform(x[None]), whole)
    assert codec.compress([x], target_bpp=4.0) == blob
    assert calls  # it did encode in strips


def test_rate_control_measures_the_signal_itself(monkeypatch):
    """``target_psnr`` compares each candidate's decoded window with the
    signal itself, not with another window of the padded signal."""
    from sklearn_walloc import _rate

    codec = WallocCodec.from_reference(*_paths("2d"))
    x = np.load(os.path.join(DATA, "reference_2d.npz"))[f"signal_{ODD}"]
    seen = []
    real = _rate._round_trip_db
    monkeypatch.setattr(
        _rate, "_round_trip_db", lambda a, d, *r: seen.append((a, d)) or real(a, d, *r)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random decoder reaches ~9 dB
        codec.compress([x], target_psnr=30.0)
    (units,), _ = codec._read([x])
    assert len(seen) > 1
    for orig, _ in seen:
        np.testing.assert_array_equal(orig, units)
    # The first candidate is gain 0: the gainless blob's decoded signal.
    (plain,) = codec.compress([x])
    y = codec.decompress([plain], restore=False)[0]
    np.testing.assert_array_equal(np.moveaxis(seen[0][1][0], 0, -1), y)


def test_model_files_of_earlier_conversions_load_unchanged(tmp_path):
    """A model file converted before ``padding`` was a spec field has no
    such key: it loads as it was (padded at the end, its fingerprint as
    before), and the blobs of the two are not each other's."""
    codec = WallocCodec.from_reference(*_paths("1d"), adaptive_gain=False)
    path = tmp_path / "new.npz"
    codec.save(path)
    assert WallocCodec.load(path).spec_ == codec.spec_
    with np.load(path) as f:
        arrays = dict(f)
    header = json.loads(arrays["header"].tobytes())
    assert header["spec"].pop("padding") == "centred"
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    old = WallocCodec.load(tmp_path / "old.npz")
    assert old.spec_ == dataclasses.replace(codec.spec_, padding="end")
    state = codec.module_.state_dict()
    assert old.fingerprint() == legacy_fingerprint(old.spec_, state)
    assert old.fingerprint() != codec.fingerprint()
    x = np.load(os.path.join(DATA, "reference_1d.npz"))[f"signal_{ODD}"]
    at_end = np.pad(x, ((0, 1024 - len(x)), (0, 0)), mode="symmetric")
    np.testing.assert_array_equal(old.transform([x])[0], codec.transform([at_end])[0])
    with pytest.raises(ValueError, match="blobs\\[0\\]"):
        codec.decompress(old.compress([x]))


def test_clamp_is_reached(case):
    """The fixtures' reconstructions reach the clamp, so the test above
    checks it (1-3% of the samples)."""
    _, _, data, _ = case
    recon = data["recon_0"]
    assert 0.001 < float((np.abs(recon) >= 0.5).mean()) < 0.1


def test_band_order_equals_the_reference(case):
    kind, codec, data, signals = case
    spec = codec.spec_
    offset, scale = UNITS[kind]
    x = np.moveaxis(signals[0], -1, 0)[None].astype(np.float64)
    bands = reference_bands((x - offset) / scale, spec.levels, spec.signal_ndim)
    np.testing.assert_allclose(bands[0], data["bands_0"], atol=2e-6)
    wpt = WaveletPacket(spec.levels, "bior4.4", spec.signal_ndim, "periodization")
    with torch.no_grad():
        ours = wpt.double()(torch.from_numpy((x - offset) / scale)).numpy()[0]
    perm = band_permutation(spec.in_channels, spec.levels, spec.signal_ndim)
    np.testing.assert_allclose(ours, bands[0][perm], atol=1e-10)


def test_compress_decompress(case):
    kind, codec, data, signals = case
    x = signals[0]
    codec = clone_fitted(codec, adaptive_gain=False)
    blobs = codec.compress([x])
    assert blob_info(blobs[0])["gain_steps"] == 0
    # A blob without a gain decodes in model units to the round trip.
    y = codec.decompress(blobs, restore=False)[0]
    np.testing.assert_array_equal(
        y, codec.inverse_transform(codec.transform(x[None]))[0]
    )
    restored = codec.decompress(blobs)[0]
    assert restored.dtype == x.dtype and restored.shape == x.shape
    expect = np.clip(np.round(_reference_signal(kind, data, 0)), *_range(x.dtype))
    # Rounding the float output to the dtype: off by one where the two
    # floats straddle a half level.
    assert np.abs(restored.astype(np.int64) - expect.astype(np.int64)).max() <= 1


def test_quiet_audio_with_a_gain():
    """The codec's per-signal gain works with the reference's decoder: a
    quiet clip gets a gain and decodes closer than without it."""
    codec = WallocCodec.from_reference(*_paths("1d"), device="cpu")
    data = np.load(os.path.join(DATA, "reference_1d.npz"))
    x = (data["signal_0"] // 64).astype(np.int16)
    (blob,) = codec.compress([x])
    assert blob_info(blob)["gain_steps"] > 0
    y = codec.decompress([blob])[0]
    assert y.shape == x.shape and y.dtype == np.int16


def test_quiet_audio_of_another_length_with_a_gain():
    """The gain's encoder pads as the reference too: an odd-length clip
    decodes to the centred window of the clip padded by the reference's
    rule, at the same gain."""
    codec = WallocCodec.from_reference(*_paths("1d"), device="cpu")
    data = np.load(os.path.join(DATA, "reference_1d.npz"))
    x = (data[f"signal_{ODD}"] // 64).astype(np.int16)  # 1001 samples
    padded = np.pad(x, ((11, 12), (0, 0)), mode="reflect")  # to 1024, centred
    # Apart: a list of the two would pad x with the other (merge_padded).
    (a,), (b,) = codec.compress([x]), codec.compress([padded])
    assert blob_info(a)["gain_steps"] > 0
    assert blob_info(a)["gain_steps"] == blob_info(b)["gain_steps"]
    ya, yb = codec.decompress([a, b], restore=False)
    np.testing.assert_array_equal(ya, yb[11 : 11 + len(x)])


def clone_fitted(est, **params):
    other = pickle.loads(pickle.dumps(est))
    return other.set_params(**params)


def _range(dtype):
    info = np.iinfo(dtype)
    return info.min, info.max


def test_persistence_round_trips(case, tmp_path):
    _, codec, _, signals = case
    x = signals[1][None]
    z = codec.transform(x)
    y = codec.inverse_transform(z)
    path = tmp_path / "m.npz"
    codec.save(path)
    for other in (
        WallocCodec.load(path),
        pickle.loads(pickle.dumps(codec)),
        joblib.load(_joblib(codec, tmp_path)),
    ):
        assert other.spec_ == codec.spec_
        np.testing.assert_array_equal(other.transform(x), z)
        np.testing.assert_array_equal(other.inverse_transform(z), y)
        assert other.fingerprint() == codec.fingerprint()


def _joblib(est, tmp_path):
    path = tmp_path / "m.joblib"
    joblib.dump(est, path)
    return path


def test_transformer_in_a_pipeline():
    pth, cfg = _paths("2d")
    data = np.load(os.path.join(DATA, "reference_2d.npz"))
    x = data["signal_0"]
    X = np.stack([x, x[::-1], x[:, ::-1]]).reshape(3, -1)
    t = WallocTransformer.from_reference(pth, cfg, signal_shape=x.shape, device="cpu")
    pipe = make_pipeline(t, PCA(2)).fit(X)
    assert pipe.transform(X).shape == (3, 2)
    assert t.transform(X).shape == (3, 8 * 12 * 12)


def test_dask_equals_in_memory():
    da = pytest.importorskip("dask.array")
    codec = WallocCodec.from_reference(*_paths("1d"), device="cpu")
    data = np.load(os.path.join(DATA, "reference_1d.npz"))
    x = np.stack([data["signal_1"], data["signal_1"][::-1]])
    z = codec.transform(da.from_array(x, chunks=(1, -1, -1))).compute()
    np.testing.assert_array_equal(z, codec.transform(x))


def test_checkpoint_as_dict_and_config_as_namespace():
    from types import SimpleNamespace

    pth, cfg = _paths("1d")
    state = torch.load(pth, weights_only=True)
    with open(cfg) as f:
        config = json.load(f)
    a = WallocTransformer.from_reference(
        state["model_state_dict"], SimpleNamespace(**config)
    )
    b = WallocTransformer.from_reference(pth, cfg)
    x = np.load(os.path.join(DATA, "reference_1d.npz"))["signal_1"][None]
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    assert a.spec_.decoder_kind == "oobleck+post-filter"
    assert a.boundary == "periodization" and a.spec_.boundary == "periodization"


@pytest.fixture()
def parts():
    pth, cfg = _paths("2d")
    state = dict(torch.load(pth, weights_only=True)["model_state_dict"])
    with open(cfg) as f:
        config = json.load(f)
    return state, config


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s, c: c.update(lightweight_encode=False), "non-linear encoder"),
        (lambda s, c: c.pop("Nd"), "missing keys"),
        (lambda s, c: c.update(J=4), "shape"),
        (lambda s, c: c.update(Nd=48), "multiple of 32"),
        (lambda s, c: c.update(post_filter=True), "Codec1D option"),
        (lambda s, c: c.update(num_stages=2), "ResidualCodec2D"),
        (lambda s, c: s.pop("decoder.1.conv_in.weight"), "missing"),
        (lambda s, c: s.update(extra=torch.zeros(1)), "unknown tensors"),
        (lambda s, c: s["decoder.1.conv_out.bias"].fill_(float("nan")), "finite"),
        (
            lambda s, c: s.update({"encoder.0.conv_in.weight": torch.zeros(1)}),
            "non-linear encoder",
        ),
    ],
)
def test_refuses_what_it_cannot_convert(parts, change, match):
    state, config = parts
    state = {k: v.clone() for k, v in state.items()}
    change(state, config)
    with pytest.raises(ValueError, match=match):
        WallocCodec.from_reference(state, config)


def test_other_config_keys_are_ignored(parts):
    """The authors' configs may record training settings too; the reference's
    README reads only the keys its classes take, and so does this."""
    state, config = parts
    config.update(batch_size=32, learning_rate=1e-4, Ne=64)
    codec = WallocCodec.from_reference(state, config)
    assert codec.spec_.decoder_kind == "autoencoder-kl"


def test_linear_codec_is_refused():
    config = {"channels": 3, "J": 3, "latent_dim": 12, "latent_bits": 8}
    with pytest.raises(ValueError, match="LinearCodec2D"):
        WallocCodec.from_reference({}, config)


def test_tensors_only(tmp_path):
    """A checkpoint that pickles anything but tensors is refused unread."""
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"x": torch.zeros(1)}, "obj": _Thing()}, path)
    with pytest.raises(ValueError, match="tensors-only"):
        WallocCodec.from_reference(path, _paths("2d")[1])


class _Thing:
    pass


def test_structural_params_come_from_the_config():
    with pytest.raises(ValueError, match="come from the checkpoint"):
        WallocCodec.from_reference(*_paths("2d"), latent_dim=8)


def test_reference_models_are_not_trained():
    codec = WallocCodec.from_reference(*_paths("2d"), warm_start=True)
    x = np.load(os.path.join(DATA, "reference_2d.npz"))["signal_0"]
    with pytest.raises(ValueError, match="not trained here"):
        codec.fit([x])
    with pytest.raises(ValueError, match="not trained here"):
        codec.partial_fit([x])


def test_boundary_parameter():
    x = np.random.default_rng(0).random((2, 16, 16, 3))
    kw = dict(latent_dim=4, levels=2, random_state=0)
    assert WallocTransformer(**kw).fit(x).spec_.boundary == "symmetric"
    t = WallocTransformer(boundary="periodization", **kw).fit(x)
    assert t.spec_.boundary == "periodization"
    # Wavelets that do not invert with symmetric borders keep periodization.
    t = WallocTransformer(wavelet="db2", **kw).fit(x)
    assert t.spec_.boundary == "periodization"
    with pytest.raises(ValueError, match="boundary"):
        WallocTransformer(boundary="zero", **kw).fit(x)


def test_spec_without_decoder_kind_is_unchanged():
    """Earlier models' specs (and so their fingerprints) do not change."""
    spec = ModelSpec(3, 12, 3, "bior4.4", 2, 8, 0, 0, "symmetric", "uint8")
    assert "decoder_kind" not in spec.to_json()
    assert "padding" not in spec.to_json() and spec.padding == "end"
    assert ModelSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="padding 'centred' is the reference"):
        dataclasses.replace(spec, padding="centred")
    ref = WallocCodec.from_reference(*_paths("2d")).spec_
    assert ref.to_json()["padding"] == "centred"
    assert ModelSpec.from_json(ref.to_json()) == ref
    with pytest.raises(ValueError, match="padding must be one of"):
        dataclasses.replace(ref, padding="reflect")
    with pytest.raises(ValueError, match="decoder_kind"):
        ModelSpec(3, 12, 3, "bior4.4", 2, 8, 32, 0, "symmetric", "uint8", "vae")
    with pytest.raises(ValueError, match="periodization"):
        ModelSpec(
            3, 12, 3, "bior4.4", 2, 8, 32, 0, "symmetric", "uint8", "autoencoder-kl"
        )


def test_cli_convert_and_checkpoint_as_model(tmp_path):
    from sklearn_walloc.cli import main

    pth, cfg = _paths("2d")
    out = tmp_path / "m.npz"
    assert main(["convert", pth, "--config", cfg, "-o", str(out), "-q"]) == 0
    codec = WallocCodec.load(out)
    assert codec.spec_.decoder_kind == "autoencoder-kl"
    x = np.load(os.path.join(DATA, "reference_2d.npz"))["signal_0"]
    from PIL import Image

    Image.fromarray(x).save(tmp_path / "a.png")
    assert main(["compress", str(tmp_path / "a.png"), "-m", str(out), "-q"]) == 0
    blob = next(p for p in tmp_path.iterdir() if p.suffix == ".wlc")
    # -m takes the .pth itself when its .json lies beside it.
    assert (
        main(["decompress", str(blob), "-m", pth, "-o", str(tmp_path / "d"), "-q"]) == 0
    )
    (png,) = (tmp_path / "d").iterdir()
    assert np.asarray(Image.open(png)).shape == x.shape


def test_cli_checkpoint_without_config(tmp_path, capsys):
    from sklearn_walloc.cli import main

    lone = tmp_path / "lone.pth"
    lone.write_bytes(open(_paths("2d")[0], "rb").read())
    assert main(["convert", str(lone), "-q"]) == 1
    assert "config" in capsys.readouterr().err


def test_tiles_of_the_1d_decoder(monkeypatch):
    """Large outputs decode in tiles: the Oobleck decoder and post-filter are
    local, so away from the ends (where the periodic packets read the other
    end of the signal) tiles equal the whole decode."""
    from sklearn_walloc import _tiles

    codec = WallocTransformer.from_reference(*_paths("1d"), device="cpu")
    data = np.load(os.path.join(DATA, "reference_1d.npz"))
    z = codec.transform(data["signal_0"][None])
    whole = codec.inverse_transform(z)
    monkeypatch.setattr(_tiles, "TILE_VALUES", 2 * 32 * 24)  # tiles of 24 latents
    tiled = codec.inverse_transform(z)
    border = 10 * 32
    inner = slice(border, -border)
    # float32 noise of a deep decoder at samples up to 3e4: up to 1.1e-6 of
    # the range with 2 threads on an Intel Xeon (a wrong halo errs by the
    # signal's own scale, thousands of LSB).
    np.testing.assert_allclose(tiled[:, inner], whole[:, inner], atol=1e-5 * 65536)


def test_synthesis_copies_never_move_the_model():
    """``fused_decoder().to(...)`` (what the runtime does for a device) copies
    lazily and leaves the estimator's module where it is."""
    codec = WallocTransformer.from_reference(*_paths("2d"), device="cpu")
    module = codec.module_
    synthesis = module.fused_decoder().to(torch.float64)
    assert next(module.parameters()).dtype == torch.float32
    z = torch.randn((1, 12, 4, 6), generator=torch.Generator().manual_seed(0)) * 20
    z = z.double()
    y = synthesis(z)
    assert y.dtype == torch.float64 and next(module.parameters()).dtype == torch.float32
    np.testing.assert_allclose(
        y.numpy(), module.fused_decoder()(z.float()).numpy(), atol=1e-3
    )  # float64 against float32, on the 0-255 scale
