"""A safe file format for fitted models: arrays and JSON in an ``.npz``.

Nothing is unpickled on load (``allow_pickle=False``): the file holds the
estimator's parameters and fitted attributes as JSON text, the network's tensors
as plain arrays, and a format version checked on load.
"""

import json
import zipfile

import numpy as np
import torch

from . import __version__

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 1
_MAGIC = "sklearn-walloc-model"
_FITTED = (
    "n_channels_",
    "latent_bits_",
    "signal_shape_",
    "device_",
    "data_range_",
    "latent_scale_",
    "n_iter_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "n_features_in_",
)


def _jsonable_params(est):
    params = est.get_params(deep=False)
    if not isinstance(params.get("random_state"), (int, type(None))):
        # A RandomState instance is state, not configuration.
        params["random_state"] = None
    if params.get("signal_shape") is not None:
        params["signal_shape"] = list(params["signal_shape"])
    return params


def save(est, path):
    """Write ``est`` (fitted) to ``path``; see the module docstring."""
    header = {
        "magic": _MAGIC,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "class": type(est).__name__,
        "params": _jsonable_params(est),
        "fitted": {k: getattr(est, k) for k in _FITTED if hasattr(est, k)},
    }
    arrays = {
        f"state/{k}": v.detach().cpu().numpy()
        for k, v in est.module_.state_dict().items()
    }
    text = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, header=text, **arrays)


def load(cls, path):
    """Read a model written by :func:`save` into a new ``cls`` instance."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(data["header"].tobytes().decode("utf-8"))
            arrays = {
                k[len("state/") :]: data[k]
                for k in data.files
                if k.startswith("state/")
            }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ValueError(f"{path!s} is not a sklearn-walloc model file: {e}") from None
    if not isinstance(header, dict) or header.get("magic") != _MAGIC:
        raise ValueError(f"{path!s} is not a sklearn-walloc model file.")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!s} has model format version {header.get('format_version')!r}; "
            f"this sklearn-walloc reads version {FORMAT_VERSION}."
        )
    # A WallocCodec can load a WallocTransformer's file (same model, plus coding).
    if header.get("class") not in {c.__name__ for c in cls.__mro__}:
        raise ValueError(
            f"{path!s} holds a {header.get('class')}, not a {cls.__name__}."
        )
    params = dict(header["params"])
    if params.get("signal_shape") is not None:
        params["signal_shape"] = tuple(params["signal_shape"])
    est = cls(**params)
    for k, v in header["fitted"].items():
        setattr(est, k, tuple(v) if k == "signal_shape_" and v is not None else v)
    if not hasattr(est, "latent_bits_"):  # files written before "auto" existed
        est.latent_bits_ = est.latent_bits
    from ._networks import WallocAutoencoder

    module = WallocAutoencoder(
        est.n_channels_,
        est.latent_dim,
        est.levels,
        est.wavelet,
        est.signal_ndim,
        est.latent_bits_,
        est.decoder_width,
        est.decoder_depth,
        boundary="periodization",  # the only rule of model format 1
    )
    state = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(
            f"{path!s}: the stored weights do not fit the model: {e}"
        ) from None
    est.module_ = module.eval().requires_grad_(False)
    est._structure = est._current_structure(est.n_channels_)
    est._runtime = {}
    return est
