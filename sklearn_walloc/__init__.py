"""sklearn-walloc: WaLLoC (wavelet-domain learned lossy compression) for scikit-learn.

``WallocTransformer`` is a learned, PCA-like transformer for 1D and 2D signals;
``WallocCodec`` adds entropy coding of its integer latents to bytes.
"""

# The public names are imported on first use (PEP 562): ``import
# sklearn_walloc`` stays cheap, so the ``walloc`` command line answers --help
# and argument errors without importing torch and scikit-learn (seconds).
import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "SignalStream": "._streaming",
    "WallocCodec": ".codec",
    "WallocTransformer": ".transformer",
    "fit_distributed": "._distributed",
    "list_pretrained": "._pretrained",
}

__all__ = [
    "SignalStream",
    "WallocCodec",
    "WallocTransformer",
    "__version__",
    "fit_distributed",
    "list_pretrained",
]


# ``sklearn_walloc.codec`` and friends also work after a bare ``import
# sklearn_walloc``, as they did when this file imported them eagerly.
_SUBMODULES = {"cli", "codec", "datasets", "metrics", "transformer"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
