"""The caller's units: what a blob records of its input, and how it comes back.

``WallocCodec.compress`` records each signal's original shape (with or without
a channel axis, as given) and dtype; ``decompress`` (``restore=True``, the
default) crops the decoded signal to that shape and returns it in that dtype
and scale: the inverse of the sample-domain rule (``_domain``), then integers
rounded and clipped, floats cast, bools thresholded. ``decode_grids`` applies
:func:`restore_values` tile by tile to a large signal, so its float32 decode
never exists whole.
"""

import numpy as np

from ._domain import dtype_of, from_domain
from ._signal import crop

__all__ = ["coded_dtype", "describe_input", "finish_signal", "restore_values"]

# The 12 dtypes the container can record (docs/format.md).
_CODED_DTYPES = frozenset(
    np.dtype(d)
    for d in (
        "uint8",
        "int8",
        "<u2",
        "<i2",
        "<u4",
        "<i4",
        "<u8",
        "<i8",
        "<f2",
        "<f4",
        "<f8",
        "bool",
    )
)


def coded_dtype(dtype):
    """The dtype a blob records for an input of ``dtype``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return np.dtype("float64")
    if dt.kind in "iufb" and dt.itemsize > 1:
        dt = dt.newbyteorder("<")
    if dt in _CODED_DTYPES:
        return dt
    if dt.kind in "iu":
        return np.dtype("<i8") if dt.kind == "i" else np.dtype("<u8")
    return np.dtype("<f8")


def describe_input(est, X, layout, arrays):
    """Per signal: (original shape, channels last, as given; recorded dtype)."""
    ndim = est.signal_ndim
    out = [None] * layout.n_signals
    for arr, (idx, spatial) in zip(arrays, layout.groups):
        channels = arr.shape[1]
        for i in idx:
            i = int(i)
            if layout.kind == "list":
                item = X[i]
                with_axis = np.ndim(item) == ndim + 1
                dtype = dtype_of(item)
            elif layout.kind == "batch":
                with_axis = np.ndim(X) == ndim + 2
                dtype = dtype_of(X)
            else:  # flat rows
                shape = est.signal_shape
                with_axis = shape is not None and len(shape) == ndim + 1
                dtype = dtype_of(X)
            shape = (
                (*spatial, channels) if with_axis or channels != 1 else tuple(spatial)
            )
            out[i] = (tuple(int(s) for s in shape), coded_dtype(dtype))
    return out


def finish_signal(x, b, restore, spec, converted=False):
    """Crop one decoded signal ``(C, *S')`` to its original size, channels last;
    with ``restore``, back in the recorded dtype's own scale and rank (the
    values already are if ``converted``)."""
    ndim = spec.signal_ndim
    spatial = b.signal_shape[:ndim]
    y = np.ascontiguousarray(np.moveaxis(crop(x[None], spatial)[0], 0, -1))
    if not restore:
        return y
    if len(b.signal_shape) == ndim:
        y = y[..., 0]
    return y if converted else restore_values(y, b, spec)


def restore_values(y, b, spec):
    """Float32 decoded values in the units and dtype the blob recorded."""
    return _to_dtype(from_domain(y, b.dtype, spec.sample_dtype), b.dtype)


def _to_dtype(y, dtype):
    """Round/clip float ``y`` into ``dtype`` (see ``decompress(restore=True)``)."""
    if dtype.kind == "b":
        return y >= 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # float32 holds every integer below 2**24 exactly, so rounding and
        # clipping there is exact for 8- and 16-bit samples at half the
        # memory; wider integers need float64.
        work = np.float32 if dtype.itemsize <= 2 else np.float64
        lo, hi = work(info.min), work(info.max)
        if int(hi) > info.max:  # 32/64-bit bounds are not exact in floats
            hi = np.nextafter(hi, work(0))
        y = np.array(y, dtype=work)  # a copy: rounded in place below
        np.rint(y, out=y)
        np.clip(y, lo, hi, out=y)
        return y.astype(dtype)
    if dtype.itemsize < 4:
        info = np.finfo(dtype)
        y = np.clip(y, float(info.min), float(info.max))
    return y.astype(dtype)
