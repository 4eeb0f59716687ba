"""The WaLLoC autoencoder as torch modules, one code path for 1D and 2D.

``encode``: wavelet packet analysis, one linear 1x1 layer (the whole encoder),
companding quantiser. ``decode``: inverse companding, a decoder made of a linear
1x1 path plus a small residual convolutional network on the latent grid, wavelet
packet synthesis. Inference encodes with the composite filter that fuses the
packet analysis and the 1x1 layer, factorised into one strided convolution per
axis (:meth:`WallocAutoencoder.fused_encoder`).
"""

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import _ties
from ._bottleneck import Bottleneck, latent_range
from ._edges import EdgeEncoder
from ._synthesis import separable_decoder
from ._ties import exact_rounding, latents_and_first
from ._wavelets import WaveletPacket, separable_encoder

__all__ = ["GainSearch", "WallocAutoencoder", "gain_search"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


class _ResidualBlock(nn.Module):
    def __init__(self, width, signal_ndim):
        super().__init__()
        conv = _CONV[signal_ndim]
        self.conv1 = conv(width, width, 3, padding=1)
        self.conv2 = conv(width, width, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, h):
        return h + self.conv2(self.act(self.conv1(self.act(h))))


class _Decoder(nn.Module):
    """Linear 1x1 path plus a residual refinement whose output starts at zero.

    Starting the refinement at zero makes an untrained decoder equal to the
    closed-form (PCA) decoder, so training can only start from that point.
    """

    def __init__(self, latent_dim, n_bands, width, depth, signal_ndim):
        super().__init__()
        conv = _CONV[signal_ndim]
        self.linear = conv(latent_dim, n_bands, 1)
        self.refine = None
        if width > 0 and depth > 0:
            self.refine = nn.Sequential(
                conv(latent_dim, width, 3, padding=1),
                *[_ResidualBlock(width, signal_ndim) for _ in range(depth)],
                nn.GELU(),
                conv(width, n_bands, 1),
            )

    def forward(self, z):
        y = self.linear(z)
        if self.refine is not None and not self._refine_is_zero():
            y = y + self.refine(z)
        return y

    def _refine_is_zero(self):
        """Whether the refinement's output is exactly zero: its last layer has
        zero weights and bias, as after the closed-form start. Then inference
        skips its convolutions (most of the decoder's cost); training never
        does, since the zero layer must stay in the graph to be learned."""
        if torch.is_grad_enabled():
            return False
        last = self.refine[-1]
        return not last.weight.any() and not last.bias.any()


class WallocAutoencoder(nn.Module):
    """WaLLoC for signals of shape ``(N, C, *S)`` with ``len(S) == signal_ndim``.

    Parameters
    ----------
    in_channels : int
    latent_dim : int
    levels : int
    wavelet : str
    signal_ndim : {1, 2}
    latent_bits : int
    decoder_width, decoder_depth : int
        Width and number of residual blocks of the nonlinear decoder path
        (0 for a purely linear decoder).
    boundary : {"symmetric", "periodization"} or None, default=None
        Boundary rule of the wavelet packets (see
        :class:`~sklearn_walloc._wavelets.WaveletPacket`).
    enhancement_dim : int, default=0
        Rows of the ``enhancement`` buffer (:mod:`~sklearn_walloc._enhancement`).

    Notes
    -----
    Inputs are normalised by the scalar buffers ``data_offset`` and
    ``data_scale``; the encoder output is multiplied by the fixed buffer
    ``latent_scale`` before companding. Both are set by the closed-form start, so
    the learned weights stay of order one, which suits Adam-type optimisers.
    """

    def __init__(
        self,
        in_channels,
        latent_dim,
        levels,
        wavelet,
        signal_ndim,
        latent_bits,
        decoder_width,
        decoder_depth,
        boundary=None,
        enhancement_dim=0,
    ):
        super().__init__()
        self.signal_ndim = signal_ndim
        self.wpt = WaveletPacket(levels, wavelet, signal_ndim, boundary)
        n_bands = in_channels * self.wpt.n_bands
        self.encoder = _CONV[signal_ndim](n_bands, latent_dim, 1)
        self.bottleneck = Bottleneck(latent_bits)
        self.decoder = _Decoder(
            latent_dim, n_bands, decoder_width, decoder_depth, signal_ndim
        )
        self.register_buffer("latent_scale", torch.ones(()))
        self.register_buffer("data_offset", torch.zeros(()))
        self.register_buffer("data_scale", torch.ones(()))
        if enhancement_dim:
            # Codec-only linear channels (``_enhancement``): set after a fit.
            self.register_buffer("enhancement", torch.zeros(enhancement_dim, n_bands))
            self.register_buffer("enhancement_scale", torch.ones(()))

    @property
    def stride(self):
        """Downsampling factor per spatial axis, ``2**levels``."""
        return 2**self.wpt.levels

    def reset_parameters(self, generator):
        """Initialise every weight from ``generator`` (never the global RNG)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                else:
                    fan_in = p[0].numel()
                    bound = (3.0 / fan_in) ** 0.5
                    p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
            if self.decoder.refine is not None:
                self.decoder.refine[-1].weight.zero_()

    def analysis(self, x):
        """Wavelet packet coefficients of normalised ``x``."""
        return self.wpt((x - self.data_offset) / self.data_scale)

    def encode(self, x, mode, generator=None):
        """Two-step encoder (training path): latents, noisy or rounded."""
        z = self.encoder(self.analysis(x)) * self.latent_scale
        return self.bottleneck.quantize(z, mode, generator)

    def decode(self, q, gain_steps=0, latent_bits=None):
        """Signals from (noisy or integer) latents companded at a gain of
        ``gain_steps`` quarter octaves, with ``latent_bits`` bits (None: the
        model's; see :meth:`encode_gained`)."""
        expanded = self._bottleneck(latent_bits).expand(q)
        z = _ungain(expanded, gain_steps) / self.latent_scale
        y = self.decoder(z)
        return self.wpt.inverse(y) * self.data_scale + self.data_offset

    def forward(self, x, generator=None):
        """Training round trip with the noise proxy for rounding."""
        return self.decode(self.encode(x, "noise", generator))

    @torch.no_grad()
    def fused_encoder(self, dtype=torch.float32):
        """The inference encoder: normalisation, WPT and the 1x1 layer, fused.

        Returns
        -------
        SeparableEncoder
            The composite filter of :func:`~sklearn_walloc._wavelets.fused_encoder`
            factorised along the axes, with the data normalisation and the
            latent scale folded into its last kernel and bias.
        """
        return self.fused_projection(
            self.encoder.weight.flatten(1).double(),
            self.encoder.bias.double(),
            self.latent_scale.double(),
            dtype,
        )

    @torch.no_grad()
    def fused_projection(self, weight, bias, latent_scale, dtype=torch.float32):
        """``latent_scale * (weight @ analysis(x) + bias)`` as one separable
        encoder of raw samples ``x``, the data normalisation folded in: the
        encoder's 1x1 layer (:meth:`fused_encoder`), or the enhancement
        channels' projection (:mod:`~sklearn_walloc._enhancement`)."""
        encoder = separable_encoder(self.wpt, weight, bias)
        scale = latent_scale / self.data_scale.double()
        # enc((x - o) * k) = enc(x * k) - o * enc_without_bias(1): fold the offset.
        ones = torch.ones(
            (1, weight.shape[1] // self.wpt.n_bands)
            + (self.stride,) * self.wpt.signal_ndim,
            dtype=torch.float64,
        )
        unit = encoder.scaled(scale, torch.zeros_like(bias))(ones).flatten()
        bias = bias * latent_scale - self.data_offset.double() * unit
        return encoder.scaled(scale, bias).to(dtype)

    def inference_encoder(self, dtype=torch.float32):
        """The encoder that :meth:`encode_fused` is given at inference.

        :meth:`fused_encoder`, and for the symmetric boundary rule, with the
        latents at the end of each axis re-chosen by least squares for the
        decoder (:class:`~sklearn_walloc._edges.EdgeEncoder`): same grid, same
        decoder, 1.5-2 dB better last rows and columns on photos.
        """
        fused = self.fused_encoder(dtype)
        if self.wpt.boundary != "symmetric":
            return fused
        return EdgeEncoder(self, fused)

    @torch.no_grad()
    def fused_decoder(self, dtype=torch.float32):
        """The inference synthesis: the linear decoder path, the packet
        synthesis and the data scale fused, one pass per axis.

        Returns
        -------
        SeparableDecoder
            Equal to :meth:`decode` of expanded latents when the residual path
            is absent or zero (:meth:`decode_fused` checks), with the latent
            scale, ``data_scale`` and ``data_offset`` folded in.
        """
        linear = self.decoder.linear
        weight = linear.weight.flatten(1).double() / self.latent_scale.double()
        return separable_decoder(
            self.wpt,
            weight,
            linear.bias.double(),
            float(self.data_scale),
            float(self.data_offset),
        ).to(dtype)

    @torch.no_grad()
    def refined_decoder(self, dtype=torch.float32):
        """The inference decoder of a model whose residual path is active.

        Returns
        -------
        RefinedDecoder
            Equal to :meth:`decode` of expanded latents up to float rounding:
            the residual features with the latent scale folded into their
            first layer, channels-last, then one synthesis of the latents and
            the features that fuses the linear path, the residual path's last
            1x1 layer, the packet synthesis and the data scale
            (:func:`~sklearn_walloc._synthesis.separable_decoder`, factored).
        """
        if self.decoder.refine is None:
            raise ValueError("this model's decoder has no residual path")
        return RefinedDecoder(self, dtype)

    def _inference_decoder(self, fused, like):
        """``fused`` while the residual path is absent or exactly zero (closed
        form); else the :meth:`refined_decoder` for ``like``'s dtype and device,
        built once per state of the weights."""
        decoder = self.decoder
        if decoder.refine is None or decoder._refine_is_zero():
            return fused
        if torch.is_grad_enabled():  # differentiable: the training path
            return lambda z: self._decode_expanded(z)
        # In-place updates (an optimiser step, load_state_dict) bump a tensor's
        # version: a changed weight never meets a stale fused copy.
        state = tuple(
            (t.data_ptr(), t._version) for t in (*decoder.parameters(), *self.buffers())
        )
        key = (like.dtype, like.device)
        cache = self.__dict__.setdefault("_inference_cache", {})
        hit = cache.get(key)
        if hit is None or hit[0] != state:
            hit = (state, self.refined_decoder(like.dtype).to(like.device))
            cache[key] = hit
        return hit[1]

    def __getstate__(self):
        # The inference cache is derived from the weights: never pickled, so a
        # copy (deepcopy, pickle, clone) rebuilds its own.
        state = dict(self.__dict__)
        state.pop("_inference_cache", None)
        return state

    def _decode_expanded(self, z):
        y = self.decoder(z / self.latent_scale)
        return self.wpt.inverse(y) * self.data_scale + self.data_offset

    def decode_fused(self, q, fused, gain_steps=0, latent_bits=None):
        """Inference decoder: ``fused`` from :meth:`fused_decoder` while the
        residual path is absent or exactly zero (closed form), else
        :meth:`refined_decoder` (cached); ``gain_steps`` and ``latent_bits``
        as :meth:`decode`."""
        z = _ungain(self._bottleneck(latent_bits).expand(q), gain_steps)
        return self._inference_decoder(fused, z)(z)

    def synthesize(self, z, fused):
        """Signals from real latents ``z`` (the scale :meth:`encode_gained`
        compands, before any gain): :meth:`decode_fused` without the
        quantiser."""
        return self._inference_decoder(fused, z)(z)

    def _bottleneck(self, latent_bits):
        if latent_bits is None or latent_bits == self.bottleneck.latent_bits:
            return self.bottleneck
        return Bottleneck(latent_bits)

    def encode_fused(self, x, fused):
        """Inference encoder: ``fused`` from :meth:`inference_encoder`; 1D
        signals rounded the same way on any thread count
        (:class:`~sklearn_walloc._ties.ExactRounding`), and images
        with ``_ties.EXACT_IMAGES`` (the default)."""
        if not self.rounds_exactly():
            return self.bottleneck.quantize(fused(x), "symbols")
        z, first = latents_and_first(fused, x)
        return exact_rounding(fused, self).round(self.bottleneck, z, x, first=first)

    def encode_gained(self, x, fused, max_steps, search=None):
        """:meth:`encode_fused` with a gain per signal.

        Each signal's latents are companded at ``2**(g/4)`` times the latent
        scale (``g`` quarter octaves, 1.5 dB each): when their peak is below
        half a companding scale, ``g`` brings it to just under 2 scales, where
        the peaks of loud music sit after the closed-form start (at most
        ``max_steps``); otherwise ``g = 0``. A quiet clip so gets about the
        quantiser resolution of a loud one, and a signal within 12 dB of that
        level keeps gain 1: ``g = 0`` gives exactly :meth:`encode_fused`'s
        latents, and :meth:`decode` with ``gain_steps=0`` exactly its signals.

        With a ``search`` (:func:`gain_search`), a signal whose rounding would
        cost more than its ``max_loss_db`` of SNR against its unrounded
        latents, with a rounding error less than ``max_snr_db`` under its
        energy (predicted from the rounding above: the rounding error falls
        1.5 dB per quarter octave of gain), gets the least extra gain
        predicted to meet one of the two, and as many more latent bits as
        keep its gained peak within 2 companding scales (at most 16): a
        signal with a wide dynamic range keeps the precision of its quiet
        parts. Other signals keep the latents above.

        Returns
        -------
        q : Tensor (N, D, *S)
        gain_steps : Tensor of int64 (N,)
        latent_bits : Tensor of int64 (N,)
            The model's bits, or more.
        """
        z = fused(x)
        bn = self.bottleneck
        # Decisions below are thresholds: they take the reference peak and
        # rounding (ExactRounding), not the float32 values, whose last bits
        # change with the thread count.
        ties = exact_rounding(fused, self)
        tol = ties.tolerance(x)
        peak = ties.peak(z, x, tol) / bn.scale
        steps = torch.floor(
            GAIN_STEPS_PER_OCTAVE * torch.log2(_GAIN_TARGET / peak.clamp_min(1e-30))
        )
        # Silence has nothing to gain.
        quiet = (peak > 0) & (peak < _GAIN_TARGET / 4)
        steps = torch.where(quiet, steps, torch.zeros_like(steps))
        steps = steps.clamp(0, max_steps).to(torch.int64)
        q = ties.round(bn, z, x, _gain_factor(steps, peak), tol)
        bits = torch.full_like(steps, bn.latent_bits)
        if search is None:
            return q, steps, bits
        extra = _extra_steps(x, z, _ungain(bn.expand(q), steps), self, search)
        wide = (extra > 0) & (steps < max_steps)
        steps = (steps + extra).clamp(max=max_steps)
        bits = torch.where(wide, _gained_bits(peak, steps, bn.latent_bits), bits)
        # One pass per bit depth present (at most 15), each row its own.
        for b in torch.unique(bits[wide]).tolist():
            rows = wide & (bits == b)
            gain = _gain_factor(steps[rows], peak)
            q[rows] = ties.round(Bottleneck(b), z[rows], x[rows], gain, tol[rows])
        return q, steps, bits

    def rounds_exactly(self):
        """Whether latents are rounded by :class:`~sklearn_walloc._ties.ExactRounding`
        (which reads the signal): 1D signals always, images with
        ``_ties.EXACT_IMAGES``."""
        return self.wpt.signal_ndim == 1 or _ties.EXACT_IMAGES

    def encode_at_gains(self, x, z, fused, steps, deadzone=0.0, first=None):
        """Integer latents of ``x`` at given gains, for rate control.

        ``z`` is ``fused(x)``; ``x`` is only read where :meth:`rounds_exactly`
        (None will do elsewhere); ``steps`` (N,) int64 are the gains in quarter
        octaves, of either sign. A finer gain widens the latents as
        :meth:`encode_gained` does (its peak rule); ``steps == 0`` and no
        ``deadzone`` give exactly :meth:`encode_fused`'s latents. ``deadzone``
        widens the zero bin (``_ties.deadzone_round``); ``first``: the first
        stage output that came with ``z`` (``_ties.latents_and_first``).

        Returns
        -------
        q : Tensor (N, D, *S)
        latent_bits : Tensor of int64 (N,)
        """
        bn = self.bottleneck
        steps = torch.as_tensor(steps, dtype=torch.int64)
        exact = self.rounds_exactly()
        if exact:
            ties = exact_rounding(fused, self)
            tol = ties.tolerance(x)
        # Only a finer gain can widen the latents, by the peak rule; the
        # exact peak costs a float64 recomputation near it.
        bits = torch.full_like(steps, bn.latent_bits)
        if bool((steps > 0).any()):
            if exact:
                peak = ties.peak(z, x, tol, first) / bn.scale
            else:
                peak = z.detach().abs().flatten(1).amax(1).double() / bn.scale
            wide = _gained_bits(peak, steps, bn.latent_bits)
            bits = torch.where(steps > 0, wide, bits)
        q = None
        for b in torch.unique(bits).tolist():
            rows = bits == b
            bottleneck = bn if b == bn.latent_bits else Bottleneck(b)
            if exact:
                gain = _gain_factor(steps[rows], tol)
                xr = x if bool(rows.all()) else x[rows]  # x may be a StripImage
                fr = first if first is None or bool(rows.all()) else first[rows]
                out = ties.round(bottleneck, z[rows], xr, gain, tol[rows], deadzone, fr)
            else:
                # compand's operations, in place: a large image's latents are
                # hundreds of MB (the same floats as compand's).
                u = (z if bool(rows.all()) else z[rows]) * _gain_factor(steps[rows], z)
                scale = bottleneck.scale * math.sqrt(2.0)
                out = u.div_(scale).erf_().mul_(bottleneck.bound)
                out = _ties.deadzone_round(out, deadzone)
            if bool(rows.all()):
                return out, bits
            q = torch.empty_like(z) if q is None else q
            q[rows] = out
        return q, bits


class RefinedDecoder:
    """Latents to signals through an active residual decoder path, for
    inference (:meth:`WallocAutoencoder.refined_decoder`).

    ``features`` is a copy of the residual path up to its last 1x1 layer, with
    ``1 / latent_scale`` folded into its first convolution (channels-last for
    images, the layout oneDNN's convolutions run fastest on); ``synthesis``
    maps the latents and the features, stacked, to signals: the linear path
    and the last 1x1 layer as one 1x1 layer to the bands, then the grouped
    packet synthesis passes with the data scale and offset. Without
    gradients: inference only.
    """

    def __init__(self, module, dtype=torch.float32):
        decoder, scale = module.decoder, module.latent_scale.double()
        features = copy.deepcopy(decoder.refine[:-1]).to(dtype)
        first = features[0]
        first.weight.copy_((first.weight.double() / scale).to(dtype))
        if module.signal_ndim == 2:
            features = features.to(memory_format=torch.channels_last)
        self.features = features.eval().requires_grad_(False)
        last = decoder.refine[-1]
        weight = torch.cat(
            [
                decoder.linear.weight.flatten(1).double() / scale,
                last.weight.flatten(1).double(),
            ],
            dim=1,
        )
        bias = decoder.linear.bias.double() + last.bias.double()
        self.synthesis = separable_decoder(
            module.wpt,
            weight,
            bias,
            float(module.data_scale),
            float(module.data_offset),
            factored=True,
        ).to(dtype)

    def __call__(self, z):
        with torch.no_grad():
            return self.synthesis((z, self.features(z)))

    def to(self, *args, **kwargs):
        """Moved/cast in place, as a module's ``to``; returns itself."""
        self.features = self.features.to(*args, **kwargs)
        self.synthesis = self.synthesis.to(*args, **kwargs)
        return self


@dataclass(frozen=True)
class GainSearch:
    """What :meth:`WallocAutoencoder.encode_gained` needs to widen latents."""

    synthesis: object  # the fused decoder (fused_decoder()), on the device
    weights: torch.Tensor  # (D,) float64: synthesis energy of a unit latent
    max_loss_db: float
    max_snr_db: float


@torch.no_grad()
def gain_search(
    synthesis, latent_dim, signal_ndim, max_loss_db, max_snr_db, device, length=64
):
    """A :class:`GainSearch`: ``synthesis``'s response energy to a unit latent
    in each channel (the impulse far from the borders), computed once."""
    d, spatial = latent_dim, (length,) * signal_ndim
    unit = torch.zeros((d, d, *spatial), device=device)
    unit[(range(d), range(d), *[length // 2] * signal_ndim)] = 1.0
    response = synthesis(unit) - synthesis(torch.zeros_like(unit[:1]))
    weights = _energy(response.flatten(1)[:, None])[:, 0]
    return GainSearch(synthesis, weights, float(max_loss_db), float(max_snr_db))


def _energy(t):
    """Sum of squares over the axes after the first two of ``(N, D, ...)``,
    accumulated in float64 without a float64 copy."""
    return (t * t).flatten(2).sum(dim=2, dtype=torch.float64)


def _extra_steps(x, z, z_hat, module, search):
    """Gain steps beyond the peak rule that bring each signal's predicted
    rounding loss within ``search.max_loss_db`` (see ``encode_gained``)."""
    exact = module.synthesize(z, search.synthesis)
    floor = _energy((x - exact).flatten(1)[:, None])[:, 0]  # unrounded error
    # The rounding error through the linear synthesis, from the latents: each
    # channel's impulse response energy times its squared error (the responses
    # are near-orthogonal: within 2% of the synthesised error on music), which
    # spares a second synthesis of the whole signal.
    rounding = (_energy(z - z_hat) * search.weights).sum(dim=1)
    allowed = floor * (10 ** (search.max_loss_db / 10) - 1)
    # Rounding noise max_snr_db under the signal is never worth more bits.
    signal = _energy(x.flatten(1)[:, None])[:, 0]
    allowed = torch.maximum(allowed, signal * 10 ** (-search.max_snr_db / 10))
    # The rounding error falls 4x per octave of gain: 2**(-e/2) per step. A
    # signal the model represents exactly (floor 0) takes what it can get.
    ratio = rounding / allowed.clamp_min(1e-300)
    extra = torch.ceil(2 * torch.log2(ratio.clamp_min(1.0)))
    return extra.clamp(0, 2**20).to(torch.int64)


#: The gain of a blob is ``2**(gain_steps / GAIN_STEPS_PER_OCTAVE)``.
GAIN_STEPS_PER_OCTAVE = 4
# The peak latent, in companding scales, that a gain aims at: 2 scales is where
# the 1e-5 tail of loud music sits after the closed-form start.
_GAIN_TARGET = 2.0


def _gain_factor(gain_steps, like):
    """The gain as a float tensor broadcastable against ``like`` (N, D, *S);
    computed in float64, so it is the same number on every device."""
    g = torch.as_tensor(gain_steps, dtype=torch.float64)
    factor = torch.pow(2.0, g / GAIN_STEPS_PER_OCTAVE).to(like.dtype).to(like.device)
    return factor.reshape(-1, *[1] * (like.dim() - 1)) if factor.dim() else factor


def _gained_bits(peak, steps, latent_bits):
    """Latent bits (N,) that keep peaks ``peak`` (in the model's companding
    scales) within ``_GAIN_TARGET`` scales at gains ``steps``: the scale of b
    bits is K_b / 1.85, so K_b >= peak * G * K / _GAIN_TARGET (at most 16)."""
    gained = peak * torch.pow(2.0, steps.double() / GAIN_STEPS_PER_OCTAVE)
    need = gained / _GAIN_TARGET * latent_range(latent_bits)
    bits = torch.full_like(steps, latent_bits)
    for b in range(latent_bits, 16):
        bits = bits + (need > latent_range(b)).to(bits.dtype)
    return bits


def _ungain(u, gain_steps):
    """Undo the gain on expanded latents (gain 1 leaves them untouched)."""
    if isinstance(gain_steps, int) and not gain_steps:
        return u
    return u / _gain_factor(gain_steps, u)
