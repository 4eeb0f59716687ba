"""One description of a WaLLoC model: what it is, validated before anything exists.

:class:`ModelSpec` is the single place that lists the structural parameters of a
fitted model. It validates them (exact types, ranges, a bound on the parameter
count computed from the formula, a bound on the working memory that inference
needs for the model's fixed operators, :meth:`ModelSpec.inference_bytes`),
builds the torch module, names the shapes of the learned tensors without
building it (so a model file can be checked before any allocation), serialises
to JSON and fingerprints a model for the blob container.
"""

import dataclasses
import functools
import hashlib
import json
import math
from collections import OrderedDict

import numpy as np

from ._wavelets import BOUNDARIES, WaveletPacket, default_boundary, resolve_wavelet

__all__ = [
    "FINGERPRINT_TAG",
    "LEGACY_FINGERPRINT_TAG",
    "MAX_INFERENCE_BYTES",
    "MAX_PARAMETERS",
    "SAMPLE_DTYPES",
    "ModelSpec",
    "boundary_for",
    "legacy_fingerprint",
]

#: Largest number of learned scalars a model may have (256 MiB of float32); a
#: model file declaring more is refused before anything is allocated.
MAX_PARAMETERS = 2**26

#: Largest number of wavelet packet bands, ``in_channels * 2**(levels*ndim)``.
MAX_BANDS = 2**16

#: Largest working memory (bytes) that inference may need for a model's fixed
#: operators, beyond what grows with the signals: the composite filters, the
#: exact edge rows of the packet analysis and synthesis, the fused kernels, the
#: end-of-axis least squares and the codec's gain search, as estimated by
#: :meth:`ModelSpec.inference_bytes` before anything is built. It grows with
#: ``4**levels`` and the wavelet's length, and with ``latent_dim`` times the
#: band count: with bior4.4, 1D models pass up to ``levels=6`` (mono-5x: 0.77
#: GiB estimated, 0.53 GiB measured; ``levels=7`` measured 2 GB), RGB models
#: up to ``levels=4`` with ``latent_dim`` 33 there, 140 at ``levels=3``.
MAX_INFERENCE_BYTES = 2**30

#: The sample dtypes a model can be fitted in (see ``_domain``); also the dtypes
#: the blob container can record.
SAMPLE_DTYPES = (
    "uint8",
    "uint16",
    "uint32",
    "int8",
    "int16",
    "int32",
    "float16",
    "float32",
    "float64",
    "int64",
    "uint64",
    "bool",
)

FINGERPRINT_TAG = "sklearn-walloc/fingerprint/v2"
# Part of the blob format of models with periodization boundaries: changing it
# (or legacy_fingerprint) makes every blob they ever wrote undecodable.
LEGACY_FINGERPRINT_TAG = "sklearn-walloc/fingerprint/v1"
_LEGACY_FIELDS = (
    "latent_dim",
    "levels",
    "wavelet",
    "signal_ndim",
    "latent_bits",
    "decoder_width",
    "decoder_depth",
)

#: ``decoder_kind`` values of the reference implementation's decoders (see
#: ``_reference_net``); "walloc" is this library's.
DECODER_KINDS = ("autoencoder-kl", "oobleck", "oobleck+post-filter")

#: ``padding`` values: "end", this library's (symmetric extension after the
#: end of each axis); "centred", the reference implementation's ``pad`` helper
#: (reflection on both sides, the odd sample after), for its converted models.
PADDINGS = ("end", "centred")

# Fields that earlier specs did not have, with the value they meant: left out
# of the JSON at that value.
_OPTIONAL_FIELDS = {"decoder_kind": "walloc", "padding": "end", "enhancement_dim": 0}

_INT_RANGES = {
    "in_channels": (1, MAX_BANDS),
    "latent_dim": (1, MAX_BANDS),
    "levels": (1, 10),
    "signal_ndim": (1, 2),
    "latent_bits": (2, 16),
    "decoder_width": (0, 4096),
    "decoder_depth": (0, 64),
    "enhancement_dim": (0, MAX_BANDS),
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The structure of a WaLLoC model: everything but the learned values.

    Parameters
    ----------
    in_channels : int
        Channels of the signals (C).
    latent_dim : int
        Channels of the latent grid, at most ``n_bands``.
    levels : int
        Wavelet packet levels, 1 to 10.
    wavelet : str
        A discrete orthogonal or biorthogonal PyWavelets wavelet name.
    signal_ndim : {1, 2}
        Spatial axes of a signal.
    latent_bits : int
        Bits per latent, 2 to 16.
    decoder_width, decoder_depth : int
        Residual decoder path (0: linear decoder only).
    boundary : {"symmetric", "periodization"}
        Boundary rule of the wavelet packet transform; "periodization" marks
        models of model format 1 and older pickles.
    sample_dtype : str or None
        Name of the dtype the model was fitted in (its sample domain, see
        ``docs/transformer.md``); None for legacy models, which never convert.
    decoder_kind : str, default="walloc"
        "walloc": this library's decoder (``decoder_width``,
        ``decoder_depth``); or a decoder of the reference implementation,
        converted by ``from_reference`` (:data:`DECODER_KINDS`; then
        ``decoder_width`` is its ``Nd`` and ``decoder_depth`` 0).
    padding : {"end", "centred"}, default="end"
        How a signal whose sides are not multiples of ``2**levels`` is padded
        to one before encoding, and where its decoded output is cropped:
        "end", by symmetric extension after the end of each axis (this
        library's); "centred", by reflection (the edge sample not repeated)
        on both sides, ``(P - S) // 2`` before and the rest after, as the
        reference implementation's ``pad`` and ``crop`` helpers. Only models
        with a reference decoder (``from_reference``) are "centred".
    enhancement_dim : int, default=0
        Enhancement channels of a codec (``WallocCodec(enhancement_dim=...)``,
        :mod:`~sklearn_walloc._enhancement`): linear latent channels beyond
        ``latent_dim`` that rate control codes at high rates; at most
        ``n_bands - latent_dim``, 2D models with this library's decoder only.

    Raises
    ------
    ValueError
        On construction, if any field has the wrong type or range, naming it.

    Examples
    --------
    >>> from sklearn_walloc._spec import ModelSpec
    >>> spec = ModelSpec(3, 12, 3, "bior4.4", 2, 8, 0, 0, "symmetric", "uint8")
    >>> spec.n_bands
    192
    >>> list(spec.tensor_shapes().items())[3]
    ('encoder.weight', (12, 192, 1, 1))
    >>> ModelSpec.from_json(spec.to_json()) == spec
    True
    """

    in_channels: int
    latent_dim: int
    levels: int
    wavelet: str
    signal_ndim: int
    latent_bits: int
    decoder_width: int
    decoder_depth: int
    boundary: str = "symmetric"
    sample_dtype: str | None = None
    decoder_kind: str = "walloc"
    padding: str = "end"
    enhancement_dim: int = 0

    def __post_init__(self):
        self.validate()

    @property
    def n_bands(self):
        """Wavelet packet bands of all channels, ``C * 2**(levels*signal_ndim)``."""
        return self.in_channels * 2 ** (self.levels * self.signal_ndim)

    @property
    def has_refine(self):
        """Whether the decoder has its residual path."""
        return self.decoder_width > 0 and self.decoder_depth > 0

    def validate(self):
        """Check every field; raise ``ValueError`` naming the first bad one."""
        for name, (lo, hi) in _INT_RANGES.items():
            value = getattr(self, name)
            if type(value) is not int:
                raise ValueError(
                    f"model spec: {name} must be an int, got {type(value).__name__} "
                    f"{value!r}"
                )
            if not lo <= value <= hi:
                raise ValueError(
                    f"model spec: {name} must be in [{lo}, {hi}], got {value}"
                )
        for name in ("wavelet", "boundary"):
            if type(getattr(self, name)) is not str:
                raise ValueError(
                    f"model spec: {name} must be a str, got "
                    f"{type(getattr(self, name)).__name__}"
                )
        n_bands = self.in_channels * 2 ** (self.levels * self.signal_ndim)
        if n_bands > MAX_BANDS:
            raise ValueError(
                f"model spec: {self.in_channels} channel(s) with levels={self.levels} "
                f"and signal_ndim={self.signal_ndim} make {n_bands} wavelet packet "
                f"bands, more than the {MAX_BANDS} supported"
            )
        if self.latent_dim > n_bands:
            raise ValueError(
                f"latent_dim={self.latent_dim} exceeds the {n_bands} wavelet packet "
                f"bands of a {self.in_channels}-channel signal with "
                f"levels={self.levels}."
            )
        self._check_decoder_kind()
        if type(self.padding) is not str or self.padding not in PADDINGS:
            raise ValueError(
                f"model spec: padding must be one of {PADDINGS}, got {self.padding!r}"
            )
        if self.padding == "centred" and self.decoder_kind == "walloc":
            raise ValueError(
                "model spec: padding 'centred' is the reference implementation's; "
                "only models with its decoder_kind have it"
            )
        self._check_enhancement(n_bands)
        n_params = sum(math.prod(s) for s in self.tensor_shapes().values())
        if n_params > MAX_PARAMETERS:
            raise ValueError(
                f"model spec: the model would have {n_params} parameters, more than "
                f"the {MAX_PARAMETERS} supported (decoder_width={self.decoder_width}, "
                f"decoder_depth={self.decoder_depth}, latent_dim={self.latent_dim}, "
                f"{n_bands} bands)"
            )
        try:
            resolve_wavelet(self.wavelet)
        except ValueError as e:
            raise ValueError(f"model spec: {e}") from None
        if self.boundary not in BOUNDARIES:
            raise ValueError(
                f"model spec: boundary must be one of {BOUNDARIES}, got "
                f"{self.boundary!r}"
            )
        if self.boundary == "symmetric" and default_boundary(self.wavelet) != (
            "symmetric"
        ):
            raise ValueError(
                f"model spec: boundary 'symmetric' does not invert for wavelet "
                f"{self.wavelet!r}; only 'periodization' does"
            )
        self._check_inference_bytes()
        if self.sample_dtype is not None and (
            type(self.sample_dtype) is not str or self.sample_dtype not in SAMPLE_DTYPES
        ):
            raise ValueError(
                f"model spec: sample_dtype must be None or one of "
                f"{', '.join(SAMPLE_DTYPES)}; got {self.sample_dtype!r}"
            )

    def _check_decoder_kind(self):
        kind = self.decoder_kind
        if kind == "walloc":
            return
        if type(kind) is not str or kind not in DECODER_KINDS:
            raise ValueError(
                f"model spec: decoder_kind must be one of {DECODER_KINDS}, got {kind!r}"
            )
        ndim = 2 if kind == "autoencoder-kl" else 1
        width, groups = self.decoder_width, 32 if ndim == 2 else self.latent_dim
        problems = [
            (self.signal_ndim != ndim, f"signal_ndim={ndim}"),
            (self.wavelet != "bior4.4", "wavelet 'bior4.4'"),
            (self.boundary != "periodization", "boundary 'periodization'"),
            (self.decoder_depth != 0, "decoder_depth=0"),
            (
                width < groups or width % (groups if ndim == 2 else 1),
                (
                    f"decoder_width (Nd) a positive multiple of {groups}"
                    if ndim == 2
                    else f"decoder_width (Nd) at least latent_dim={groups}"
                ),
            ),
        ]
        for bad, need in problems:
            if bad:
                raise ValueError(f"model spec: decoder_kind {kind!r} needs {need}")

    def _check_enhancement(self, n_bands):
        k = self.enhancement_dim
        if not k:
            return
        if self.signal_ndim != 2 or self.decoder_kind != "walloc":
            raise ValueError(
                "model spec: enhancement_dim > 0 needs a 2D model with this "
                f"library's decoder, got signal_ndim={self.signal_ndim}, "
                f"decoder_kind={self.decoder_kind!r}"
            )
        if self.latent_dim + k > n_bands:
            raise ValueError(
                f"model spec: latent_dim + enhancement_dim = {self.latent_dim + k} "
                f"exceeds the {n_bands} wavelet packet bands"
            )

    @property
    def base(self):
        """This spec without enhancement channels: what blobs without them
        (and every blob before enhancement existed) are fingerprinted with."""
        if not self.enhancement_dim:
            return self
        return dataclasses.replace(self, enhancement_dim=0)

    def inference_bytes(self):
        """Working memory that inference needs for the model's fixed operators.

        An upper estimate, in bytes, of what ``transform``, ``compress`` and
        ``decompress`` allocate once per model (float64) beyond what grows with
        the signals, from the formulas of ``_wavelets``, ``_edges`` and the gain
        search, with the peak-to-tensor factors measured on CPU (the estimate
        was 5-20% above the measured peaks of the parts it could be compared
        with): the 1D
        composite filter (``F`` taps, ``s = 2**levels``, support
        ``L = (F - 1)(s - 1) + 1``; the analysis of ``s`` impulses on a grid
        of about ``2L``, times ``F`` in autograd), the synthesis impulse
        responses (``s**2`` per position), the exact edge rows of the
        symmetric analysis (about ``2L x 4L``) and synthesis (``s**2`` times
        the squared polyphase length), the fused kernels and edge weights
        (``latent_dim`` times the bands times the filter lengths), the
        end-of-axis least squares (``12 latent_dim + 1`` probes through the
        synthesis) and, for 1D models, the gain search (``latent_dim``
        impulses, 64 positions each). Computed without building anything.

        Returns
        -------
        parts : dict of str to int
            Bytes by part; :data:`MAX_INFERENCE_BYTES` bounds their sum.
        """
        F = resolve_wavelet(self.wavelet).dec_len
        s = 2**self.levels
        support = (F - 1) * (s - 1) + 1
        c, d, nd = self.in_channels, self.latent_dim, self.signal_ndim
        d_all = d + self.enhancement_dim
        n_bands = self.n_bands
        grid = s * -(-(2 * support + s) // s)
        # The backward pass of the tap loops holds about one grid per tap.
        composite = F * s * grid
        if 8 * composite <= MAX_INFERENCE_BYTES:
            taps, t0 = _synthesis_taps(self.levels, self.wavelet)
        else:  # refused anyway: bounds, without the (then slow) exact lengths
            taps = resolve_wavelet(self.wavelet).rec_len
            t0 = taps - 1
        parts = {
            "composite filter": composite,
            "synthesis impulse responses": 4 * s * s * (2 * -(-support // s) + 8),
            "fused kernels": 2 * d_all * n_bands * (-(-support // s) + taps),
        }
        if self.boundary == "symmetric":
            offset = (F // 2 - 1) * (s - 1)
            n_left = -(-offset // s)
            n_right = -(-(support - 1 - offset) // s)
            reference = s * -(-4 * support // s)
            span = min(reference, s * max(n_left, n_right) + support)
            s_left, s_right = t0, taps - 1 - t0
            s_reference = 4 * (s_left + s_right + taps) + 8
            s_span = min(s_reference, max(s_left, s_right) + 2 * taps)
            others = n_bands // s
            parts["analysis edge rows"] = 5 * 2 * span * reference
            # At the reference length, and at the least squares' probe grid
            # of 16 positions (its own rows).
            probe_span = 16 if 16 <= s_left + s_right else min(16, s_span)
            parts["synthesis edge rows"] = (
                6 * 2 * s * s * (s_span * s_reference + probe_span * 16)
            )
            parts["edge weights"] = (
                2 * d * others * (n_left * span + s_span * max(s_left, s_right) * s)
            )
            # The probes' synthesis, analysis along the other axis and the
            # products after it: 5-10 times the probes' samples, measured.
            probes = (12 * d + 1) * c * 16 * s * (2 * s) ** (nd - 1)
            parts["end-of-axis least squares"] = 12 * probes
        if nd == 1:
            parts["gain search"] = 4 * d * n_bands * 64
        return {k: 8 * int(v) for k, v in parts.items()}

    def _check_inference_bytes(self):
        parts = self.inference_bytes()
        total = sum(parts.values())
        if total <= MAX_INFERENCE_BYTES:
            return
        part = max(parts, key=parts.get)
        by_latents = part in ("fused kernels", "edge weights", "gain search")
        by_latents |= part == "end-of-axis least squares"
        if by_latents:
            what = (
                f"latent_dim={self.latent_dim} with {self.n_bands} wavelet packet bands"
            )
            fix = "a smaller latent_dim or fewer levels"
        else:
            taps = resolve_wavelet(self.wavelet).dec_len
            what = f"levels={self.levels} with wavelet {self.wavelet!r} ({taps} taps)"
            fix = "fewer levels or a shorter wavelet"
        raise ValueError(
            f"model spec: {what} needs about {total / 2**30:.2g} GiB of working "
            f"memory at inference (most of it for the {part}), more than the "
            f"{MAX_INFERENCE_BYTES / 2**30:.3g} GiB supported "
            f"(MAX_INFERENCE_BYTES); use {fix}"
        )

    def tensor_shapes(self):
        """Shapes of the learned tensors, by ``state_dict`` name, in module order.

        The buffers the model reads (``latent_scale``, ``data_offset``,
        ``data_scale``) are included; the wavelet filter buffers are not: they
        follow from the wavelet's name. Computed without building the module.

        Returns
        -------
        shapes : OrderedDict of str to tuple of int
            All float32.
        """
        k1 = (1,) * self.signal_ndim
        k3 = (3,) * self.signal_ndim
        bands = self.in_channels * 2 ** (self.levels * self.signal_ndim)
        d, w = self.latent_dim, self.decoder_width
        if self.decoder_kind != "walloc":
            return self._reference_shapes(bands)
        shapes = OrderedDict(
            [
                ("latent_scale", ()),
                ("data_offset", ()),
                ("data_scale", ()),
                ("encoder.weight", (d, bands, *k1)),
                ("encoder.bias", (d,)),
                ("decoder.linear.weight", (bands, d, *k1)),
                ("decoder.linear.bias", (bands,)),
            ]
        )
        if self.has_refine:
            shapes["decoder.refine.0.weight"] = (w, d, *k3)
            shapes["decoder.refine.0.bias"] = (w,)
            for i in range(1, self.decoder_depth + 1):
                for conv in ("conv1", "conv2"):
                    shapes[f"decoder.refine.{i}.{conv}.weight"] = (w, w, *k3)
                    shapes[f"decoder.refine.{i}.{conv}.bias"] = (w,)
            # The GELU at index depth + 1 has no parameters.
            last = self.decoder_depth + 2
            shapes[f"decoder.refine.{last}.weight"] = (bands, w, *k1)
            shapes[f"decoder.refine.{last}.bias"] = (bands,)
        if self.enhancement_dim:
            shapes["enhancement"] = (self.enhancement_dim, bands)
            shapes["enhancement_scale"] = ()
        return shapes

    def _reference_shapes(self, bands):
        from ._reference_net import decoder_shapes

        k1 = (1,) * self.signal_ndim
        shapes = OrderedDict(
            [
                ("latent_scale", ()),
                ("data_offset", ()),
                ("data_scale", ()),
                ("encoder.weight", (self.latent_dim, bands, *k1)),
                ("encoder.bias", (self.latent_dim,)),
            ]
        )
        shapes.update(
            decoder_shapes(
                self.decoder_kind,
                self.in_channels,
                self.latent_dim,
                bands,
                self.decoder_width,
            )
        )
        return shapes

    def build(self):
        """A freshly initialised :class:`WallocAutoencoder` of this structure."""
        from ._networks import WallocAutoencoder

        if self.decoder_kind != "walloc":
            from ._reference_net import ReferenceAutoencoder

            return ReferenceAutoencoder(
                self.in_channels,
                self.latent_dim,
                self.levels,
                self.signal_ndim,
                self.latent_bits,
                self.decoder_width,
                self.decoder_kind,
            )
        return WallocAutoencoder(
            self.in_channels,
            self.latent_dim,
            self.levels,
            self.wavelet,
            self.signal_ndim,
            self.latent_bits,
            self.decoder_width,
            self.decoder_depth,
            boundary=self.boundary,
            enhancement_dim=self.enhancement_dim,
        )

    def check_refit(self, spec):
        """Refuse training this fitted model further as ``spec`` (a new fit's
        spec): the structure and channel count must match. The boundary and
        the sample domain stay the fitted model's (a legacy model stays a
        legacy model when trained further)."""
        same = dataclasses.replace(
            spec, boundary=self.boundary, sample_dtype=self.sample_dtype
        )
        if self.decoder_kind != "walloc":
            raise ValueError(
                f"warm_start/partial_fit: this model has the reference "
                f"implementation's {self.decoder_kind!r} decoder, which is not "
                "trained here; set warm_start=False to fit a new model."
            )
        if same != self:
            raise ValueError(
                "warm_start/partial_fit need the same model structure (latent_dim, "
                "levels, wavelet, signal_ndim, latent_bits, decoder_width, "
                "decoder_depth) and channel count as the fitted model "
                f"({self}); set warm_start=False to fit a new model."
            )

    @property
    def centred(self):
        """Whether signals are padded and cropped centred (``padding``)."""
        return self.padding == "centred"

    def to_json(self):
        """The fields as a JSON-able dict (``decoder_kind`` only when not
        "walloc", ``padding`` only when not "end", ``enhancement_dim`` only
        when not 0: the fingerprints of
        earlier models stay as they were)."""
        data = dataclasses.asdict(self)
        for name, default in _OPTIONAL_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_json(cls, data):
        """A validated spec from :meth:`to_json`'s dict; strict about keys."""
        if not isinstance(data, dict):
            raise ValueError(
                f"model spec must be a JSON object, got {type(data).__name__}"
            )
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(fields), key=str)
        missing = [f for f in fields if f not in data and f not in _OPTIONAL_FIELDS]
        if unknown or missing:
            raise ValueError(
                f"model spec: unknown keys {unknown}, missing keys {missing}"
            )
        return cls(**{f: data[f] for f in fields if f in data})

    def fingerprint(self, tensors, enhanced=False):
        """The 16-byte fingerprint that every blob of this model records.

        Parameters
        ----------
        tensors : mapping of str to array-like or torch.Tensor
            The module's ``state_dict`` (or at least its learned tensors; the
            legacy formula also needs the wavelet filter buffers).
        enhanced : bool, default=False
            False: the fingerprint of the model without its enhancement
            channels (:attr:`base`), which blobs without them record, so that
            adding enhancement channels to a model keeps its blobs decodable.
            True: over the whole spec and every tensor, enhancement included
            (blobs that carry enhancement channels, format 5).

        Returns
        -------
        fingerprint : bytes
            SHA-256 (truncated to 16 bytes) over :data:`FINGERPRINT_TAG`, the
            canonical spec JSON and each learned tensor in
            :meth:`tensor_shapes` order (name, dtype, shape, little-endian
            bytes). Models with periodization boundaries (model format 1, old
            pickles, converted reference models) keep
            :func:`legacy_fingerprint`, so their blobs decode.
        """
        if not enhanced and self.enhancement_dim:
            return self.base.fingerprint(tensors)
        if self.boundary == "periodization" and not enhanced:
            return legacy_fingerprint(self, tensors)
        digest = hashlib.sha256(FINGERPRINT_TAG.encode())
        digest.update(json.dumps(self.to_json(), sort_keys=True).encode())
        for name in self.tensor_shapes():
            a = _little_endian(tensors[name])
            digest.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
            digest.update(a.tobytes())
        return digest.digest()[:16]


def boundary_for(boundary, wavelet):
    """The boundary rule a new fit uses: "periodization" as asked, and
    "symmetric" wherever ``wavelet`` inverts with it (else periodization,
    as before the estimators had a ``boundary`` parameter)."""
    if boundary == "periodization":
        return boundary
    return default_boundary(wavelet)


@functools.lru_cache(maxsize=64)
def _synthesis_taps(levels, wavelet):
    """``(K, t0)`` of ``_synthesis._polyphase_synthesis`` (band-grid filter
    length and its centre), found from the union of the band supports: every
    band's impulse at one position through the synthesis with the filters'
    absolute values, so nothing cancels. ``s`` impulses instead of the ``s**2``
    that the real responses take, so it stays cheap at any level."""
    import torch

    line = WaveletPacket(levels, wavelet, 1, "periodization").double()
    line._synthesis = [[[abs(v) for v in band] for band in r] for r in line._synthesis]
    s = 2**levels
    support = (resolve_wavelet(wavelet).rec_len - 1) * (s - 1) + 1
    positions = 2 * -(-support // s) + 8
    j0 = positions // 2
    c = torch.zeros((1, s, positions), dtype=torch.float64)
    c[0, :, j0] = 1.0
    x = line.inverse(c).reshape(positions, s)  # (m, r)
    used = torch.nonzero(x.sum(dim=1)).flatten()
    m_lo, m_hi = int(used.min()), int(used.max())
    return m_hi - m_lo + 1, m_hi - j0


def legacy_fingerprint(spec, state_dict):
    """The fingerprint of model format 1 (tag v1): frozen, part of old blobs.

    SHA-256 over a JSON header (the tag, the structural parameters with the
    channel count, ``padding`` if "centred", the sorted ``state_dict`` names),
    then every array of the ``state_dict`` (wavelet filters included) in name
    order, little-endian.
    """
    from ._container import model_fingerprint

    structure = {k: getattr(spec, k) for k in _LEGACY_FIELDS}
    structure["n_channels"] = spec.in_channels
    if spec.centred:
        # Blobs of a centred model decode to another window of the latents
        # than those of the same weights padded at the end (a reference model
        # converted before padding was a field): not each other's.
        structure["padding"] = spec.padding
    names = sorted(state_dict)
    header = json.dumps(
        {"tag": LEGACY_FINGERPRINT_TAG, "structure": structure, "arrays": names},
        sort_keys=True,
    ).encode("utf-8")
    arrays = [np.frombuffer(header, dtype=np.uint8)]
    arrays += [_little_endian(state_dict[name]) for name in names]
    return model_fingerprint(arrays)


def _little_endian(t):
    a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
