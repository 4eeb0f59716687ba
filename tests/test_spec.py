"""ModelSpec: validation, tensor shapes without building, JSON, fingerprints, and
the estimator's ``spec_`` (warm starts, legacy pickles)."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from sklearn_walloc import WallocCodec, WallocTransformer
from sklearn_walloc._spec import (
    MAX_INFERENCE_BYTES,
    MAX_PARAMETERS,
    ModelSpec,
    _synthesis_taps,
    legacy_fingerprint,
)
from sklearn_walloc._synthesis import _polyphase_synthesis

TINY = dict(decoder_width=8, decoder_depth=1, max_iter=0, random_state=0)
BASE = dict(
    in_channels=3,
    latent_dim=6,
    levels=2,
    wavelet="bior4.4",
    signal_ndim=2,
    latent_bits=8,
    decoder_width=8,
    decoder_depth=1,
    boundary="symmetric",
    sample_dtype="uint8",
)


def _spec(**changes):
    return ModelSpec(**{**BASE, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"signal_ndim": 1, "in_channels": 2, "latent_dim": 3},
        {"decoder_width": 0},
        {"decoder_depth": 0},
        {"decoder_depth": 3, "decoder_width": 4, "levels": 1, "wavelet": "haar"},
        {"boundary": "periodization", "sample_dtype": None},
    ],
)
def test_tensor_shapes_equal_the_built_modules_learned_tensors(changes):
    spec = _spec(**changes)
    built = spec.build().state_dict()
    learned = [(k, tuple(v.shape)) for k, v in built.items() if not k.startswith("wpt")]
    assert list(spec.tensor_shapes().items()) == learned
    assert all(built[k].dtype == torch.float32 for k in spec.tensor_shapes())
    assert spec.build().wpt.boundary == spec.boundary


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"levels": 11}, "levels must be in"),
        ({"levels": 0}, "levels must be in"),
        ({"levels": True}, "levels must be an int"),
        ({"levels": 2.0}, "levels must be an int"),
        ({"latent_dim": np.int64(6)}, "latent_dim must be an int"),
        ({"signal_ndim": 3}, "signal_ndim"),
        ({"in_channels": 0}, "in_channels"),
        ({"latent_dim": 49}, "latent_dim=49 exceeds the 48"),
        ({"latent_bits": 99}, "latent_bits must be in"),
        ({"latent_bits": 1}, "latent_bits must be in"),
        ({"decoder_width": 4097}, "decoder_width"),
        ({"decoder_depth": 65}, "decoder_depth"),
        ({"wavelet": "nope"}, "wavelet"),
        ({"wavelet": "morl"}, "wavelet"),
        ({"wavelet": 3}, "wavelet must be a str"),
        ({"boundary": "zero"}, "boundary"),
        ({"sample_dtype": "complex64"}, "sample_dtype"),
        ({"sample_dtype": np.dtype("uint8")}, "sample_dtype"),
        ({"in_channels": 5000, "levels": 2, "latent_dim": 1}, "bands"),
        ({"decoder_width": 4096, "decoder_depth": 64}, "parameters"),
    ],
)
def test_validate_names_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        _spec(**changes)


def test_parameter_bound_is_checked_from_the_formula():
    # 64 blocks of 4096x4096x3x3 would be 19 G parameters: refused instantly.
    with pytest.raises(ValueError, match=str(MAX_PARAMETERS)):
        _spec(decoder_width=4096, decoder_depth=64)
    ok = _spec(decoder_width=256, decoder_depth=8)
    assert sum(np.prod(s) for s in ok.tensor_shapes().values()) <= MAX_PARAMETERS


PERIODIC = dict(
    signal_ndim=1, in_channels=1, boundary="periodization", sample_dtype=None
)


@pytest.mark.parametrize(
    "changes,match",
    [
        # The model files of issue 20: 1D at levels=10 (20 GiB in the synthesis
        # edge rows) and 2D at levels=8 (9 GB resident).
        (dict(signal_ndim=1, in_channels=1, latent_dim=1, levels=10), "levels=10"),
        (dict(in_channels=1, latent_dim=1, levels=8), "levels=8"),
        (dict(signal_ndim=1, in_channels=1, latent_dim=13, levels=7), "levels=7"),
        (dict(signal_ndim=1, latent_dim=13, levels=6, wavelet="bior6.8"), "levels=6"),
        (dict(PERIODIC, levels=10, wavelet="db38"), "levels=10 with wavelet 'db38'"),
        # The end-of-axis least squares probe 12 * latent_dim + 1 latents
        # (measured: 1.2 GB for both).
        (dict(levels=4, latent_dim=48), "latent_dim=48 with 768"),
        (dict(levels=3, latent_dim=192), "latent_dim=192 with 192"),
    ],
)
def test_inference_memory_is_bounded_from_the_spec(changes, match):
    with pytest.raises(ValueError, match=match) as info:
        _spec(**{"decoder_width": 0, "decoder_depth": 0, **changes})
    assert "MAX_INFERENCE_BYTES" in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {},  # and the shipped models' structures:
        dict(levels=3, latent_dim=12, decoder_width=48, decoder_depth=2),
        dict(levels=2, latent_dim=12, decoder_width=48, decoder_depth=2),
        dict(in_channels=1, levels=3, latent_dim=4, decoder_width=48, decoder_depth=2),
        dict(signal_ndim=1, in_channels=2, levels=5, latent_dim=13),
        dict(signal_ndim=1, in_channels=1, levels=6, latent_dim=13),
        # Ordinary settings beyond them.
        dict(levels=4, latent_dim=12),
        dict(levels=3, latent_dim=48),
        dict(in_channels=4, levels=3, latent_dim=64),
        dict(in_channels=1, levels=5, latent_dim=4),
        dict(signal_ndim=1, in_channels=2, levels=6, latent_dim=26),
        dict(signal_ndim=1, in_channels=8, levels=5, latent_dim=64),
        dict(signal_ndim=1, in_channels=1, levels=7, wavelet="haar"),
        dict(PERIODIC, levels=6, wavelet="db38"),
    ],
)
def test_ordinary_models_fit_the_inference_bound(changes):
    parts = _spec(**changes).inference_bytes()
    assert 0 < sum(parts.values()) <= MAX_INFERENCE_BYTES


def test_fit_refuses_a_model_beyond_the_inference_bound(rng):
    X = rng.integers(-1000, 1000, (2, 256, 1)).astype(np.int16)
    w = WallocTransformer(signal_ndim=1, levels=7, latent_dim=2, **TINY)
    with pytest.raises(ValueError, match=r"levels=7 .*GiB.*MAX_INFERENCE_BYTES"):
        w.fit(X)
    WallocTransformer(signal_ndim=1, levels=6, latent_dim=2, **TINY).fit(X)


@pytest.mark.parametrize("wavelet", ["bior4.4", "bior6.8", "haar", "db3", "sym4"])
@pytest.mark.parametrize("levels", [1, 2, 3, 5])
def test_synthesis_taps_without_the_impulse_responses(wavelet, levels):
    g, t0 = _polyphase_synthesis(levels, wavelet, "periodization")
    assert _synthesis_taps(levels, wavelet) == (g.shape[2], t0)


def test_json_round_trip_is_strict():
    spec = _spec()
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert ModelSpec.from_json(_spec(sample_dtype=None).to_json()).sample_dtype is None
    with pytest.raises(ValueError, match=r"unknown keys.*extra"):
        ModelSpec.from_json({**spec.to_json(), "extra": 1})
    d = spec.to_json()
    del d["boundary"]
    with pytest.raises(ValueError, match=r"missing keys.*boundary"):
        ModelSpec.from_json(d)
    with pytest.raises(ValueError, match="JSON object"):
        ModelSpec.from_json([1, 2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.levels = 3


def test_fingerprint_covers_spec_and_every_learned_tensor():
    spec = _spec()
    state = spec.build().state_dict()
    fp = spec.fingerprint(state)
    assert len(fp) == 16
    assert spec.fingerprint({k: v.clone() for k, v in state.items()}) == fp
    # The wavelet filters follow from the name: not part of the v2 fingerprint.
    learned = {k: state[k] for k in spec.tensor_shapes()}
    assert spec.fingerprint(learned) == fp
    assert _spec(sample_dtype="uint16").fingerprint(state) != fp
    for name in spec.tensor_shapes():
        changed = dict(state)
        changed[name] = state[name] + 1
        assert spec.fingerprint(changed) != fp, name


def test_periodization_models_keep_the_legacy_fingerprint():
    spec = _spec(boundary="periodization", sample_dtype=None)
    state = spec.build().state_dict()
    assert spec.fingerprint(state) == legacy_fingerprint(spec, state)
    # The legacy formula covers the filter buffers too.
    changed = dict(state)
    changed["wpt.analysis"] = state["wpt.analysis"] * 2
    assert spec.fingerprint(changed) != spec.fingerprint(state)


def test_estimator_records_its_spec(rng):
    X = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    w = WallocTransformer(latent_dim=5, levels=1, latent_bits="auto", **TINY).fit(X)
    assert w.spec_ == _spec(latent_dim=5, levels=1)
    assert (w.n_channels_, w.latent_bits_) == (3, 8)
    assert w.module_.wpt.boundary == "symmetric"


def test_warm_start_compares_specs(rng):
    X = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    w = WallocTransformer(latent_dim=5, levels=1, warm_start=True, **TINY).fit(X)
    spec = w.spec_
    # Other data dtype: converted into the fitted domain, the spec is kept.
    w.fit(X.astype(np.float32) / 255)
    assert w.spec_ is spec
    with pytest.raises(ValueError, match="same model structure"):
        w.set_params(latent_dim=4).fit(X)
    with pytest.raises(ValueError, match="same model structure"):
        w.set_params(latent_dim=5).fit(X[..., :2])
    with pytest.raises(ValueError, match="same model structure"):
        w.set_params(decoder_width=4).partial_fit(X)


def _as_old_pickle(est):
    """What the previous version pickled: no spec_, a _structure tuple, and a
    WaveletPacket with no boundary attribute."""
    state = dict(est.__getstate__())
    del state["spec_"]
    state["_structure"] = (6, 2, "bior4.4", 2, "auto", 8, 1, 3)
    module = pickle.loads(pickle.dumps(state["module_"]))
    del module.wpt.boundary
    state["module_"] = module
    old = type(est).__new__(type(est))
    return pickle.loads(pickle.dumps((old, state)))


def test_old_pickles_load_as_legacy_models(rng):
    X = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    codec = WallocCodec(latent_dim=6, levels=2, **TINY).fit(X)
    old, state = _as_old_pickle(codec)
    old.__setstate__(state)
    assert old.spec_ == dataclasses.replace(
        codec.spec_, boundary="periodization", sample_dtype=None
    )
    assert not hasattr(old, "_structure")
    assert old.module_.wpt.boundary == "periodization"
    state_dict = old.module_.state_dict()
    assert old.fingerprint() == legacy_fingerprint(old.spec_, state_dict)
    assert old.fingerprint() != codec.fingerprint()
    # Legacy models never convert: float samples are numbers as they are (the
    # new model reads them at full scale and refuses floats in [0, 255]).
    Xf = X.astype(np.float64)
    np.testing.assert_array_equal(old.transform(Xf), old.transform(X))
    with pytest.raises(ValueError, match="full scale"):
        codec.transform(Xf)
    blobs = old.compress(X)
    assert np.array_equal(
        old.decompress(blobs, restore=False), old.inverse_transform(old.transform(X))
    )
    assert pickle.loads(pickle.dumps(old)).fingerprint() == old.fingerprint()
