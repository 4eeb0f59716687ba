"""Rounding the encoder's latents to the same integers on any thread count.

The inference encoder runs in float32 (oneDNN convolutions), whose summation
order, and so the last bits of every latent, can change with the number of
threads, the batch and the process. A latent whose companded value lands
within that noise of ``k + 1/2`` could then round either way: one such latent
in 20,000 made a blob differ between 1 and 2 threads.

:class:`ExactRounding` defines the integer latents as ``round(u_ref)``, with
``u_ref`` the companded latent of the *reference*: the same float32 encoder
evaluated in float64. The float32 latents decide every entry farther than a
tolerance from a tie (the tolerance bounds their distance to the reference,
with a wide margin); the few entries within it, about 1 in 10^4 for audio and
1 in 10^3 for photos, are recomputed in float64 on a small window of the signal
around them, which gives their reference values. Blobs so depend on the input
alone; only a reference that lands within float64 noise (about 1e-13) of a tie
could still differ, and both roundings are then equally good.

The window of a latent is a few latent positions wide along each axis: wide
enough that no position of it but the target reads an artificial window end
(the composite filter's reach, ``n_left`` / ``n_right`` positions), and, at the
real end of an axis where the least-squares edge latents
(:mod:`~sklearn_walloc._edges`) apply, the same end window as the full signal.
``tests/test_ties.py`` checks the windowed values against the full reference at
every position.
"""

import math

import torch

from ._edges import _PROBE, DEPTH, EdgeEncoder, _AxisSolver
from ._wavelets import _edge_rows

__all__ = ["ExactRounding", "exact_rounding"]

#: Tolerance in units of ``2**-24 * (max|x| * gain + max|bias|)`` of a signal,
#: the float32 rounding scale of its latents (``gain``: the product of the
#: stages' largest kernel l1 norms). The largest distance measured between the
#: float32 and float64 latents of the shipped models was 5 such units (uniform
#: noise photos; audio: under 1); 24 leaves a margin of about 5x and flags
#: about 1 photo latent in 500 and 1 audio latent in 10,000.
TOL_UNITS = 24.0
#: Images too? Off: the float64 recomputation of near-tie latents (whole-signal
#: references where a near tie falls in a least-squares last row or column)
#: halves a photo's ``compress`` speed today (1.2x -> 0.54x WebP's encoder on
#: the held-out photos), for latents that rounded alike in every test of 1 and
#: 2 threads, processes and dask workers. Audio pays nothing measurable and is
#: always exact (where the issue saw blobs differ).
EXACT_IMAGES = False
# Latents per batch of recomputation (bounds its memory).
_BATCH = 512


def exact_rounding(fused, module):
    """The :class:`ExactRounding` of inference encoder ``fused`` (cached on it)."""
    ties = fused.__dict__.get("_exact_rounding")
    if ties is None:
        ties = ExactRounding(module, fused)
        fused.__dict__["_exact_rounding"] = ties
    return ties


class ExactRounding:
    """Thread-independent rounding of an inference encoder's latents.

    Parameters
    ----------
    module : WallocAutoencoder
    fused : SeparableEncoder or EdgeEncoder
        The float32 inference encoder (:meth:`WallocAutoencoder.inference_encoder`).
    """

    def __init__(self, module, fused):
        self.fused = fused
        self.reference = fused.to(torch.float64)
        separable = fused.encoder if isinstance(fused, EdgeEncoder) else fused
        self.stride = separable.stride
        self.periodic = separable.line[2] != "symmetric"
        size = max(max(s.kernel.shape[2:]) for s in separable.stages)
        offset = separable.offset
        self.size, self.offset = size, offset
        self.solved = isinstance(fused, EdgeEncoder)
        self.separable = self.reference.encoder if self.solved else self.reference
        # Outputs within n_left / n_right positions of a window end read
        # samples beyond it.
        n_left = -(-offset // self.stride)
        n_right = max(-(-(size - offset) // self.stride), DEPTH)
        if not self.periodic:  # outputs given by edge rows (any long axis)
            rows = _edge_rows(*separable.line[:2], 64 * self.stride)
            n_left = max(n_left, rows.left.shape[1])
            n_right = max(n_right, rows.right.shape[1])
        self.before = n_left
        self.small = n_left + 1 + n_right
        self.large = self.small
        if isinstance(fused, EdgeEncoder):
            solver = _AxisSolver(module, 0, fused.depth)
            self.large = max(self.small, _PROBE, solver.n_before + DEPTH + n_left)
        # Gain of the stages from max|x| to max|z| (l1 norms of their kernels).
        gain = 1.0
        for stage in separable.stages:
            gain *= float(stage.kernel.double().abs().flatten(1).sum(1).max())
        self.gain = gain
        self.bias = float(separable.bias.double().abs().max())

    def tolerance(self, x):
        """Per-signal bound ``(N,)`` float64 on ``|z32 - z_ref|``."""
        peak = x.detach().abs().flatten(1).amax(1).double()
        return TOL_UNITS * 2.0**-24 * (peak * self.gain + self.bias)

    def round(self, bottleneck, z, x, gain=None, tol=None):
        """Integer latents (``z``'s dtype) of float32 latents ``z`` of ``x``,
        companded by ``bottleneck`` at float64 ``gain`` (``(N,)`` or None)."""
        n = len(z)
        view = (n,) + (1,) * (z.dim() - 1)
        g = gain
        if g is None:
            g = torch.ones(n, dtype=torch.float64, device=z.device)
        tol = self.tolerance(x) if tol is None else tol
        u = z.to(torch.float64, copy=True)
        u = bottleneck.compand(u.mul_(g.view(view)))
        # |du/dz| <= bound * sqrt(2/pi) / scale (the slope of erf at 0).
        slope = bottleneck.bound * math.sqrt(2 / math.pi) / bottleneck.scale
        band = (tol * g * slope).view(view)
        # |frac(u) - 1/2|, in place: a large photo has millions of latents.
        near = torch.floor(u).sub_(u).add_(0.5).abs_() <= band
        q = u.round_()
        if bool(near.any()):
            index = near.any(dim=1).nonzero()  # (F, 1 + ndim): signal, position
            zr = self.values(x, index)  # (F, D)
            ur = bottleneck.compand(zr * g[index[:, 0]][:, None])
            at = (index[:, 0], slice(None), *index[:, 1:].T)
            q[at] = torch.where(near[at], torch.round(ur), q[at])
        return q.to(z.dtype)

    def peak(self, z, x, tol=None):
        """``max |z_ref|`` per signal ``(N,)`` float64: the float32 peak can
        change with the threads, and gain decisions are thresholds on it."""
        tol = self.tolerance(x) if tol is None else tol
        mag = z.detach().abs().amax(dim=1).double()  # (N, *G)
        peak = mag.flatten(1).amax(1)
        view = (len(z),) + (1,) * (mag.dim() - 1)
        index = (mag >= (peak - 2 * tol).view(view)).nonzero()
        values = self.values(x, index).abs().amax(dim=1)
        return torch.zeros_like(peak).scatter_reduce(
            0, index[:, 0], values, "amax", include_self=True
        )

    @torch.no_grad()
    def values(self, x, index):
        """Reference latents ``(F, D)`` float64 of ``x`` at latent positions
        ``index`` ``(F, 1 + ndim)`` (signal, then position per axis).

        Each position is computed on its window; a signal with so many
        positions that their windows would outgrow it is computed whole.
        """
        grid = [s // self.stride for s in x.shape[2:]]
        out = torch.empty(
            (len(index), self._latent_dim()), dtype=torch.float64, device=x.device
        )
        if not len(index):
            return out
        # Per axis: 0 away from the borders (the latent is one correlation
        # with its support), 1 / 3 near the start / end (edge rows), 2 solved
        # at the end (EdgeEncoder: computed on a window of the signal).
        modes = torch.ones((len(index), len(grid)), dtype=torch.int64)
        for a, m in enumerate(grid):
            p = index[:, 1 + a].cpu()
            lo, hi = self._inner(m)
            # 1: near the start (or a short axis), 3: near the end.
            modes[:, a] = torch.where((p >= lo) & (p < hi), 0, 1)
            modes[:, a] = torch.where((p >= hi) & (hi > 0), 3, modes[:, a])
            if self.solved and m >= _PROBE:
                modes[:, a] = torch.where(p >= m - DEPTH, 2, modes[:, a])
        solved = (modes == 2).any(1).to(index.device)
        for mode in torch.unique(modes[~solved.cpu()], dim=0).tolist():
            rows = ((modes == torch.tensor(mode)).all(1)).nonzero()[:, 0]
            for part in rows.to(index.device).split(_BATCH):
                out[part] = self._separable(x, index[part], mode, grid)
        rest = solved.nonzero()[:, 0]
        if not len(rest):
            return out
        window = math.prod(min(m, self.large) for m in grid)
        counts = torch.bincount(index[rest, 0], minlength=len(x))
        whole = counts[index[rest, 0]] * window >= math.prod(grid)
        for n in torch.unique(index[rest[whole], 0]).tolist():
            rows = rest[index[rest, 0] == n]
            z = self.reference(x[n : n + 1].double())[0]
            out[rows] = z[(slice(None), *index[rows, 1:].T)].T
        rest = rest[~whole]
        # Per axis: 0 the whole axis, 1 an inner window, 2 the end window.
        kinds = torch.stack(
            [self._kind(index[rest, 1 + a], m) for a, m in enumerate(grid)], 1
        )
        for kind in torch.unique(kinds, dim=0).tolist():
            rows = rest[(kinds == torch.tensor(kind, device=x.device)).all(1)]
            for part in rows.split(_BATCH):
                axes, targets = [], []
                for a, (k, m) in enumerate(zip(kind, grid)):
                    start, length = self._start(index[part, 1 + a], m, k)
                    axes.append(self._samples(start, length, m))
                    targets.append((index[part, 1 + a] - start) % m)
                z = self.reference(_gather(x, index[part, 0], axes).double())
                out[part] = z[(torch.arange(len(part)), slice(None), *targets)]
        return out

    def _samples(self, start, length, m):
        """Sample indices ``(F, length * stride)`` of latent positions
        ``start + [0, length)`` (wrapping around ``m``)."""
        arange = torch.arange(length, device=start.device)
        positions = (start[:, None] + arange) % m
        offsets = torch.arange(self.stride, device=start.device)
        return (positions[:, :, None] * self.stride + offsets).flatten(1)

    def _separable(self, x, index, mode, grid):
        """Reference latents ``(F, D)`` at positions not solved at an end,
        through the stages of the separable encoder one axis at a time, each
        on the samples the latent reads along it: its support (mode 0, or a
        wrapped one with the periodic rule), else the edge rows of the
        symmetric analysis (mode 1), as the encoder computes them."""
        sep = self.separable
        axes, weights = [], []
        for a, (k, m) in enumerate(zip(mode, grid)):
            p = index[:, 1 + a]
            if k == 0 or self.periodic:
                first = p * self.stride - self.offset
                span = torch.arange(self.size, device=p.device)
                axes.append((first[:, None] + span) % (m * self.stride))
                weights.append(None)
                continue
            rows = _edge_rows(*sep.line[:2], m * self.stride)
            if rows.right is None:  # short axis: every output reads all of it
                w, first, at = rows.left, torch.zeros_like(p), p
            elif k == 1:
                w, first, at = rows.left, torch.zeros_like(p), p
            else:
                w, n_right = rows.right, rows.right.shape[1]
                first = torch.full_like(p, m * self.stride - w.shape[2])
                at = p - (m - n_right)
            span = torch.arange(w.shape[2], device=p.device)
            axes.append(first[:, None] + span)
            weights.append((w.to(x.device), at))  # (n_bands, outputs, samples)
        if any(mode) or self.periodic:
            z = _gather(x, index[:, 0], axes)
        else:  # the supports as strided views (much cheaper to gather)
            view, blocks = x, [index[:, 0], slice(None)]
            skip = -self.offset % self.stride
            for a in range(len(grid)):
                view = view.narrow(2 + a, skip, view.shape[2 + a] - skip)
                view = view.unfold(2 + a, self.size, self.stride)
                blocks.append(index[:, 1 + a] - (self.offset + skip) // self.stride)
            z = view[tuple(blocks)]
        z = z.double().contiguous()  # (F, C, n_0, ...)
        f = len(index)
        if not any(mode):  # one product with the composite filter
            return z.flatten(1) @ self._composite().T + sep.bias
        for stage in sep.stages:  # each consumes its axis, the last one left
            a, w = stage.axis, weights[stage.axis]
            if stage.mix is None:  # grouped: each channel into its 1D bands
                g = z.shape[1]
                if w is None:  # one batched product per channel
                    lines = z.shape[2:-1]
                    kernel = stage.kernel.reshape(g, -1, self.size).transpose(1, 2)
                    y = z.movedim(1, 0).reshape(g, -1, self.size) @ kernel
                    z = y.reshape(g, f, *lines, -1).movedim(-1, 2).movedim(0, 1)
                else:
                    rows, at = w
                    z = torch.einsum("fg...k,fbk->fgb...", z, rows[:, at].movedim(1, 0))
                z = z.flatten(1, 2)
            elif w is None:  # dense along axis 0
                z = z.flatten(1) @ stage.kernel.reshape(len(stage.kernel), -1).T
            else:
                rows, at = w
                mix = stage.mix.to(rows)  # (out, G, n_bands)
                edge = torch.einsum("ogb,bfk->fogk", mix, rows[:, at])
                z = torch.einsum("fgk,fogk->fo", z, edge)
        return z + sep.bias

    def _inner(self, m):
        """Positions ``[lo, hi)`` of an axis of ``m`` positions whose latents
        are one correlation with the composite filter: support inside the
        signal, no edge rows (symmetric rule), not solved at the end."""
        lo = -(-self.offset // self.stride)
        hi = m - (-(-(self.size - self.offset) // self.stride))
        if not self.periodic:
            rows = _edge_rows(*self.separable.line[:2], m * self.stride)
            if rows.right is None:
                return 0, 0
            lo, hi = max(lo, rows.left.shape[1]), min(hi, m - rows.right.shape[1])
        if self.solved and m >= _PROBE:
            hi = min(hi, m - DEPTH)
        return lo, hi

    def _composite(self):
        """The stages' composite filter ``(D, C * size**ndim)`` float64."""
        if getattr(self, "_composite_filter", None) is None:
            *grouped, last = self.separable.stages
            k = last.kernel.reshape(len(last.kernel), -1, self.size)  # (D, G, r)
            for stage in grouped:  # 2D: (D, C * nb, r) -> (D, C, r, k)
                c = stage.groups
                line = stage.kernel.reshape(c, -1, self.size)  # (C, nb, k)
                k = k.reshape(len(k), c, line.shape[1], self.size)
                k = torch.einsum("ocbr,cbk->ocrk", k, line)
            self._composite_filter = k.reshape(len(k), -1).contiguous()
        return self._composite_filter

    def _latent_dim(self):
        return self.separable.stages[-1].kernel.shape[0]

    def _kind(self, p, m):
        """Window kind of positions ``p`` on an axis of ``m`` positions: 0 the
        whole axis, 1 an inner window, 2 the end window (real end included)."""
        if m <= self.large:
            return torch.zeros_like(p)
        if self.periodic:
            return torch.ones_like(p)
        if self.solved and m >= _PROBE:
            # Only the last latents are solved (EdgeEncoder): they need the
            # end window the full signal has; the others an inner one.
            return 1 + (p >= m - DEPTH).to(p.dtype)
        return torch.ones_like(p)

    def _start(self, p, m, kind):
        """First position and length of windows of ``kind`` for positions ``p``."""
        if kind == 0 or m <= self.small:
            return torch.zeros_like(p), m
        if kind == 2:
            return torch.full_like(p, m - self.large), self.large
        if self.periodic:
            return p - self.before, self.small
        return (p - self.before).clamp(0, m - self.small), self.small


def _gather(x, n, axes):
    """``x[n]`` at sample indices ``axes`` (one ``(F, length)`` tensor per
    spatial axis): ``(F, C, *lengths)``, copying only those samples."""
    nd = len(axes)
    index = [n.view(-1, *[1] * nd)]
    for a, t in enumerate(axes):
        shape = [len(t)] + [1] * nd
        shape[1 + a] = t.shape[1]
        index.append(t.view(shape))
    return x[(index[0], slice(None), *index[1:])].movedim(-1, 1)
