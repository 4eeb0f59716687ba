"""Convert the reference implementation's checkpoints (walloc 1.2.1).

The paper's models (``RGB_16x``, ``stereo_5x`` on the authors' model hub) are
``Codec2D`` and ``Codec1D`` objects of the ``walloc`` package, saved as a
``.pth`` holding ``{"model_state_dict": ...}`` beside a ``.json`` config
(``channels, J, Ne, Nd, latent_dim, latent_bits, lightweight_encode`` and, for
``Codec1D``, ``post_filter``). :func:`from_reference` reads both (tensors only:
``torch.load(weights_only=True)``) into an estimator of this library:

- the wavelet packets are bior4.4 with periodization borders, as the
  reference's ``pytorch_wavelets`` transforms; the reference orders the bands
  level by level (``(c f)`` with ``f`` in LL, LH, HL, HH, or L, H), this
  library by its own rule: the band permutation is found once by matching this
  library's packets against that ordering (computed with PyWavelets) on a
  random probe, and applied to the encoder's columns and to the rows of the
  decoder's last layer;
- inputs are read as the reference reads them: a uint8 photo as ``x / 255 -
  0.5`` (the model's sample domain is uint8, with ``data_offset=127.5`` and
  ``data_scale=255``), audio at peak 0.5 for full scale (int16 domain,
  ``data_scale=65536``: int16 samples, or floats in [-1, 1]);
- the decoder is the reference's (:mod:`sklearn_walloc._reference_net`),
  weight normalisation folded, with the 1D encoder's padded end latents, the
  post-filter and the output clamp;
- signals whose sides are not multiples of ``2**J`` are padded as the
  reference's ``pad`` helper pads them (reflection, centred: ``padding=
  "centred"`` in the spec) and cropped as its ``crop`` helper crops.

Refused, with a ``ValueError`` naming them: the non-linear encoder
(``lightweight_encode=False``), ``LinearCodec2D`` and ``ResidualCodec2D``
checkpoints, unknown or missing tensors, non-finite weights, any pickle that
is more than tensors.
"""

import json
import os
from collections.abc import Mapping

import numpy as np
import pywt
import torch

from ._spec import ModelSpec
from ._wavelets import WaveletPacket

__all__ = ["from_reference"]

# The keys the reference's classes take (and post_filter for Codec1D); others
# (training settings the authors' configs may record beside them, Ne) are
# ignored, as its README ignores them.
_CONFIG_KEYS = (
    "channels",
    "J",
    "Nd",
    "latent_dim",
    "latent_bits",
    "lightweight_encode",
)
# The reference's input mapping, per signal kind: (sample dtype, data_offset,
# data_scale) with x_reference = (x - data_offset) / data_scale.
_DOMAINS = {2: ("uint8", 127.5, 255.0), 1: ("int16", 0.0, 65536.0)}
# diffusers' attention before its rename (old checkpoints), to the names now.
_DEPRECATED = {
    ".query.": ".to_q.",
    ".key.": ".to_k.",
    ".value.": ".to_v.",
    ".proj_attn.": ".to_out.0.",
}
_STRUCTURAL = ("latent_dim", "levels", "wavelet", "signal_ndim", "latent_bits")


def from_reference(cls, checkpoint, config, **params):
    """Load a walloc 1.2.1 ``Codec2D`` or ``Codec1D`` checkpoint.

    Parameters
    ----------
    checkpoint : str, path-like or dict
        The ``.pth`` file the reference saves (``{"model_state_dict": ...}``),
        or that dict, or the state dict itself. Files are read with
        ``torch.load(weights_only=True)``: tensors only, never code.
    config : str, path-like, dict or namespace
        The ``.json`` config, or its contents: ``channels, J, Nd, latent_dim,
        latent_bits, lightweight_encode`` and for a ``Codec1D``
        ``post_filter``; ``Ne`` (the non-linear encoder's width) and any
        other key are ignored.
    **params
        Other parameters of the estimator (``device``, ``verbose``,
        ``adaptive_gain``, ...). The structure comes from the checkpoint.

    Returns
    -------
    estimator : WallocTransformer or WallocCodec
        Fitted, of the class it is called on, with ``boundary="periodization"``
        and ``spec_.decoder_kind`` naming the reference's decoder. Photos
        (uint8, or floats in [0, 1]) and audio (int16, or floats in [-1, 1])
        go in as the reference reads them.

    Raises
    ------
    ValueError
        If the file holds more than tensors, the config misses a key or has a
        wrong value, the checkpoint is of an unsupported variant (non-linear
        encoder, ``LinearCodec2D``, ``ResidualCodec2D``), a tensor is
        missing, unknown, misshapen or not finite.

    Notes
    -----
    Latents equal the reference's up to rounding ties (a companded value
    within float32 rounding of a half-integer; its ``Codec1D`` also pads one
    constant latent at each end, which is left out here and restored before
    the decoder). Reconstructions equal its clamped output to float
    tolerance. At any size: the reference's models take only sides that are
    multiples of ``2**J``, and its users pad others with its ``pad`` helper
    (reflection to the next multiple, ``(P - S) // 2`` samples before and the
    rest after) and cut the decoded output back with its ``crop``; the
    converted model does the same (``spec_.padding == "centred"``), in
    ``transform`` (latents of the padded signal), ``compress`` and
    ``decompress`` (the centred crop), ``inverse_transform`` (the padded
    signal, or the crop for flat rows of a known ``signal_shape``). The helper
    reads images; audio is padded by the same rule along its one axis.
    Outputs decoded in tiles (above ``2**23`` values) differ from the
    reference's, padded or not (``docs/user_guide/reference.md``).

    Examples
    --------
    >>> from sklearn_walloc import WallocCodec
    >>> codec = WallocCodec.from_reference(
    ...     "RGB_16x.pth", "RGB_16x.json"
    ... )  # doctest: +SKIP
    >>> blobs = codec.compress(photos)  # doctest: +SKIP
    """
    cfg = _read_config(config)
    state = _read_checkpoint(checkpoint)
    spec = _spec(cfg, state)
    module = spec.build()
    tensors = _convert(state, spec, module)
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    if unexpected or any(not k.startswith("wpt.") for k in missing):
        raise ValueError(f"checkpoint: tensors do not fit: {missing} {unexpected}")
    _, offset, scale = _DOMAINS[spec.signal_ndim]
    module.data_offset.fill_(offset)
    module.data_scale.fill_(scale)
    clash = {
        k: params[k]
        for k in (*_STRUCTURAL, "decoder_width", "decoder_depth")
        if k in params
    }
    if clash:
        raise ValueError(
            f"from_reference: {sorted(clash)} come from the checkpoint's config; "
            "pass only other parameters"
        )
    est = cls(
        latent_dim=spec.latent_dim,
        levels=spec.levels,
        wavelet=spec.wavelet,
        signal_ndim=spec.signal_ndim,
        latent_bits=spec.latent_bits,
        decoder_width=spec.decoder_width,
        decoder_depth=0,
        boundary="periodization",
        **params,
    )
    est._validate_params()
    est.module_ = module.eval().requires_grad_(False)
    est.spec_ = spec
    info = np.iinfo(spec.sample_dtype)
    fitted = {
        "n_channels_": spec.in_channels,
        "latent_bits_": spec.latent_bits,
        "signal_shape_": None,
        "device_": "cpu",
        "data_range_": float(info.max) - float(info.min),
        "latent_scale_": 1.0,
        "n_iter_": 0,
        "loss_curve_": [],
        "validation_scores_": [],
        "best_validation_score_": None,
        "n_iter_kept_": 0,
        "validation_gain_": None,
        "_runtime": {},
    }
    for k, v in fitted.items():
        setattr(est, k, v)
    return est


def _read_config(config):
    if isinstance(config, (str, os.PathLike)):
        with open(config, encoding="utf-8") as f:
            config = json.load(f)
    elif not isinstance(config, Mapping) and hasattr(config, "__dict__"):
        config = vars(config)  # the SimpleNamespace the reference's README uses
    if not isinstance(config, Mapping):
        raise ValueError(
            f"config must be a path to the reference's .json, a dict or a "
            f"namespace, got {type(config).__name__}"
        )
    if "num_stages" in config:
        raise ValueError(
            "config: ResidualCodec2D (num_stages) is not supported; only "
            "Codec2D and Codec1D checkpoints convert"
        )
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing == ["Nd", "lightweight_encode"]:
        raise ValueError(
            "config: LinearCodec2D (no Nd, no lightweight_encode) is not "
            "supported; only Codec2D and Codec1D checkpoints convert"
        )
    if missing:
        raise ValueError(f"config: missing keys {missing} (walloc 1.2.1 config)")
    for k in ("channels", "J", "Nd", "latent_dim", "latent_bits"):
        if type(config[k]) is not int or config[k] < 1:
            raise ValueError(f"config: {k} must be a positive int, got {config[k]!r}")
    for k in ("lightweight_encode", "post_filter"):
        if k in config and type(config[k]) is not bool:
            raise ValueError(f"config: {k} must be true or false, got {config[k]!r}")
    if not config["lightweight_encode"]:
        raise ValueError(
            "config: lightweight_encode=False (the reference's non-linear "
            "encoder, diffusers' Encoder or OobleckEncoder) is not supported; "
            "only the linear 1x1 encoder converts"
        )
    return dict(config)


def _read_checkpoint(checkpoint):
    if isinstance(checkpoint, (str, os.PathLike)):
        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except OSError:  # a missing or unreadable file says so itself
            raise
        except Exception as e:  # the unpickler refusing anything but tensors
            raise ValueError(
                f"checkpoint {os.fspath(checkpoint)!r} is not a tensors-only "
                f"PyTorch file (torch.load(weights_only=True) refused it: {e})"
            ) from None
    if isinstance(checkpoint, Mapping) and "model_state_dict" in checkpoint:
        checkpoint = checkpoint["model_state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            "checkpoint must hold model_state_dict (or be that dict), got "
            f"{type(checkpoint).__name__}"
        )
    for k, v in checkpoint.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ValueError(f"checkpoint: {k!r} is not a named tensor")
        if not v.is_floating_point() or not bool(torch.isfinite(v).all()):
            raise ValueError(f"checkpoint: tensor {k} is not finite floating point")
    if any(k.startswith("encoder.0.") and k.count(".") > 2 for k in checkpoint):
        raise ValueError(
            "checkpoint: a non-linear encoder (lightweight_encode=False) is not "
            "supported; only the linear 1x1 encoder converts"
        )
    return dict(checkpoint)


def _spec(cfg, state):
    weight = state.get("encoder.0.weight")
    if weight is None or weight.dim() not in (3, 4):
        raise ValueError("checkpoint: no 1x1 encoder (encoder.0.weight)")
    ndim = weight.dim() - 2
    post = cfg.get("post_filter", False)
    if ndim == 2 and post:
        raise ValueError("config: post_filter is a Codec1D option; this is a Codec2D")
    kind = (
        "autoencoder-kl"
        if ndim == 2
        else ("oobleck+post-filter" if post else "oobleck")
    )
    try:
        return ModelSpec(
            in_channels=cfg["channels"],
            latent_dim=cfg["latent_dim"],
            levels=cfg["J"],
            wavelet="bior4.4",
            signal_ndim=ndim,
            latent_bits=cfg["latent_bits"],
            decoder_width=cfg["Nd"],
            decoder_depth=0,
            boundary="periodization",
            sample_dtype=_DOMAINS[ndim][0],
            decoder_kind=kind,
            padding="centred",
        )
    except ValueError as e:
        raise ValueError(f"config: {e}") from None


def _our_name(name):
    """The library's name of a reference tensor, or None for its fixed
    wavelet filters."""
    if name.startswith(("wt.", "iwt.")):
        return None
    if name.startswith("encoder.0."):
        return "encoder." + name[len("encoder.0.") :]
    if name.startswith("decoder.1."):
        name = "decoder." + name[len("decoder.1.") :]
        for old, new in _DEPRECATED.items():
            name = name.replace(old, new)
        return name
    return name


def _convert(state, spec, module):
    """The checkpoint's tensors under the module's names, weight norm folded,
    bands in this library's order."""
    want = spec.tensor_shapes()
    out, pending = {}, {}
    for name, t in state.items():
        ours = _our_name(name)
        if ours is None:
            continue
        for g, v in (
            ("weight_g", "weight_v"),
            ("parametrizations.weight.original0", "parametrizations.weight.original1"),
        ):
            if ours.endswith(g) or ours.endswith(v):
                base = ours[: ours.rindex(g if ours.endswith(g) else v)]
                pending.setdefault(base, {})["g" if ours.endswith(g) else "v"] = t
                break
        else:
            out[ours] = t
    for base, gv in pending.items():
        if set(gv) != {"g", "v"}:
            raise ValueError(f"checkpoint: weight norm of {base} lacks g or v")
        # What torch's weight_norm computes at each call, with dim=0.
        out[base + "weight"] = torch._weight_norm(gv["v"], gv["g"], 0)
    for k in ("latent_scale", "data_offset", "data_scale"):
        out[k] = getattr(module, k).clone()
    unknown = sorted(set(out) - set(want))
    missing = sorted(set(want) - set(out))
    if unknown or missing:
        raise ValueError(
            f"checkpoint does not match a walloc 1.2.1 {_class(spec)} with this "
            f"config: unknown tensors {unknown[:5]}, missing {missing[:5]}"
        )
    for k, shape in want.items():
        if tuple(out[k].shape) != tuple(shape):
            raise ValueError(
                f"checkpoint: tensor {k} has shape {tuple(out[k].shape)}, the "
                f"config needs {tuple(shape)}"
            )
        out[k] = out[k].to(torch.float32)
    perm = torch.as_tensor(
        band_permutation(spec.in_channels, spec.levels, spec.signal_ndim)
    )
    out["encoder.weight"] = out["encoder.weight"][:, perm]
    last = "decoder.conv_out" if spec.signal_ndim == 2 else "decoder.conv2"
    for k in (f"{last}.weight", f"{last}.bias"):
        if k in out:
            out[k] = out[k][perm]
    return out


def _class(spec):
    return "Codec2D" if spec.signal_ndim == 2 else "Codec1D"


def reference_bands(x, levels, signal_ndim):
    """The reference's wavelet packets of ``x`` ``(N, C, *S)`` (float64,
    PyWavelets): ``levels`` times one bior4.4 level with periodization, the
    sub-bands of each channel next to each other, ``(c f)``."""
    for _ in range(levels):
        if signal_ndim == 2:
            a, (h, v, d) = pywt.dwt2(x, "bior4.4", mode="periodization", axes=(-2, -1))
            parts = [a, h, v, d]
        else:
            parts = list(pywt.dwt(x, "bior4.4", mode="periodization", axis=-1))
        x = np.stack(parts, axis=2).reshape(len(x), -1, *parts[0].shape[2:])
    return x


def band_permutation(in_channels, levels, signal_ndim):
    """``perm`` with ``ours[:, k] == reference[:, perm[k]]`` for the packets of
    any signal: matched on a random probe, each band to the one reference band
    it equals (to float64 rounding); ``ValueError`` if any does not."""
    s = 2**levels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, in_channels, *(4 * s,) * signal_ndim))
    ref = reference_bands(x, levels, signal_ndim)[0].reshape(
        in_channels * s**signal_ndim, -1
    )
    wpt = WaveletPacket(levels, "bior4.4", signal_ndim, "periodization").double()
    with torch.no_grad():
        ours = wpt(torch.from_numpy(x)).numpy()[0].reshape(len(ref), -1)
    # Pair the bands by a random projection, then check every pair whole.
    direction = rng.standard_normal(ours.shape[1])
    perm = np.empty(len(ref), dtype=np.int64)
    perm[np.argsort(ours @ direction)] = np.argsort(ref @ direction)
    error = np.abs(ours - ref[perm]).max()
    if error > 1e-9 * np.abs(ref).max():
        raise ValueError(
            "this library's wavelet packets do not match the reference's bands "
            "(bior4.4, periodization); please report this"
        )
    return perm
