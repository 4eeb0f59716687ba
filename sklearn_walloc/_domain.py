"""The sample domain: which units a model's numbers are in, and one rule to convert.

A model records the dtype of the data it was fitted on (``spec_.sample_dtype``,
the *domain* D). Integer samples are read at full scale, as scikit-image and
soundfile read them:

- *full-scale integer* dtypes: uint8, uint16, uint32 (full scale ``FS = 2**bits
  - 1``, as scikit-image's ``img_as_float``) and int8, int16, int32 (``FS =
  2**(bits-1)``, as soundfile); every other dtype (float16/32/64, int64, uint64,
  bool) is a *value* dtype: numbers as they are.
- An input of dtype E is converted into D (and everything inside the model is
  float32 in D's units): E == D, or both value dtypes: as is; both full-scale
  integers: ``x * FS(D) / FS(E)``, refused if D is unsigned and ``x`` has
  negative samples (a signed E into an unsigned D); D full-scale and E
  floating: ``x * FS(D)``, refused outside ``[0, 1]`` for an unsigned D and
  outside ``[-1, 1]`` for a signed one, with a tolerance of ``1e-6`` (of full
  scale) at both ends for float rounding (``x / 255`` in float32 is off by at
  most ``6e-8``); D full-scale and E int64/uint64/bool: as is, refused outside
  D's integer range; D a value dtype and E full-scale: refused. Nothing
  outside the domain's range is clipped silently.
- ``decompress(restore=True)`` applies the inverse rule, then rounds and clips
  into E. Legacy models (D is None) never convert.
"""

import numpy as np

from ._spec import SAMPLE_DTYPES

__all__ = [
    "check_float32_range",
    "data_range",
    "dtype_of",
    "from_domain",
    "full_scale",
    "sample_dtype_name",
    "to_domain",
]

_FULL_SCALE = {
    "uint8": 2**8 - 1,
    "uint16": 2**16 - 1,
    "uint32": 2**32 - 1,
    "int8": 2**7,
    "int16": 2**15,
    "int32": 2**31,
}
# Float rounding at the ends of the full-scale range (1.0 or 0.0 computed in
# float32, say), in units of full scale: far below half a level of uint16.
_TOLERANCE = 1e-6
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def full_scale(name):
    """Full scale of a full-scale integer dtype name, else None."""
    return _FULL_SCALE.get(name)


def sample_dtype_name(dtype):
    """The domain name of a dtype: one of ``SAMPLE_DTYPES``.

    Extended floats read as float64; anything non-numeric (object, str) reads
    as float64 too and is refused later by the input checks if it is no number.
    """
    dt = np.dtype(dtype)
    name = dt.newbyteorder("=").name if dt.kind in "iufb" else ""
    if name in SAMPLE_DTYPES:
        return name
    return "float64"


def dtype_of(x):
    """dtype of an array-like without copying arrays (pandas frames included)."""
    dtype = getattr(x, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype
    dtypes = getattr(x, "dtypes", None)
    if dtypes is not None:
        try:
            return np.result_type(*[np.dtype(d) for d in dtypes])
        except TypeError:
            return np.dtype("float64")
    try:
        return np.asarray(x).dtype
    except (TypeError, ValueError):
        return np.dtype("float64")


def check_float32_range(x, name):
    """Refuse finite float64 values that float32, the model's dtype, cannot hold."""
    if x.dtype == np.float64 and x.size and np.abs(x).max() > _FLOAT32_MAX:
        raise ValueError(
            f"{name} has values of magnitude up to {np.abs(x).max():.3g}, beyond "
            f"float32's range ({_FLOAT32_MAX:.3g}), in which the model computes."
        )


def _range(x):
    return float(np.min(x)), float(np.max(x))


def _fmt(v):
    return f"{v:.6g}"


def to_domain(x, source, domain, name="X"):
    """Convert validated float samples ``x`` of source dtype ``source`` into D.

    Parameters
    ----------
    x : ndarray of float32 or float64
        The samples, already validated (finite).
    source : numpy dtype
        dtype of the input as given.
    domain : str or None
        The model's ``sample_dtype``; None never converts.
    name : str
        How to name the input in errors (``"X"``, ``"X[3]"``).

    Returns
    -------
    x : ndarray
        ``x`` itself or a new array in D's units.
    """
    src = sample_dtype_name(source)
    if domain is None or src == domain:
        return x
    fs_d, fs_e = full_scale(domain), full_scale(src)
    if fs_d is None and fs_e is None:
        return x
    if fs_d is None:
        raise ValueError(
            f"{name} is {src}, but this model was fitted on {domain} samples, "
            f"whose numbers are used as they are, while {src} samples are read at "
            f"full scale: pass {name}.astype({domain!r}) to use the numbers as "
            "they are."
        )
    unsigned = domain.startswith("u")
    if x.size == 0:
        return x
    if fs_e is not None:
        if unsigned and not src.startswith("u") and float(np.min(x)) < 0:
            lo, hi = _range(x)
            raise ValueError(
                f"{name} is {src} with values in [{_fmt(lo)}, {_fmt(hi)}]; this "
                f"model was fitted on {domain} samples, which are never negative "
                f"(both are read at full scale, {domain} in [0, 1]): pass samples "
                "of at least 0."
            )
        return x * (fs_d / fs_e)
    lo, hi = _range(x)
    if np.dtype(src).kind == "f":
        low = 0.0 if unsigned else -1.0
        if lo < low - _TOLERANCE or hi > 1 + _TOLERANCE:
            span = "[0, 1]" if unsigned else "[-1, 1]"
            how = (
                "as scikit-image's img_as_float"
                if unsigned
                else "as soundfile reads them"
            )
            raise ValueError(
                f"{name} is {src} with values in [{_fmt(lo)}, {_fmt(hi)}]; this "
                f"model was fitted on {domain} samples, and floats are read at full "
                f"scale ({span} for {domain}, {how}): pass {domain}, or floats in "
                f"{span}."
            )
        return x * fs_d
    info = np.iinfo(domain)
    if lo < info.min or hi > info.max:
        raise ValueError(
            f"{name} is {src} with values in [{_fmt(lo)}, {_fmt(hi)}], outside the "
            f"range [{info.min}, {info.max}] of {domain}, the samples this model "
            "was fitted on."
        )
    return x


def from_domain(y, target, domain):
    """The inverse of :func:`to_domain`: float values in D's units to values in
    the units of ``target`` (not yet rounded or cast).

    Floats from a full-scale domain come back at full scale, clipped to
    ``[0, 1]`` (unsigned D) or ``[-1, 1]`` (signed D).
    """
    dst = sample_dtype_name(target)
    if domain is None or dst == domain:
        return y
    fs_d, fs_e = full_scale(domain), full_scale(dst)
    if fs_d is None:
        return y
    if fs_e is not None:
        return y.astype(np.float64) * (fs_e / fs_d)
    if np.dtype(dst).kind == "f":
        lo = 0.0 if domain.startswith("u") else -1.0
        return np.clip(y.astype(np.float64) / fs_d, lo, 1.0)
    return y


def data_range(domain, arrays):
    """Peak-to-peak range for PSNR in D's units: the dtype's range for full-scale
    integers, else the observed range of the (converted) data."""
    if full_scale(domain) is not None:
        info = np.iinfo(domain)
        return float(info.max) - float(info.min)
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    return hi - lo if hi > lo else 1.0
