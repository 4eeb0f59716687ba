"""Input validation and layouts: numpy channels-last signals <-> ``(N, C, *S)``.

Three input forms (see the API contract): a flat 2D array whose rows are read with
``signal_shape``, an array holding a batch of equal-sized signals, and a list of
signals of different sizes. Signals are grouped by size so that each group runs
as whole-batch torch operations; the layout remembers how to put results back.
"""

import numbers
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from . import _fork  # noqa: F401  (fork safety, on import)
from ._domain import check_float32_range, dtype_of

__all__ = [
    "Layout",
    "check_signal_shape",
    "crop",
    "iter_chunks",
    "merge_padded",
    "pad_to_multiple",
    "pad_widths",
    "read_latents",
    "read_signals",
    "resolve_device",
    "run_in_chunks",
    "run_merged",
    "source_dtype",
    "write_latents",
    "write_signals",
]

_FILE_HINT = (
    "read the file first (np.asarray(PIL.Image.open(path)) for images, "
    "soundfile.read(path) for audio) or use the walloc command-line tool"
)

# Scalars per chunk when running a model: bounds memory, and because every signal
# of a given size always runs in a chunk of the same size (the last chunk is
# padded), results do not depend on how many signals were passed together.
_CHUNK_SCALARS = 2**14


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


def resolve_device(device, *, fallback=False):
    """Parse the ``device`` parameter into a ``torch.device``.

    With ``fallback=True`` (inference), a CUDA device that this machine lacks
    falls back to the CPU with a ``UserWarning``: a model fitted on a GPU must
    stay usable wherever it is loaded.
    """
    if fallback:
        try:
            return resolve_device(device)
        except ValueError as e:
            if not str(device).startswith("cuda"):
                raise
            warnings.warn(f"{e} Running on the CPU instead.", UserWarning, stacklevel=3)
            return torch.device("cpu")
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
        raise ValueError(
            f"device must be 'auto', 'cpu' or a CUDA device; got {device!r}."
        )
    return dev


def check_signal_shape(signal_shape, signal_ndim):
    """Validate ``signal_shape``; return ``(spatial_shape, channels)`` or None.

    One entry may be -1: it is inferred from the row length of flat input.
    """
    if signal_shape is None:
        return None
    shape = tuple(signal_shape) if isinstance(signal_shape, (tuple, list)) else None
    if (
        shape is None
        or not all(
            isinstance(s, numbers.Integral) and (s > 0 or s == -1) for s in shape
        )
        or sum(s == -1 for s in shape) > 1
        or len(shape) not in (signal_ndim, signal_ndim + 1)
    ):
        forms = "(L,) or (L, C)" if signal_ndim == 1 else "(H, W) or (H, W, C)"
        raise ValueError(
            f"signal_shape must be a tuple of positive integers {forms} (one of "
            f"them may be -1) for signal_ndim={signal_ndim}; got {signal_shape!r}."
        )
    shape = tuple(int(s) for s in shape)
    channels = shape[signal_ndim] if len(shape) > signal_ndim else 1
    return shape[:signal_ndim], channels


def _resolve_flat_shape(signal_shape, signal_ndim, n_features):
    """(spatial, channels) of a flat row of ``n_features`` values."""
    parsed = check_signal_shape(signal_shape, signal_ndim)
    if parsed is None:
        if signal_ndim == 2:
            raise ValueError(
                "signal_shape is required to read flat input with signal_ndim=2: "
                "pass signal_shape=(H, W) or (H, W, C), or pass X as an array of "
                "shape (n, H, W[, C])."
            )
        return (n_features,), 1
    spatial, channels = parsed
    dims = [*spatial, channels]
    known = int(np.prod([d for d in dims if d != -1]))
    if -1 in dims and known and n_features % known == 0 and n_features:
        dims[dims.index(-1)] = n_features // known
    if -1 in dims or int(np.prod(dims)) != n_features:
        raise ValueError(
            f"signal_shape={signal_shape!r} cannot describe a row of X, which has "
            f"{n_features} feature(s)."
        )
    return tuple(dims[:-1]), dims[-1]


def _check_min_size(spatial, what):
    # Shorter signals are padded up to a multiple of 2**levels.
    if min(spatial) < 1:
        raise ValueError(
            f"{what} is empty: every spatial axis needs at least 1 sample; got "
            f"spatial shape {tuple(spatial)}."
        )


def _check_real_numbers(x, name):
    """Refuse what check_array would refuse with an unhelpful message: file names
    (as text, not samples) and complex numbers (which it prints in full)."""
    if isinstance(x, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{name} is a file name ({os.fspath(x)!r}), not samples: {_FILE_HINT}."
        )
    dtype = dtype_of(x)
    if dtype.kind == "c":
        raise ValueError(
            f"Complex data not supported: {name} is {dtype}; WaLLoC codes real "
            "samples, so pass the real and imaginary parts as separate channels or "
            "signals."
        )


def _as_signal(x, name, signal_ndim, convert=None, lazy_above=None):
    """One signal, channels last, as a finite float array ``(*S, C)`` (an
    integer image of more than ``lazy_above`` samples: as it is, see
    :func:`read_signals`)."""
    _check_real_numbers(x, name)
    source = dtype_of(x)
    lazy = _stays_integer(source, _n_values(x), signal_ndim, lazy_above)
    checks = {"dtype": None} if lazy else _float_dtypes_and_finite_check(x)
    try:
        arr = check_array(
            x,
            ensure_2d=False,
            allow_nd=True,
            ensure_min_samples=1,
            input_name=name,
            **checks,
        )
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if arr.ndim == signal_ndim:
        arr = arr[..., None]
    if arr.ndim != signal_ndim + 1:
        forms = "(L,) or (L, C)" if signal_ndim == 1 else "(H, W) or (H, W, C)"
        raise ValueError(
            f"{name} must have shape {forms} for signal_ndim={signal_ndim}; got "
            f"shape {np.shape(x)}."
        )
    if lazy:
        return _check_integers(arr, source, name, convert)
    return _samples(arr, source, name, convert)


def _stays_integer(source, size, signal_ndim, lazy_above):
    """Whether an integer image is kept in its dtype: the strip encoder
    (``_encode_tiles``) converts it a strip at a time, sparing a float32 copy
    of the whole image (4x a uint8 photo)."""
    return (
        lazy_above is not None
        and signal_ndim == 2
        and np.dtype(source).kind in "iu"
        and size > lazy_above
    )


def _n_values(x):
    """Values of an array-like without converting it; 0 (never kept as it is)
    for what has no ``shape``, such as a PIL image (whose ``size`` is its
    width and height)."""
    shape = getattr(x, "shape", None)
    return int(np.prod(shape)) if isinstance(shape, tuple) else 0


def _check_integers(arr, source, name, convert):
    """``arr`` itself, once ``convert`` accepts its range (its errors, raised
    on the extremes, are the ones the whole converted image would raise)."""
    if convert is not None and arr.size:
        convert(np.array([arr.min(), arr.max()], np.float32), source, name)
    return arr


def _samples(arr, source, name, convert):
    """Validated float samples, checked against float32 and converted by
    ``convert(arr, source_dtype, name)`` (the model's sample domain) if given."""
    check_float32_range(arr, name)
    return arr if convert is None else convert(arr, source, name)


def read_signals(est, X, *, reset, convert=None, lazy_above=None):
    """Validate ``X`` and split it into groups of equal-sized signals.

    ``convert(samples, source_dtype, name)``, if given, maps each signal's
    validated float samples into the model's units (see ``_domain``). With
    ``lazy_above``, an integer image (batch or list) of more samples than that
    stays in its dtype, unconverted (its range checked): for the strip
    encoder, which converts it strip by strip.

    Returns
    -------
    arrays : list of ndarray ``(n_g, C, *S)``, float32 (or integer, above)
    layout : Layout
    """
    ndim = est.signal_ndim
    if isinstance(X, (list, tuple)):
        for i, x in enumerate(X):
            if isinstance(x, (str, bytes, os.PathLike)):
                _check_real_numbers(x, f"X[{i}]")
    if _is_signal_list(X, ndim):
        return _read_list(X, ndim, convert, lazy_above)
    _check_real_numbers(X, "X")
    batch_ndims = (3, 4) if ndim == 2 else (3,)
    if _ndim(X) in batch_ndims:
        return _read_batch(est, X, ndim, reset, convert, lazy_above)
    if _ndim(X) > 2:
        forms = "(n, H, W), (n, H, W, C)" if ndim == 2 else "(n, L, C)"
        raise ValueError(
            f"X must be a flat 2D array (n_samples, n_features), a batch of shape "
            f"{forms}, or a list of signals for signal_ndim={ndim}; got an array "
            f"of shape {np.shape(X)}."
        )
    return _read_flat(est, X, ndim, reset, convert)


def source_dtype(X, signal_ndim):
    """The dtype that sets a new model's sample domain: the first signal's for a
    list of signals, else the array's."""
    if _is_signal_list(X, signal_ndim):
        return dtype_of(X[0])
    return dtype_of(X)


def _is_array_like_signal(x):
    # PIL images expose __array_interface__ but no shape.
    return hasattr(x, "shape") or hasattr(x, "__array_interface__")


def _is_signal_list(X, ndim):
    """A list/tuple of arrays is a list of signals; nested lists of numbers are a
    flat array-like, as everywhere in scikit-learn."""
    return (
        isinstance(X, (list, tuple))
        and len(X) > 0
        and _is_array_like_signal(X[0])
        and np.ndim(X[0]) >= ndim
    )


def _n_rows(X):
    return len(X) if hasattr(X, "__len__") else int(np.shape(X)[0])


def _ndim(X):
    """Dimensions of an array-like without converting it; lists are read as 2D."""
    return X.ndim if hasattr(X, "ndim") and not hasattr(X, "columns") else 2


def _float_dtypes_and_finite_check(X):
    """check_array arguments: float32 first, as the model computes in float32;
    integer and boolean arrays cannot hold NaN or inf, so they skip that pass."""
    integer = hasattr(X, "dtype") and getattr(X.dtype, "kind", "") in "uib"
    return {"dtype": (np.float32, np.float64), "ensure_all_finite": not integer}


def _channels_first_view(x):
    """``(N, *S, C)`` as float32 ``(N, C, *S)``: a view when it can be, since
    torch's convolutions take channels-last memory as it is; a copy (keeping
    that layout) when ``x`` is read-only, which torch tensors cannot wrap.
    Integer images (kept by ``lazy_above``) stay as they are: only their
    float32 strips meet torch."""
    arr = np.moveaxis(x, -1, 1)
    if arr.dtype.kind in "iu":
        return arr
    arr = arr.astype(np.float32, copy=False)
    return arr if arr.flags.writeable else arr.copy(order="K")


def _read_flat(est, X, ndim, reset, convert):
    source = dtype_of(X)
    X = validate_data(est, X, reset=reset, **_float_dtypes_and_finite_check(X))
    n, n_features = X.shape
    spatial, channels = _resolve_flat_shape(est.signal_shape, ndim, n_features)
    _check_min_size(spatial, "signal_shape")
    X = _samples(X, source, "X", convert)
    arr = _channels_first_view(X.reshape(n, *spatial, channels))
    return [arr], Layout("flat", [(np.arange(n), spatial)], n)


def _read_batch(est, X, ndim, reset, convert, lazy_above=None):
    source = dtype_of(X)
    n = _n_rows(X)
    lazy = _stays_integer(source, _n_values(X) // max(n, 1), ndim, lazy_above)
    checks = {"dtype": None} if lazy else _float_dtypes_and_finite_check(X)
    X = check_array(X, allow_nd=True, input_name="X", **checks)
    if X.ndim == ndim + 1:
        X = X[..., None]
    if X.ndim != ndim + 2:
        raise ValueError(f"X has an unexpected shape {X.shape}.")
    if reset and hasattr(est, "n_features_in_"):
        del est.n_features_in_
    spatial = X.shape[1:-1]
    _check_min_size(spatial, "X")
    if lazy:
        X = _check_integers(X, source, "X", convert)
    else:
        X = _samples(X, source, "X", convert)
    arr = _channels_first_view(X)
    return [arr], Layout("batch", [(np.arange(len(X)), spatial)], len(X))


def _read_list(X, ndim, convert, lazy_above=None):
    signals = [
        _as_signal(x, f"X[{i}]", ndim, convert, lazy_above) for i, x in enumerate(X)
    ]
    by_shape = {}
    for i, s in enumerate(signals):
        _check_min_size(s.shape[:-1], f"X[{i}]")
        if s.shape[-1] != signals[0].shape[-1]:
            raise ValueError(
                f"X[{i}] has {s.shape[-1]} channel(s), but X[0] has "
                f"{signals[0].shape[-1]}: the signals of a list share one channel "
                "count."
            )
        by_shape.setdefault(s.shape, []).append(i)
    arrays, groups = [], []
    for shape, idx in by_shape.items():
        # One signal of its size (the common call): a view, not a copy. Not
        # ``[None]``, whose stride 0 sends oneDNN down a ~1.6x slower path.
        one = signals[idx[0]]
        stack = (
            one.reshape(1, *one.shape)
            if len(idx) == 1
            else np.stack([signals[i] for i in idx])
        )
        arrays.append(_channels_first_view(stack))
        groups.append((np.asarray(idx), shape[:-1]))
    return arrays, Layout("list", groups, len(signals))


def pad_widths(spatial, multiple, centred=False):
    """``(before, after)`` per axis that pad ``spatial`` to a multiple.

    Not ``centred``: all after. ``centred``: ``(P - S) // 2`` before and the
    rest after, as the reference implementation's ``compute_padding``.
    """
    widths = []
    for s in spatial:
        extra = -s % multiple
        before = extra // 2 if centred else 0
        widths.append((before, extra - before))
    return widths


def pad_to_multiple(x, multiple, centred=False):
    """The spatial axes of ``(N, C, *S)`` padded to a multiple of ``multiple``:
    by symmetric extension after the end (the edge sample repeated), or
    ``centred`` by reflection on both sides (the edge sample not repeated), as
    the reference implementation's ``pad`` helper (``F.pad(mode="reflect")``;
    where that refuses a pad as wide as the axis, numpy reflects again)."""
    pads = [(0, 0), (0, 0), *pad_widths(x.shape[2:], multiple, centred)]
    if not any(a or b for a, b in pads):
        return x
    return np.pad(x, pads, mode="reflect" if centred else "symmetric")


def merge_padded(arrays, multiple, *, pad_alone=True, centred=False):
    """Pad each array to ``multiple`` and merge those of equal padded shape.

    Signals of different sizes that pad to the same shape are the same problem
    for the model: running them together in one set of fixed chunks gives each
    exactly the bits it gets alone, and a list of similar sizes pays one padded
    chunk per padded shape instead of one per size.

    Parameters
    ----------
    arrays : list of ndarray, each ``(n_i, C, *S_i)``
    multiple : int
    pad_alone : bool, default=True
        False: an array whose padded shape no other array shares is returned
        as it is (unpadded, not copied), for a caller that pads chunk by chunk.
    centred : bool, default=False
        Pad as :func:`pad_to_multiple` with ``centred``.

    Returns
    -------
    merged : list of (ndarray ``(sum n_i, C, *P)``, list of (array index, start))
        One entry per padded shape, in order of first appearance; where each
        input array's signals start in it.
    """
    groups = {}
    for k, a in enumerate(arrays):
        padded = tuple(-(-d // multiple) * multiple for d in a.shape[2:])
        groups.setdefault((a.shape[1], padded, a.dtype.str), []).append(k)
    merged = []
    for ks in groups.values():
        if len(ks) == 1 and not pad_alone:
            merged.append((arrays[ks[0]], [(ks[0], 0)]))
            continue
        parts = [pad_to_multiple(arrays[k], multiple, centred) for k in ks]
        starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        stack = parts[0] if len(parts) == 1 else np.concatenate(parts)
        merged.append((stack, [(k, int(s)) for k, s in zip(ks, starts)]))
    return merged


def run_merged(fn, arrays, multiple, device, centred=False):
    """``run_in_chunks`` over each array padded to ``multiple`` (``centred``
    or not), equal padded shapes run together (see :func:`merge_padded`); one
    output per array."""
    out = [None] * len(arrays)
    for stack, parts in merge_padded(arrays, multiple, centred=centred):
        y = run_in_chunks(fn, stack, device)
        for k, start in parts:
            out[k] = y[start : start + len(arrays[k])]
    return out


def crop(x, spatial, centred=False):
    """Crop the spatial axes of ``(N, C, *S)`` to ``spatial``: their start, or
    ``centred`` the window that :func:`pad_to_multiple` put the signal in
    (``(S - spatial) // 2`` from the start; ``S`` must be that padded size)."""
    starts = [(n - s) // 2 if centred else 0 for n, s in zip(x.shape[2:], spatial)]
    return x[
        (slice(None), slice(None), *[slice(a, a + s) for a, s in zip(starts, spatial)])
    ]


def _canonical_layout(t):
    """One memory layout per shape: the kernels torch picks, and so the last bits
    of a result, depend on it. Images go channels-last (what the readers' views
    already are, so no copy; and the factorised encoder runs about 1.3x faster
    on it); 1D signals go contiguous. Strides too: torch ignores those of
    size-1 axes when it checks a layout, oneDNN does not (numpy's ``x[None]``
    has stride 0 there, and ran the encoder ~1.6x slower)."""
    if t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
        _, c, h, w = t.shape
        strides = (h * w * c, 1, w * c, c)
    else:
        t = t.contiguous()
        strides = torch.empty(t.shape, device="meta").stride()
    return t if t.stride() == strides else t.as_strided(t.shape, strides)


def run_in_chunks(fn, x, device):
    """Apply ``fn`` (torch -> torch) to ``x`` (numpy ``(N, ...)``) in fixed chunks.

    Every chunk has the same number of signals (the last one is zero-padded), so
    each signal sees the same kernels whatever the batch it came in.
    """
    outputs = []
    with torch.no_grad():
        for t, n in iter_chunks(x, device):
            # Channels last, like the readers' input and the writers' output, so
            # neither end needs a transposing copy.
            outputs.append(np.moveaxis(fn(t)[:n].cpu().numpy(), 1, -1))
    y = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
    return np.moveaxis(y, -1, 1)


def iter_chunks(x, device):
    """The fixed chunks of :func:`run_in_chunks`: ``(t, n)`` pairs, ``t`` a
    tensor on ``device`` of the chunk's signals zero-padded to the chunk size,
    of which the first ``n`` are real."""
    per_signal = max(1, int(np.prod(x.shape[1:])))
    chunk = max(1, _CHUNK_SCALARS // per_signal)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        n = len(part)
        if n < chunk:
            part = np.concatenate([part, np.zeros((chunk - n, *x.shape[1:]), x.dtype)])
        yield _canonical_layout(torch.from_numpy(part)).to(device), n


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
    if _is_signal_list(Z, signal_ndim + 1):
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


def write_signals(signals, layout, flat_spatial=None, centred=False):
    """Lay decoded signals ``(n_g, C, *S)`` out in the form of the latents.

    Flat output is cropped to ``flat_spatial`` (:func:`crop`, ``centred`` or
    not) and flattened channels last.
    """
    if layout.kind == "flat":
        (x,) = signals
        x = crop(x, flat_spatial, centred)
        return np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(len(x), -1)
    return write_latents(signals, layout)
