"""A safe file format for fitted models: arrays and JSON in an uncompressed ``.npz``.

Nothing is unpickled on load, and nothing is built before the whole file has
been checked. The archive holds ``header.npy`` (UTF-8 JSON as uint8: magic,
format version, library version, class, parameters, the model spec and the
fitted attributes) and one ``tensor/<name>.npy`` per learned tensor of the spec
(format 2). Format 1 files (``state/<name>.npy``, every ``state_dict`` entry, no
spec) still load, as legacy models with periodization boundaries.

Members are stored, never compressed (``save`` writes them so), which keeps
``load``'s memory bounded by the file's size: a compressed member is refused,
and each ``.npy`` header is checked against the spec before its data is read.
The JSON header is at most :data:`MAX_HEADER_BYTES` (4 MiB), checked before it
is read or parsed: parsing costs up to about 25 times the text's size (JSON made
of empty lists), so at most about 100 MB; ``save`` refuses a model whose header
would be larger (a per-step loss curve of more than about 200,000 steps).
"""

import json
import math
import os
import struct
import zipfile

import numpy as np
import torch

from . import __version__
from ._signal import check_signal_shape
from ._spec import ModelSpec

# transformer.AUTO_LATENT_BITS; repeated here since the transformer imports us.
AUTO_LATENT_BITS = 8

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 2
_MAGIC = "sklearn-walloc-model"
#: Largest header JSON written or read (bytes): a loss curve of about 200,000
#: steps fits; parsing the worst 4 MiB of JSON peaks near 100 MB.
MAX_HEADER_BYTES = 2**22
_MAX_MEMBERS = 4096
_MAX_LIST = 10**7
_HEADER_KEYS = {
    1: {"magic", "format_version", "library_version", "class", "params", "fitted"},
    2: {
        "magic",
        "format_version",
        "library_version",
        "class",
        "params",
        "spec",
        "fitted",
    },
}
_SAVED = (
    "signal_shape_",
    "device_",
    "data_range_",
    "latent_scale_",
    "n_iter_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "n_features_in_",
    "n_iter_kept_",
    "validation_gain_",
)
# Format 1 also recorded these; format 2 reads them from the spec.
_V1_ONLY = ("n_channels_", "latent_bits_")
# Files written before n_iter_kept_ and validation_gain_ existed lack them.
_OPTIONAL = {"n_features_in_", "latent_bits_", "n_iter_kept_", "validation_gain_"}
# Errors that malformed input raises inside zipfile, numpy, json and torch;
# load turns them into one ValueError naming the file.
_MALFORMED = (
    ValueError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    OverflowError,
    RecursionError,
    NotImplementedError,
    RuntimeError,
    struct.error,
)


class _Malformed(ValueError):
    pass


def _jsonable_params(est):
    params = est.get_params(deep=False)
    if not isinstance(params.get("random_state"), (int, type(None))):
        # A RandomState instance is state, not configuration.
        params["random_state"] = None
    if params.get("signal_shape") is not None:
        params["signal_shape"] = [int(s) for s in params["signal_shape"]]
    return params


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save(est, path):
    """Write ``est`` (fitted) to ``path``; see the module docstring."""
    spec = est.spec_
    header = {
        "magic": _MAGIC,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "class": type(est).__name__,
        "params": _jsonable_params(est),
        "spec": spec.to_json(),
        "fitted": {k: _jsonable(getattr(est, k)) for k in _SAVED if hasattr(est, k)},
    }
    state = est.module_.state_dict()
    arrays = {
        f"tensor/{name}": state[name].detach().cpu().numpy()
        for name in spec.tensor_shapes()
    }
    text = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    if text.size > MAX_HEADER_BYTES:
        raise ValueError(
            f"the model's header would be {text.size} bytes of JSON, more than the "
            f"{MAX_HEADER_BYTES} that load reads (MAX_HEADER_BYTES), mostly its "
            f"loss_curve_ of {len(getattr(est, 'loss_curve_', []))} steps: thin it "
            "first, e.g. est.loss_curve_ = est.loss_curve_[::10]"
        )
    with open(path, "wb") as f:
        np.savez(f, header=text, **arrays)


def load(cls, path):
    """Read a model written by :func:`save` into a new ``cls`` instance.

    Raises
    ------
    ValueError
        If the file is not a valid model file, naming the file and the problem.
    """
    try:
        return _load(cls, path)
    except MemoryError:
        raise
    except _MALFORMED as e:
        problem = str(e) or type(e).__name__
        if isinstance(e, RecursionError):
            problem = "the header nests too deeply"
        raise ValueError(
            f"{os.fspath(path)!s} is not a sklearn-walloc model file that this "
            f"version can load: {problem}"
        ) from None


def _load(cls, path):
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        members = _check_members(zf, size)
        if "header.npy" not in members:
            raise _Malformed("no header.npy member")
        info = members["header.npy"]
        # The .npy preamble is at most a few hundred bytes; _read_npy checks
        # the declared length exactly before it reads the text.
        if info.file_size > MAX_HEADER_BYTES + 4096:
            raise _Malformed(
                f"header.npy is {info.file_size} bytes, more than the "
                f"{MAX_HEADER_BYTES} bytes of JSON a model header may hold"
            )
        text = _read_npy(zf, info, np.dtype("u1"), None)
        header = json.loads(text.tobytes().decode("utf-8"))
        version, params, spec, fitted = _check_header(cls, header)
        if version == 1:
            prefix, names = "state/", [*spec.tensor_shapes(), "wpt.analysis"]
            names.append("wpt.synthesis")
        else:
            prefix, names = "tensor/", list(spec.tensor_shapes())
        expected = {f"{prefix}{n}.npy" for n in names}
        unexpected = sorted(set(members) - expected - {"header.npy"})
        missing = sorted(expected - set(members))
        if unexpected or missing:
            raise _Malformed(
                f"the tensors do not match the model: unexpected {unexpected[:5]}, "
                f"missing {missing[:5]}"
            )
        shapes = spec.tensor_shapes()
        filters = _filter_buffers(spec) if version == 1 else {}
        tensors = {}
        for n in names:
            want = filters[n] if n in filters else None
            dtype = np.dtype("<f8") if want is not None else np.dtype("<f4")
            shape = tuple(want.shape) if want is not None else shapes[n]
            a = _read_npy(zf, members[f"{prefix}{n}.npy"], dtype, shape)
            if not np.isfinite(a).all():
                raise _Malformed(f"tensor {n} has non-finite values")
            if want is not None and not np.array_equal(a, want.numpy()):
                raise _Malformed(
                    f"tensor {n} is not the filter bank of wavelet {spec.wavelet!r}"
                )
            tensors[n] = a
    for n in ("data_scale", "latent_scale"):
        if not tensors[n] > 0:
            raise _Malformed(f"tensor {n} must be positive, got {float(tensors[n])}")
    est = cls()
    est.set_params(**params)
    if "enhancement_dim" in est.get_params():
        # A transformer's file carries its enhancement in the spec only.
        est.enhancement_dim = spec.enhancement_dim
    est._validate_params()
    module = spec.build()
    state = {n: torch.from_numpy(tensors[n]) for n in spec.tensor_shapes()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("wpt.") for k in missing):
        raise _Malformed(f"the tensors do not fit the model: {missing} {unexpected}")
    est.module_ = module.eval().requires_grad_(False)
    est.spec_ = spec
    est.n_channels_ = spec.in_channels
    est.latent_bits_ = spec.latent_bits
    for k, v in fitted.items():
        setattr(est, k, v)
    est._runtime = {}
    return est


def _check_members(zf, size):
    infos = zf.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise _Malformed(f"{len(infos)} members, more than a model file has")
    members = {}
    for info in infos:
        if info.filename in members:
            raise _Malformed(f"member {info.filename!r} appears twice")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _Malformed(
                f"member {info.filename!r} is compressed; model files store their "
                "members uncompressed"
            )
        if info.file_size != info.compress_size or info.file_size > size:
            raise _Malformed(
                f"member {info.filename!r} declares {info.file_size} bytes, more "
                f"than the file's {size}"
            )
        members[info.filename] = info
    return members


def _read_npy(zf, info, dtype, shape):
    """Read one ``.npy`` member, checking its header before reading its data.

    ``shape`` None accepts any 1D length up to ``MAX_HEADER_BYTES``.
    """
    name = info.filename
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Malformed(f"{name}: unsupported .npy version {version}")
        if got_dtype != dtype:
            raise _Malformed(f"{name}: dtype {got_dtype}, expected {dtype}")
        if shape is None:
            ok = len(got_shape) == 1 and got_shape[0] <= MAX_HEADER_BYTES
        else:
            ok = tuple(got_shape) == tuple(shape)
        if not ok:
            want = (
                f"a 1D text array of at most {MAX_HEADER_BYTES} bytes"
                if shape is None
                else f"{tuple(shape)}"
            )
            raise _Malformed(f"{name}: shape {got_shape}, expected {want}")
        if fortran and len(got_shape) > 1:
            raise _Malformed(f"{name}: Fortran order, which save never writes")
        nbytes = math.prod(got_shape) * dtype.itemsize
        data = f.read(nbytes + 1)
    if len(data) != nbytes:
        raise _Malformed(f"{name}: {len(data)} bytes of data, expected {nbytes}")
    return np.frombuffer(bytearray(data), dtype=dtype).reshape(got_shape)


def _filter_buffers(spec):
    from ._wavelets import WaveletPacket

    wpt = WaveletPacket(spec.levels, spec.wavelet, spec.signal_ndim, spec.boundary)
    return {f"wpt.{k}": v for k, v in wpt.state_dict().items()}


def _check_header(cls, header):
    """Validate the header; return (version, params, spec, fitted attributes)."""
    if not isinstance(header, dict) or header.get("magic") != _MAGIC:
        raise _Malformed("no sklearn-walloc header")
    version = header.get("format_version")
    if type(version) is not int or version not in _HEADER_KEYS:
        raise _Malformed(
            f"model format version {version!r}; this sklearn-walloc reads versions "
            f"1 and {FORMAT_VERSION}"
        )
    if set(header) != _HEADER_KEYS[version]:
        raise _Malformed(
            f"header keys {sorted(header)}, expected {sorted(_HEADER_KEYS[version])}"
        )
    if not isinstance(header["library_version"], str):
        raise _Malformed("library_version must be a str")
    # A WallocCodec can load a WallocTransformer's file (same model, plus coding).
    if header["class"] not in {c.__name__ for c in cls.__mro__}:
        raise _Malformed(f"it holds a {header['class']!r}, not a {cls.__name__}")
    params = header["params"]
    fitted = header["fitted"]
    for what, d in (("params", params), ("fitted", fitted)):
        if not isinstance(d, dict):
            raise _Malformed(f"{what} must be a JSON object")
    params = dict(params)
    if params.get("signal_shape") is not None:
        if not isinstance(params["signal_shape"], list):
            raise _Malformed("params: signal_shape must be a list or null")
        params["signal_shape"] = tuple(params["signal_shape"])
    if version == 1:
        spec = _legacy_spec(params, fitted)
    else:
        spec = ModelSpec.from_json(header["spec"])
        extra = sorted(set(fitted) & set(_V1_ONLY))
        if extra:
            raise _Malformed(f"fitted: {extra} belong to the spec in format 2")
    _check_params(params, spec)
    return version, params, spec, _check_fitted(fitted, spec, version)


def _legacy_spec(params, fitted):
    """Format 1 had no spec: it follows from the parameters and n_channels_."""
    latent_bits = fitted.get("latent_bits_", params.get("latent_bits"))
    fields = {
        "in_channels": fitted.get("n_channels_"),
        "latent_dim": params.get("latent_dim"),
        "levels": params.get("levels"),
        "wavelet": params.get("wavelet"),
        "signal_ndim": params.get("signal_ndim"),
        "latent_bits": latent_bits,
        "decoder_width": params.get("decoder_width"),
        "decoder_depth": params.get("decoder_depth"),
    }
    return ModelSpec(**fields, boundary="periodization", sample_dtype=None)


def _check_params(params, spec):
    for k in ("latent_dim", "levels", "wavelet", "signal_ndim"):
        if k in params and params[k] != getattr(spec, k):
            raise _Malformed(f"params: {k}={params[k]!r} but the spec has {k}")
    for k in ("decoder_width", "decoder_depth"):
        if k in params and params[k] != getattr(spec, k):
            raise _Malformed(f"params: {k}={params[k]!r} but the spec differs")
    bits = params.get("latent_bits", "auto")
    # "auto" meant 16 bits for 1D signals before the codec had its gain.
    autos = (8,) if spec.signal_ndim == 2 else (8, 16)
    if bits != spec.latent_bits and not (bits == "auto" and spec.latent_bits in autos):
        raise _Malformed(
            f"params: latent_bits={bits!r}, but the model has {spec.latent_bits}"
        )
    if bits == "auto" and spec.latent_bits != AUTO_LATENT_BITS:
        # Keep the model's parameters true to it: a refit makes the same model.
        params["latent_bits"] = spec.latent_bits
    check_signal_shape(params.get("signal_shape"), spec.signal_ndim)


def _is_int(v, lo=0, hi=2**62):
    return type(v) is int and lo <= v <= hi


def _is_real(v):
    return type(v) in (int, float) and math.isfinite(v)


def _check_fitted(fitted, spec, version):
    allowed = set(_SAVED) | (set(_V1_ONLY) if version == 1 else set())
    unknown = sorted(set(fitted) - allowed)
    missing = sorted(allowed - _OPTIONAL - set(fitted))
    if unknown or missing:
        raise _Malformed(
            f"fitted attributes: unknown {unknown[:5]}, missing {missing[:5]}"
        )
    if version == 1 and fitted["n_channels_"] != spec.in_channels:
        raise _Malformed("fitted: n_channels_ does not match the spec")
    if version == 1 and fitted.get("latent_bits_", spec.latent_bits) != (
        spec.latent_bits
    ):
        raise _Malformed("fitted: latent_bits_ does not match the spec")
    out = {}
    shape = fitted["signal_shape_"]
    if shape is not None:
        if (
            not isinstance(shape, list)
            or len(shape) != spec.signal_ndim + 1
            or not all(_is_int(s, 1, 2**40) for s in shape)
            or shape[-1] != spec.in_channels
        ):
            raise _Malformed(
                f"fitted: signal_shape_ must be null or {spec.signal_ndim + 1} "
                f"positive ints ending with the {spec.in_channels} channel(s), got "
                f"{_short(shape)}"
            )
        shape = tuple(shape)
    out["signal_shape_"] = shape
    if "n_features_in_" in fitted:
        n = fitted["n_features_in_"]
        if shape is None or not _is_int(n, 1) or n != math.prod(shape):
            raise _Malformed(
                f"fitted: n_features_in_={_short(n)} does not match signal_shape_="
                f"{_short(shape)}"
            )
        out["n_features_in_"] = n
    device = fitted["device_"]
    if not isinstance(device, str) or len(device) > 64:
        raise _Malformed("fitted: device_ must be a short str")
    out["device_"] = device
    for k, ok in (
        ("n_iter_kept_", _is_int),
        ("validation_gain_", lambda v: v is None or _is_real(v)),
    ):
        if k in fitted:
            if not ok(fitted[k]):
                raise _Malformed(f"fitted: invalid {k}: {_short(fitted[k])}")
            out[k] = fitted[k]
    checks = {
        "data_range_": lambda v: _is_real(v) and v > 0,
        "latent_scale_": lambda v: _is_real(v) and v > 0,
        "n_iter_": _is_int,
        "best_validation_score_": lambda v: v is None or _is_real(v),
        "loss_curve_": _is_real_list,
        "validation_scores_": _is_real_list,
    }
    for k, ok in checks.items():
        if not ok(fitted[k]):
            raise _Malformed(f"fitted: invalid {k}: {_short(fitted[k])}")
        floats = ("data_range_", "latent_scale_")
        out[k] = float(fitted[k]) if k in floats else fitted[k]
    return out


def _is_real_list(v):
    return isinstance(v, list) and len(v) <= _MAX_LIST and all(map(_is_real, v))


def _short(v):
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."
