"""The decoders of the reference implementation (walloc 1.2.1), as torch modules.

The paper's checkpoints decode with diffusers' blocks: ``Codec2D`` with the
``Decoder`` of ``AutoencoderKL`` (one ``UpDecoderBlock2D`` without upsampling,
a mid-block with one attention head, GroupNorm of 32 groups, SiLU) and
``Codec1D`` with the ``OobleckDecoder`` of Stable Audio (Snake activations,
weight-normalised dilated convolutions, two blocks of stride 1), then an
optional 129-tap post-filter on the signal. They are written out here, with
diffusers' parameter names and the same operations in the same order, so
that a checkpoint loads without diffusers (weight normalisation is folded
into plain weights once, with the formula torch's ``weight_norm`` applies at
each call), and so that the library keeps one dependency set.

:class:`ReferenceAutoencoder` is a :class:`~sklearn_walloc._networks.WallocAutoencoder`
whose decoder is one of these: the encoder, the quantiser and the wavelet
packets are the library's, and every inference path of the estimators
(``transform``, ``compress``, tiles, dask) runs it through
:meth:`ReferenceAutoencoder.fused_decoder`. Training is not supported.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ._networks import WallocAutoencoder

__all__ = [
    "KLDecoder",
    "OobleckDecoder",
    "ReferenceAutoencoder",
    "decoder_shapes",
]

#: Groups of every GroupNorm of Codec2D's decoder (diffusers' default there).
KL_GROUPS = 32
#: Taps of Codec1D's post-filter on the signal.
POST_FILTER_TAPS = 129
_EPS = 1e-6


class _ResnetBlock(nn.Module):
    """diffusers' ``ResnetBlock2D`` without time embedding, equal widths."""

    def __init__(self, width):
        super().__init__()
        self.norm1 = nn.GroupNorm(KL_GROUPS, width, eps=_EPS)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.norm2 = nn.GroupNorm(KL_GROUPS, width, eps=_EPS)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class _Attention(nn.Module):
    """diffusers' one-head spatial self-attention (``AttnProcessor2_0``)."""

    def __init__(self, width):
        super().__init__()
        self.group_norm = nn.GroupNorm(KL_GROUPS, width, eps=_EPS)
        self.to_q = nn.Linear(width, width)
        self.to_k = nn.Linear(width, width)
        self.to_v = nn.Linear(width, width)
        self.to_out = nn.ModuleList([nn.Linear(width, width)])

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.view(b, c, h * w).transpose(1, 2)
        t = self.group_norm(t.transpose(1, 2)).transpose(1, 2)
        q = self.to_q(t).view(b, -1, 1, c).transpose(1, 2)
        k = self.to_k(t).view(b, -1, 1, c).transpose(1, 2)
        v = self.to_v(t).view(b, -1, 1, c).transpose(1, 2)
        t = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        t = self.to_out[0](t.transpose(1, 2).reshape(b, -1, c))
        return t.transpose(-1, -2).reshape(b, c, h, w) + x


class _MidBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.attentions = nn.ModuleList([_Attention(width)])
        self.resnets = nn.ModuleList([_ResnetBlock(width), _ResnetBlock(width)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class _UpBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.resnets = nn.ModuleList([_ResnetBlock(width) for _ in range(3)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return x


class KLDecoder(nn.Module):
    """Codec2D's decoder: diffusers' ``Decoder`` with ``block_out_channels=(width,)``.

    Parameters
    ----------
    latent_dim : int
    n_bands : int
        Output channels (the wavelet packet bands of all signal channels).
    width : int
        ``Nd``, a multiple of 32.
    """

    #: Latent positions read by the convolutions on each side of an output
    #: (conv_in, 5 residual blocks of two 3x3 convolutions, conv_out). The
    #: GroupNorm statistics and the attention read the whole grid.
    receptive_radius = 12

    def __init__(self, latent_dim, n_bands, width):
        super().__init__()
        self.conv_in = nn.Conv2d(latent_dim, width, 3, padding=1)
        self.up_blocks = nn.ModuleList([_UpBlock(width)])
        self.mid_block = _MidBlock(width)
        self.conv_norm_out = nn.GroupNorm(KL_GROUPS, width, eps=_EPS)
        self.conv_out = nn.Conv2d(width, n_bands, 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        h = self.up_blocks[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class _Snake(nn.Module):
    """diffusers' ``Snake1d`` (log-scale parameters)."""

    def __init__(self, width):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, width, 1))
        self.beta = nn.Parameter(torch.zeros(1, width, 1))

    def forward(self, x):
        alpha, beta = torch.exp(self.alpha), torch.exp(self.beta)
        return x + (beta + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


class _ResidualUnit(nn.Module):
    def __init__(self, width, dilation):
        super().__init__()
        self.snake1 = _Snake(width)
        self.conv1 = nn.Conv1d(width, width, 7, dilation=dilation, padding=3 * dilation)
        self.snake2 = _Snake(width)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x):
        return x + self.conv2(self.snake2(self.conv1(self.snake1(x))))


class _OobleckBlock(nn.Module):
    def __init__(self, width_in, width_out):
        super().__init__()
        self.snake1 = _Snake(width_in)
        # Stride 1, kernel 2, padding 1: one position shorter than its input.
        self.conv_t1 = nn.ConvTranspose1d(width_in, width_out, 2, stride=1, padding=1)
        self.res_unit1 = _ResidualUnit(width_out, 1)
        self.res_unit2 = _ResidualUnit(width_out, 3)
        self.res_unit3 = _ResidualUnit(width_out, 9)

    def forward(self, x):
        x = self.conv_t1(self.snake1(x))
        return self.res_unit3(self.res_unit2(self.res_unit1(x)))


class OobleckDecoder(nn.Module):
    """Codec1D's decoder: diffusers' ``OobleckDecoder`` with two blocks of stride 1.

    Parameters
    ----------
    latent_dim : int
    n_bands : int
    width : int
        ``Nd``; the hidden width is ``latent_dim * (Nd // latent_dim)``.

    Notes
    -----
    Each block is one position shorter than its input: the reference's
    encoder pads its latents with one position at each end (its 1x1
    convolution has ``padding=1``), which :class:`ReferenceAutoencoder`
    restores before this decoder.
    """

    def __init__(self, latent_dim, n_bands, width):
        super().__init__()
        hidden = latent_dim * (width // latent_dim)
        self.conv1 = nn.Conv1d(latent_dim, hidden, 7, padding=3)
        self.block = nn.ModuleList(
            [_OobleckBlock(hidden, hidden), _OobleckBlock(hidden, latent_dim)]
        )
        self.snake1 = _Snake(latent_dim)
        self.conv2 = nn.Conv1d(latent_dim, n_bands, 7, padding=3, bias=False)

    #: Latent positions read on each side: conv1 and conv2 (3 each), and per
    #: block the transposed convolution (1) and dilations 1, 3, 9 (39), plus
    #: the end padding (1).
    receptive_radius = 3 + 2 * 40 + 3 + 1

    def forward(self, z):
        h = self.conv1(z)
        for b in self.block:
            h = b(h)
        return self.conv2(self.snake1(h))


_DECODERS = {
    "autoencoder-kl": KLDecoder,
    "oobleck": OobleckDecoder,
    "oobleck+post-filter": OobleckDecoder,
}


def decoder_shapes(kind, in_channels, latent_dim, n_bands, width):
    """``state_dict`` shapes of a reference decoder (and post-filter), by name,
    found on the meta device: nothing is allocated."""
    with torch.device("meta"):
        decoder = _DECODERS[kind](latent_dim, n_bands, width)
        shapes = {
            f"decoder.{k}": tuple(v.shape) for k, v in decoder.state_dict().items()
        }
        if kind == "oobleck+post-filter":
            post = nn.Conv1d(in_channels, in_channels, POST_FILTER_TAPS)
            shapes.update(
                {f"post.{k}": tuple(v.shape) for k, v in post.state_dict().items()}
            )
    return shapes


class ReferenceAutoencoder(WallocAutoencoder):
    """WaLLoC with the reference's decoder, post-filter and output clamp.

    Parameters
    ----------
    in_channels, latent_dim, levels, signal_ndim, latent_bits : int
        As :class:`~sklearn_walloc._networks.WallocAutoencoder`; the wavelet is
        bior4.4 with periodization borders, as the reference's.
    width : int
        The reference's ``Nd``.
    kind : str
        One of :data:`~sklearn_walloc._spec.DECODER_KINDS`: Codec2D's decoder,
        Codec1D's, or Codec1D's with its post-filter.

    Notes
    -----
    The decoder's last layer is stored with its output bands in this
    library's packet order, and the encoder's columns likewise
    (:mod:`sklearn_walloc._reference` permutes them once, at conversion).
    Outputs are clamped to the reference's ``[-0.5, 0.5]``, i.e.
    ``data_offset +- data_scale / 2`` (the sample range of a uint8 photo or
    int16 audio).
    """

    def __init__(
        self, in_channels, latent_dim, levels, signal_ndim, latent_bits, width, kind
    ):
        super().__init__(
            in_channels,
            latent_dim,
            levels,
            "bior4.4",
            signal_ndim,
            latent_bits,
            0,
            0,
            boundary="periodization",
        )
        self.kind = kind
        self.decoder = _DECODERS[kind](latent_dim, self.encoder.in_channels, width)
        self.post = None
        if kind == "oobleck+post-filter":
            self.post = nn.Conv1d(
                in_channels,
                in_channels,
                POST_FILTER_TAPS,
                padding=POST_FILTER_TAPS // 2,
            )

    def forward(self, x, generator=None):
        raise ValueError(
            "a model converted from the reference implementation cannot be "
            "trained here (its decoder is the reference's); fit a new model"
        )

    def reset_parameters(self, generator):
        raise ValueError("a reference model's weights come from its checkpoint")

    def _edge_latents(self, like):
        """The latents the reference's 1x1 encoder puts at each end of a 1D
        signal (its ``padding=1``: the bias alone), expanded."""
        bn = self.bottleneck
        z = self.encoder.bias.to(like) * self.latent_scale.to(like)
        return bn.expand(bn.quantize(z, "symbols")) / self.latent_scale.to(like)

    def _decode_expanded(self, z):
        """Signals from expanded latents: the reference's decoder, packet
        synthesis, post-filter and clamp, in model units."""
        z = z / self.latent_scale
        if self.signal_ndim == 1:
            edge = self._edge_latents(z).view(1, -1, 1).expand(len(z), -1, 1)
            z = torch.cat([edge, z, edge], dim=2)
        x = self.wpt.inverse(self.decoder(z))
        if self.post is not None:
            x = self.post(x)
        return torch.clamp(x, -0.5, 0.5) * self.data_scale + self.data_offset

    def decode(self, q, gain_steps=0, latent_bits=None):
        return self.decode_fused(q, self.fused_decoder(), gain_steps, latent_bits)

    def fused_decoder(self, dtype=torch.float32):
        """The inference decoder (nothing to fuse: the decoder is nonlinear)."""
        if dtype != next(self.parameters()).dtype:
            return _Synthesis(copy.deepcopy(self).to(dtype))
        return _Synthesis(self)

    def refined_decoder(self, dtype=torch.float32):
        raise ValueError("a reference model's decoder is its own; see fused_decoder")

    def _inference_decoder(self, fused, like):
        # This module where it already sits on the latents' device and dtype
        # (the estimators' runtime copy): ``fused`` may be a lazy copy.
        p = next(self.parameters())
        if p.device == like.device and p.dtype == like.dtype:
            return _Synthesis(self)
        return fused


class _Synthesis:
    """:meth:`ReferenceAutoencoder._decode_expanded` as the estimators call a
    fused synthesis: ``synthesis(z)``, ``synthesis.to(device)``.

    ``to`` never moves the model the estimator holds: it returns a synthesis
    that copies the model to the target on its first call, so that the
    estimators' runtime, which decodes through its own device copy of the
    module, never holds a second copy of a large decoder.
    """

    def __init__(self, module, target=None):
        self.module = module
        self._target = target

    def __call__(self, z):
        if self._target is not None:
            args, kwargs = self._target
            self.module = copy.deepcopy(self.module).to(*args, **kwargs)
            self._target = None
        with torch.no_grad():
            return self.module._decode_expanded(z)

    def to(self, *args, **kwargs):
        """Itself where nothing changes; else a synthesis that copies the
        model there when first called."""
        p = next(self.module.parameters())
        t = torch.empty(0, dtype=p.dtype, device=p.device).to(*args, **kwargs)
        if t.dtype == p.dtype and t.device == p.device:
            return self
        return _Synthesis(self.module, (args, kwargs))
