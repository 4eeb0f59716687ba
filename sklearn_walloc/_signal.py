"""Input validation and layouts: numpy channels-last signals <-> ``(N, C, *S)``.

Three input forms (see the API contract): a flat 2D array whose rows are read with
``signal_shape``, an array holding a batch of equal-sized signals, and a list of
signals of different sizes. Signals are grouped by size so that each group runs
as whole-batch torch operations; the layout remembers how to put results back.
"""

import numbers
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

__all__ = [
    "Layout",
    "check_signal_shape",
    "crop",
    "input_data_range",
    "pad_to_multiple",
    "read_latents",
    "read_signals",
    "resolve_device",
    "run_in_chunks",
    "write_latents",
    "write_signals",
]

# Scalars per chunk when running a model: bounds memory, and because every signal
# of a given size always runs in a chunk of the same size (the last chunk is
# padded), results do not depend on how many signals were passed together.
_CHUNK_SCALARS = 2**18


@dataclass
class Layout:
    """How a validated input was laid out, to lay outputs out the same way.

    kind : {"flat", "batch", "list"}
    groups : list of (indices, shape) with the original spatial shape of each
        group of equal-sized signals and the positions of its signals.
    n_signals : int
    """

    kind: str
    groups: list
    n_signals: int


def resolve_device(device):
    """Parse the ``device`` parameter into a ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available; "
                "use device='auto' or 'cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA "
                "device(s) are available."
            )
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or a CUDA device; got {device!r}.")
    return dev


def check_signal_shape(signal_shape, signal_ndim):
    """Validate ``signal_shape``; return ``(spatial_shape, channels)`` or None."""
    if signal_shape is None:
        return None
    shape = tuple(signal_shape) if isinstance(signal_shape, (tuple, list)) else None
    if (
        shape is None
        or not all(isinstance(s, numbers.Integral) and s > 0 for s in shape)
        or len(shape) not in (signal_ndim, signal_ndim + 1)
    ):
        forms = "(L,) or (L, C)" if signal_ndim == 1 else "(H, W) or (H, W, C)"
        raise ValueError(
            f"signal_shape must be a tuple of positive integers {forms} for "
            f"signal_ndim={signal_ndim}; got {signal_shape!r}."
        )
    shape = tuple(int(s) for s in shape)
    channels = shape[signal_ndim] if len(shape) > signal_ndim else 1
    return shape[:signal_ndim], channels


def _check_min_size(spatial, min_size, what):
    if min(spatial) < min_size:
        raise ValueError(
            f"{what} is too small: with levels={int(np.log2(min_size))} every "
            f"spatial axis needs at least {min_size} samples; got spatial shape "
            f"{tuple(spatial)}."
        )


def _as_signal(x, name, signal_ndim):
    """One signal, channels last, as a finite float array ``(*S, C)``."""
    arr = check_array(
        x,
        ensure_2d=False,
        allow_nd=True,
        dtype=(np.float64, np.float32),
        ensure_all_finite=True,
        ensure_min_samples=1,
        input_name=name,
    )
    if arr.ndim == signal_ndim:
        arr = arr[..., None]
    if arr.ndim != signal_ndim + 1:
        forms = "(L,) or (L, C)" if signal_ndim == 1 else "(H, W) or (H, W, C)"
        raise ValueError(
            f"{name} must have shape {forms} for signal_ndim={signal_ndim}; got "
            f"shape {np.shape(x)}."
        )
    return arr


def read_signals(est, X, *, reset, min_size):
    """Validate ``X`` and split it into groups of equal-sized signals.

    Returns
    -------
    arrays : list of ndarray ``(n_g, C, *S)``, float32
    layout : Layout
    """
    ndim = est.signal_ndim
    if isinstance(X, (list, tuple)) and len(X) and not np.isscalar(X[0]):
        first = np.asarray(X[0]) if not hasattr(X[0], "shape") else X[0]
        if np.ndim(first) >= ndim:
            return _read_list(X, ndim, min_size)
    if hasattr(X, "ndim") and X.ndim == ndim + 2 or (ndim == 2 and _ndim(X) == 3):
        return _read_batch(est, X, ndim, min_size, reset)
    return _read_flat(est, X, ndim, min_size, reset)


def _ndim(X):
    return X.ndim if hasattr(X, "ndim") and not hasattr(X, "columns") else 2


def _read_flat(est, X, ndim, min_size, reset):
    X = validate_data(
        est, X, reset=reset, dtype=(np.float64, np.float32), ensure_all_finite=True
    )
    n, n_features = X.shape
    parsed = check_signal_shape(est.signal_shape, ndim)
    if parsed is None:
        if ndim == 2:
            raise ValueError(
                "signal_shape is required to read flat input with signal_ndim=2: "
                "pass signal_shape=(H, W) or (H, W, C), or pass X as an array of "
                "shape (n, H, W[, C])."
            )
        parsed = ((n_features,), 1)
    spatial, channels = parsed
    if int(np.prod(spatial)) * channels != n_features:
        raise ValueError(
            f"signal_shape={est.signal_shape!r} describes "
            f"{int(np.prod(spatial)) * channels} values per row, but X has "
            f"{n_features} feature(s)."
        )
    if min(spatial) < min_size and ndim == 1 and channels == 1:
        raise ValueError(
            f"X has {n_features} feature(s): with levels={int(np.log2(min_size))} "
            f"a signal needs at least {min_size} samples."
        )
    _check_min_size(spatial, min_size, "signal_shape")
    arr = X.reshape(n, *spatial, channels)
    arr = np.moveaxis(arr, -1, 1).astype(np.float32)
    return [arr], Layout("flat", [(np.arange(n), spatial)], n)


def _read_batch(est, X, ndim, min_size, reset):
    X = check_array(
        X,
        allow_nd=True,
        dtype=(np.float64, np.float32),
        ensure_all_finite=True,
        input_name="X",
    )
    if X.ndim == ndim + 1:
        X = X[..., None]
    if X.ndim != ndim + 2:
        raise ValueError(f"X has an unexpected shape {X.shape}.")
    if reset and hasattr(est, "n_features_in_"):
        del est.n_features_in_
    spatial = X.shape[1:-1]
    _check_min_size(spatial, min_size, "X")
    arr = np.moveaxis(X, -1, 1).astype(np.float32)
    return [arr], Layout("batch", [(np.arange(len(X)), spatial)], len(X))


def _read_list(X, ndim, min_size):
    signals = [_as_signal(x, f"X[{i}]", ndim) for i, x in enumerate(X)]
    by_shape = {}
    for i, s in enumerate(signals):
        _check_min_size(s.shape[:-1], min_size, f"X[{i}]")
        by_shape.setdefault(s.shape, []).append(i)
    arrays, groups = [], []
    for shape, idx in by_shape.items():
        stack = np.stack([signals[i] for i in idx])
        arrays.append(np.moveaxis(stack, -1, 1).astype(np.float32))
        groups.append((np.asarray(idx), shape[:-1]))
    return arrays, Layout("list", groups, len(signals))


def pad_to_multiple(x, multiple):
    """Symmetric extension of the spatial axes of ``(N, C, *S)`` to a multiple."""
    pads = [(0, 0), (0, 0)] + [(0, -s % multiple) for s in x.shape[2:]]
    if not any(p[1] for p in pads):
        return x
    return np.pad(x, pads, mode="symmetric")


def crop(x, spatial):
    """Crop the spatial axes of ``(N, C, *S)`` to ``spatial``."""
    return x[(slice(None), slice(None), *[slice(0, s) for s in spatial])]


def run_in_chunks(fn, x, device):
    """Apply ``fn`` (torch -> torch) to ``x`` (numpy ``(N, ...)``) in fixed chunks.

    Every chunk has the same number of signals (the last one is zero-padded), so
    each signal sees the same kernels whatever the batch it came in.
    """
    per_signal = max(1, int(np.prod(x.shape[1:])))
    chunk = max(1, _CHUNK_SCALARS // per_signal)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            part = x[start : start + chunk]
            n = len(part)
            if n < chunk:
                part = np.concatenate(
                    [part, np.zeros((chunk - n, *x.shape[1:]), x.dtype)]
                )
            t = torch.from_numpy(np.ascontiguousarray(part)).to(device)
            outputs.append(fn(t)[:n].cpu().numpy())
    return np.concatenate(outputs)


def write_latents(latents, layout):
    """Lay latents ``(n_g, D, *s)`` out in the form of the input."""
    if layout.kind == "flat":
        (z,) = latents
        return np.ascontiguousarray(np.moveaxis(z, 1, -1)).reshape(len(z), -1)
    if layout.kind == "batch":
        return np.ascontiguousarray(np.moveaxis(latents[0], 1, -1))
    out = [None] * layout.n_signals
    for z, (idx, _) in zip(latents, layout.groups):
        for j, i in enumerate(idx):
            out[i] = np.ascontiguousarray(np.moveaxis(z[j], 0, -1))
    return out


def read_latents(Z, latent_dim, signal_ndim, flat_grid):
    """Validate latents in any of the output forms.

    ``flat_grid`` is the latent grid shape for flat input, or None if unknown.
    Returns arrays ``(n_g, D, *s)`` float32 and a Layout whose group shapes are
    the latent grid shapes.
    """
    if isinstance(Z, (list, tuple)) and len(Z) and np.ndim(Z[0]) == signal_ndim + 1:
        grids = [_as_signal(z, f"Z[{i}]", signal_ndim) for i, z in enumerate(Z)]
        for i, z in enumerate(grids):
            _check_latent_dim(z.shape[-1], latent_dim, f"Z[{i}]")
        by_shape = {}
        for i, z in enumerate(grids):
            by_shape.setdefault(z.shape, []).append(i)
        arrays, groups = [], []
        for shape, idx in by_shape.items():
            stack = np.stack([grids[i] for i in idx])
            arrays.append(np.moveaxis(stack, -1, 1).astype(np.float32))
            groups.append((np.asarray(idx), shape[:-1]))
        return arrays, Layout("list", groups, len(grids))
    if hasattr(Z, "ndim") and Z.ndim == signal_ndim + 2:
        Z = check_array(
            Z, allow_nd=True, dtype=(np.float32, np.float64), input_name="Z"
        )
        _check_latent_dim(Z.shape[-1], latent_dim, "Z")
        arr = np.moveaxis(Z, -1, 1).astype(np.float32)
        return [arr], Layout("batch", [(np.arange(len(Z)), Z.shape[1:-1])], len(Z))
    Z = check_array(Z, dtype=(np.float32, np.float64), input_name="Z")
    if flat_grid is None:
        raise ValueError(
            "flat latents need signal_shape (or a model fitted on flat input) to "
            "know the latent grid."
        )
    expected = int(np.prod(flat_grid)) * latent_dim
    if Z.shape[1] != expected:
        raise ValueError(
            f"Z has {Z.shape[1]} features, but the latent grid {tuple(flat_grid)} "
            f"with latent_dim={latent_dim} has {expected}."
        )
    arr = Z.reshape(len(Z), *flat_grid, latent_dim)
    arr = np.moveaxis(arr, -1, 1).astype(np.float32)
    return [arr], Layout("flat", [(np.arange(len(Z)), tuple(flat_grid))], len(Z))


def _check_latent_dim(got, latent_dim, name):
    if got != latent_dim:
        raise ValueError(
            f"{name} has {got} latent channels in its last axis, but the model has "
            f"latent_dim={latent_dim}."
        )


def write_signals(signals, layout, flat_spatial=None):
    """Lay decoded signals ``(n_g, C, *S)`` out in the form of the latents.

    Flat output is cropped to ``flat_spatial`` and flattened channels last.
    """
    if layout.kind == "flat":
        (x,) = signals
        x = crop(x, flat_spatial)
        return np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(len(x), -1)
    return write_latents(signals, layout)


_SAMPLE_DTYPES = (np.uint8, np.int8, np.uint16, np.int16)


def input_data_range(X, arrays):
    """Peak-to-peak range for PSNR: the dtype's for 8/16-bit integer samples
    (images, PCM audio), else the observed range of the validated data."""
    first = X[0] if isinstance(X, (list, tuple)) and len(X) else X
    dtype = getattr(first, "dtype", None)
    if dtype is not None and dtype in _SAMPLE_DTYPES:
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    return hi - lo if hi > lo else 1.0
