"""Wavelet packet synthesis fused with a linear 1x1 decoder, for inference.

The packet synthesis of ``_wavelets.WaveletPacket`` is linear, and so is the
decoder's 1x1 path: :func:`separable_decoder` composes them into one
separable operator applied one axis at a time (dense, or ``factored`` into
grouped packet passes for wide inputs), with the symmetric borders' edge rows
precomputed, so a closed-form model decodes in a few passes instead of the
level-by-level chain. ``_wavelets`` holds the analysis side and the filters.
"""

import functools
from typing import NamedTuple

import torch

from ._wavelets import (
    _CONV,
    WaveletPacket,
    _band_index,
    _circular_pad,
    _EdgeRows,
)

__all__ = ["SeparableDecoder", "separable_decoder"]


@functools.lru_cache(maxsize=64)
def _polyphase_synthesis(levels, wavelet, boundary):
    """The 1D packet synthesis, away from the borders, as stride-1 filters on the
    band grid: ``x[s*m + r] = sum_b sum_t G[b, r, t] c_b[m + t - t0]``.

    Returns ``G`` ``(n_bands, s, K)`` in float64 and ``t0``, from the impulse
    response of each band at the middle of a grid wide enough not to wrap.
    """
    line = WaveletPacket(levels, wavelet, 1, boundary, _check=False).double()
    s = 2**levels
    positions = 2 * -(-((line.taps - 1) * (s - 1) + 1) // s) + 8
    j0 = positions // 2
    c = torch.zeros((s, s, positions), dtype=torch.float64)
    c[torch.arange(s), torch.arange(s), j0] = 1.0
    x = line.inverse(c)[:, 0].reshape(s, positions, s)  # (band, m, r)
    used = torch.nonzero(x.abs().sum(dim=(0, 2))).flatten()
    m_lo, m_hi = int(used.min()), int(used.max())
    t0 = m_hi - j0
    # G[b, r, t] = x_b[s * (j0 + t0 - t) + r]
    g = x[:, m_hi - torch.arange(m_hi - m_lo + 1), :].permute(0, 2, 1)
    return g.contiguous(), t0


@functools.lru_cache(maxsize=128)
def _synthesis_edge_rows(levels, wavelet, positions):
    """Exact edge rows of the symmetric 1D packet synthesis of ``positions``
    band positions: ``left`` ``(n_bands, p, m, s)`` gives the first ``m``
    positions' ``s`` samples each from the first ``p`` positions of every band,
    ``right`` the last ones (None: ``left`` is the whole operator). As
    :func:`_edge_rows`, long signals share the rows of a reference length."""
    g, t0 = _polyphase_synthesis(levels, wavelet, "symmetric")
    s, taps = g.shape[1], g.shape[2]
    n_left, n_right = t0, taps - 1 - t0
    line = WaveletPacket(levels, wavelet, 1, "symmetric").double()
    if positions <= n_left + n_right:
        span = positions
    else:
        reference = 4 * (n_left + n_right + taps) + 8
        if positions > reference:
            return _synthesis_edge_rows(levels, wavelet, reference)
        span = min(positions, max(n_left, n_right) + 2 * taps)
    # Impulses at the first and the last ``span`` positions of every band.
    idx = torch.arange(span)
    c = torch.zeros((2, s, span, s, positions), dtype=torch.float64)
    for b in range(s):
        c[0, b, idx, b, idx] = 1.0
        c[1, b, idx, b, positions - span + idx] = 1.0
    x = line.inverse(c.reshape(-1, s, positions)).reshape(2, s, span, positions, s)
    if positions <= n_left + n_right:
        return _EdgeRows(x[0].contiguous(), None)
    left = x[0, :, :, :n_left]
    right = x[1, :, :, positions - n_right :]
    # Only the positions the edge outputs read (7 of 20 for bior4.4): the
    # edge products cost in proportion to them.
    used = torch.nonzero(left.abs().sum(dim=(0, 2, 3))).flatten()
    left = left[:, : int(used.max()) + 1 if len(used) else 1]
    used = torch.nonzero(right.abs().sum(dim=(0, 2, 3))).flatten()
    right = right[:, int(used.min()) if len(used) else span - 1 :]
    return _EdgeRows(left.contiguous(), right.contiguous())


class _SynthesisStage(NamedTuple):
    """One synthesis pass along one axis: band grid to interleaved samples.

    ``weight`` ``(groups * outputs * s, inputs, K)`` (spatial ones elsewhere):
    a stride-1 correlation whose output channels are ``(output, phase)``;
    ``mix`` ``(outputs_total, n_bands, inputs)`` says how the inputs make each
    output's bands (the identity per group for the grouped passes), and
    ``band_bias`` ``(outputs_total, n_bands)`` the constant added to them, for
    the edge rows; ``bias`` per output channel is the interior response to
    ``band_bias`` plus ``offset``. (Beyond one level, a constant band does not
    synthesise to the interior's pattern near a symmetric border, so the edge
    outputs take the rows' own response to it.)
    """

    weight: torch.Tensor
    mix: torch.Tensor
    band_bias: torch.Tensor
    offset: float
    bias: torch.Tensor
    axis: int
    groups: int


def _interleave(out, s, axis):
    """Channel ``(k, r)`` at position ``m`` of ``axis`` -> channel ``k`` at
    ``s * m + r``: one copy. Images come out channels-last, as the next stage's
    convolution and the caller's ``(H, W, C)`` arrays take them (no further
    transposing copy)."""
    n, ch, *rest = out.shape
    if out.dim() != 4:
        out = out.reshape(n, ch // s, s, *rest).movedim(2, axis + 3)
        rest[axis] *= s
        return out.reshape(n, ch // s, *rest)
    h, w = rest
    # (n, h, w, k, r) in memory when ``out`` is channels-last (else one copy).
    y = out.permute(0, 2, 3, 1).reshape(n, h, w, ch // s, s)
    if axis == 0:  # -> (n, h, r, w, k)
        y = y.permute(0, 1, 4, 2, 3).contiguous().reshape(n, h * s, w, ch // s)
    else:  # -> (n, h, w, r, k)
        y = y.transpose(3, 4).contiguous().reshape(n, h, w * s, ch // s)
    return y.permute(0, 3, 1, 2)


def _pointwise(inputs, weight, bias):
    """The 1x1 layer ``weight`` ``(O, D)``, ``bias`` ``(O,)`` of ``inputs``: a
    tensor ``(N, D, *S)`` or tensors whose channels, stacked, make ``D``; one
    matrix product per input, on its channels-last view (a view, no copy,
    for the channels-last tensors the decoder passes). Channels-last out."""
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    out, start = None, 0
    for x in inputs:
        n, d, *spatial = x.shape
        rows = x.movedim(1, -1).reshape(-1, d)
        w = weight[:, start : start + d].t()
        out = torch.addmm(bias, rows, w) if out is None else out.addmm_(rows, w)
        start += d
    if start != weight.shape[1]:
        raise ValueError(
            f"inputs have {start} channels; the layer reads {weight.shape[1]}"
        )
    return out.reshape(n, *spatial, -1).movedim(-1, 1)


def _shared_conv(z, stage, shared, pad):
    """A grouped image stage along the first axis whose groups share one
    filter, as one dense convolution of a view: in channels-last memory
    ``(n, h, w, groups, inputs)`` the groups are adjacent columns, so they fold
    into the width, ``(n, h, w * groups, inputs)``. The same products and sums
    as the grouped convolution, 1.4x faster (oneDNN's grouped kernels are slow
    for 8 channels a group; along the second axis the rows would fold into the
    batch, 3 columns wide, which is slower); the result is the grouped
    convolution's ``(n, groups * outputs, ...)``, channels-last, as a view."""
    weight, bias = shared
    n, ch, h, w = z.shape
    g = stage.groups
    x = z.permute(0, 2, 3, 1).reshape(n, h, w * g, ch // g)  # a view if channels-last
    out = _CONV[2](x.permute(0, 3, 1, 2), weight, bias, padding=(pad, 0))
    out = out.permute(0, 2, 3, 1).reshape(n, out.shape[2], w, -1)
    return out.permute(0, 3, 1, 2)


class SeparableDecoder:
    """The linear decoder path and the packet synthesis, fused, per axis.

    The mirror of :class:`SeparableEncoder`: with ``J`` levels, each output
    sample of one axis is a short filter of the band grid per phase
    (``s = 2**J`` phases), so the whole synthesis of a 1x1 layer's output is a
    dense stride-1 correlation of the latents along the first axis, with one
    output channel per (channel, band of the other axes, phase), interleaved
    into that axis, followed by a grouped one along the other axis. Built by
    :func:`separable_decoder`; exact at the borders for both boundary rules
    (edge rows for the symmetric one, as the encoder).

    Examples
    --------
    >>> import torch
    >>> wpt = WaveletPacket(levels=3, signal_ndim=2).double()
    >>> weight, bias = torch.randn(3 * 64, 12), torch.randn(3 * 64)
    >>> decoder = separable_decoder(wpt, weight, bias)
    >>> z = torch.randn(1, 12, 5, 7, dtype=torch.float64)
    >>> bands = torch.einsum("kl,nlhw->nkhw", weight.double(), z)
    >>> reference = wpt.inverse(bands + bias.double().view(1, -1, 1, 1))
    >>> decoder(z).shape, bool(torch.allclose(decoder(z), reference))
    (torch.Size([1, 3, 40, 56]), True)
    """

    def __init__(self, stages, stride, line, taps, t0, head=None):
        self.stages = stages
        self.stride = stride
        self.line = line  # (levels, wavelet, boundary)
        self.taps = taps
        self.t0 = t0
        # Factored form: a 1x1 layer ``(weight, bias)`` to the bands, then
        # grouped passes only (see :func:`separable_decoder`).
        self.head = head

    def __call__(self, z):
        """Signals from ``z`` ``(N, D, *S)``; for the factored form also a
        sequence of tensors whose channels, stacked, make ``z`` (the 1x1 layer
        reads each in place: no stacked copy)."""
        if self.head is not None:
            z = _pointwise(z, *self.head)
        for stage in self.stages:
            out = self._correlate(z, stage)
            # The input goes before the interleaving copy is made: two
            # full-size arrays at a time, not three (a tile of a large
            # signal is tens of MB each).
            z = None
            z = _interleave(out, self.stride, stage.axis)
            del out
        return z

    def _correlate(self, z, stage):
        """One stage's outputs ``(n, outputs * s, ...)`` before the interleave."""
        ndim = z.dim() - 2
        dim = 2 + stage.axis
        positions = z.shape[dim]
        taps, t0 = self.taps, self.t0
        conv = _CONV[ndim]
        if self.line[2] == "periodization":
            pads = [(0, 0)] * ndim
            pads[stage.axis] = (t0, taps - 1 - t0)
            out = conv(_circular_pad(z, pads), stage.weight, stage.bias,
                       groups=stage.groups)  # fmt: skip
        else:
            rows = _synthesis_edge_rows(*self.line[:2], positions)
            if rows.right is None:
                out = self._edge(z, stage, rows.left)
            else:
                # Zero padding: the outputs that read it are edge outputs,
                # overwritten below with the exact rows.
                padding = [0] * ndim
                padding[stage.axis] = max(t0, taps - 1 - t0)
                first = ndim == 2 and stage.axis == 0
                shared = self._shared_filter(stage) if first else None
                if shared is not None:
                    out = _shared_conv(z, stage, shared, padding[stage.axis])
                else:
                    out = conv(z, stage.weight, stage.bias, padding=padding,
                               groups=stage.groups)  # fmt: skip
                out = out.narrow(dim, padding[stage.axis] - t0, positions)
                n_left, n_right = rows.left.shape[2], rows.right.shape[2]
                if n_left:
                    head = z.narrow(dim, 0, rows.left.shape[1])
                    out.narrow(dim, 0, n_left).copy_(self._edge(head, stage, rows.left))
                if n_right:
                    p = rows.right.shape[1]
                    tail = self._edge(z.narrow(dim, positions - p, p), stage,
                                      rows.right)  # fmt: skip
                    out.narrow(dim, positions - n_right, n_right).copy_(tail)
        return out

    def _shared_filter(self, stage):
        """``(weight, bias)`` of one group of a grouped stage whose groups all
        have that same filter (every grouped pass of :func:`separable_decoder`);
        None otherwise. Cached per stage."""
        cache = self.__dict__.setdefault("_shared_cache", {})
        key = id(stage.weight)
        if key not in cache:
            found = None
            g = stage.groups
            if g > 1:
                w = stage.weight.reshape(g, -1, *stage.weight.shape[1:])
                b = stage.bias.reshape(g, -1)
                if bool((w == w[:1]).all()) and bool((b == b[:1]).all()):
                    found = (w[0].contiguous(), b[0].contiguous())
            # the weight is kept with its entry, so that id() stays valid
            cache[key] = (stage.weight, found)
        return cache[key][1]

    def _edge(self, z, stage, rows):
        """Edge outputs ``(n, outputs * s, ..., m, ...)`` from ``rows``
        ``(n_bands, p, m, s)`` applied along the stage's axis: one batched
        product per group with weights cached per rows, dtype and device."""
        dim = 2 + stage.axis
        weight, bias = self._edge_weight(stage, rows, z.dtype, z.device)
        groups, ip, oms = weight.shape  # (g, inputs * p, outputs * m * s)
        n, p = z.shape[0], rows.shape[1]
        zs = z.movedim(dim, -1)  # (n, g * inputs, *rest, p)
        rest = zs.shape[2:-1]
        zs = zs.reshape(n, groups, ip // p, -1, p).permute(1, 0, 3, 2, 4)
        out = torch.bmm(zs.reshape(groups, -1, ip), weight) + bias
        m, s = rows.shape[2], rows.shape[3]
        out = out.reshape(groups, n, *rest, oms // (m * s), m, s)
        # -> (n, (g, output, phase), *rest, m): the conv's channel order.
        k = len(rest)
        out = out.permute(1, 0, 2 + k, 4 + k, *range(2, 2 + k), 3 + k)
        out = out.reshape(n, -1, *rest, m)
        return out.movedim(-1, dim)

    def _edge_weight(self, stage, rows, dtype, device):
        cache = self.__dict__.setdefault("_edge_cache", {})
        key = (id(stage.weight), id(rows), dtype, device)
        if key not in cache:
            mix = stage.mix.to(rows)  # (outputs_total, n_bands, inputs)
            outputs, nb, inputs = mix.shape
            per = outputs // stage.groups
            mix = mix.reshape(stage.groups, per, nb, inputs)
            w = torch.einsum("gobi,bpms->gipoms", mix, rows)
            w = w.reshape(stage.groups, inputs * rows.shape[1], -1)
            band_bias = stage.band_bias.to(rows).reshape(stage.groups, per, nb)
            b = torch.einsum("gob,bpms->goms", band_bias, rows) + stage.offset
            b = b.reshape(stage.groups, 1, -1)
            # rows come from an lru_cache, so id() stays valid while cached here.
            cache[key] = (rows, w.to(dtype=dtype, device=device).contiguous(),
                          b.to(dtype=dtype, device=device))  # fmt: skip
        return cache[key][1:]

    def to(self, *args, **kwargs):
        """A copy with every tensor moved/cast as by ``Tensor.to``."""
        stages = [
            s._replace(
                weight=s.weight.to(*args, **kwargs),
                mix=s.mix.to(*args, **kwargs),
                band_bias=s.band_bias.to(*args, **kwargs),
                bias=s.bias.to(*args, **kwargs),
            )
            for s in self.stages
        ]
        head = None
        if self.head is not None:
            head = tuple(t.to(*args, **kwargs) for t in self.head)
        return SeparableDecoder(
            stages, self.stride, self.line, self.taps, self.t0, head
        )


def separable_decoder(wpt, weight, bias, scale=1.0, offset=0.0, factored=False):
    """The :class:`SeparableDecoder` equal to ``scale * wpt.inverse(conv1x1(z,
    weight, bias)) + offset``, in float64 (``.to(dtype)`` casts it).

    Parameters
    ----------
    wpt : WaveletPacket
    weight : Tensor ``(C * n_bands, latent_dim)``
    bias : Tensor ``(C * n_bands,)``
    scale, offset : float
    factored : bool, default=False
        False: the 1x1 layer is fused into the first pass, one dense
        correlation of the ``latent_dim`` inputs with ``taps`` taps per output
        (band group, phase). True: the 1x1 layer runs alone, to the bands in
        the order the passes read them, and every pass is grouped, each
        output reading the ``2**J`` bands of its group only: per output of the
        first pass, ``latent_dim * taps`` MACs fused against ``latent_dim + 2**J
        * taps`` factored. Fusing pays for a few inputs (a closed form's 12
        latents: 1.5x faster on photos), factoring for many (the latents and
        the features of a residual decoder, 60: about 2x faster).
    """
    nd = wpt.signal_ndim
    g, t0 = _polyphase_synthesis(wpt.levels, wpt.wavelet, wpt.boundary)
    nb, s, taps = g.shape
    total, latent = weight.shape
    channels = total // wpt.n_bands
    band = torch.from_numpy(_band_index(wpt.levels, nd))  # (i_0, ..., i_{d-1})
    w = weight.to(torch.float64).reshape(channels, wpt.n_bands, latent)[:, band]
    b = bias.to(torch.float64).reshape(channels, wpt.n_bands)[:, band]
    # First pass, along axis 0: the outputs are (c, i_1, ...) and the bands i_0.
    mix = (w * scale).movedim(1, -2).reshape(-1, nb, latent)  # (c i_1.., i_0, l)
    band_bias = (b * scale).movedim(1, -1).reshape(-1, nb)
    head, first = None, 0
    if factored:
        # The 1x1 layer to the bands in the order (c, i_1.., i_0): each group
        # of the first (now grouped) pass reads its nb adjacent channels.
        head = (mix.reshape(-1, latent).contiguous(), band_bias.flatten())
        stages = []
    else:
        weight0 = torch.einsum("obl,brt->orlt", mix, g).reshape(-1, latent, taps)
        offset0 = float(offset) if nd == 1 else 0.0
        bias0 = torch.einsum("ob,brt->or", band_bias, g).reshape(-1) + offset0
        kshape = [1] * nd
        kshape[0] = taps
        stages = [
            _SynthesisStage(
                weight0.reshape(-1, latent, *kshape),
                mix,
                band_bias,
                offset0,
                bias0,
                0,
                1,
            )
        ]
        first = 1
    # Grouped passes: each group's bands into phases.
    for axis in range(first, nd):
        groups = channels * nb ** (nd - 1 - axis)
        offset_a = float(offset) if axis == nd - 1 else 0.0
        kshape = [1] * nd
        kshape[axis] = taps
        weight_a = g.permute(1, 0, 2).repeat(groups, 1, 1)  # (groups * s, nb, K)
        eye = torch.eye(nb, dtype=torch.float64).expand(groups, nb, nb)
        stages.append(
            _SynthesisStage(
                weight_a.reshape(groups * s, nb, *kshape),
                eye.contiguous(),
                torch.zeros((groups, nb), dtype=torch.float64),
                offset_a,
                torch.full((groups * s,), offset_a, dtype=torch.float64),
                axis,
                groups,
            )
        )
    return SeparableDecoder(
        stages, s, (wpt.levels, wpt.wavelet, wpt.boundary), taps, t0, head
    )
