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
1 in 500 for photos, get their reference values recomputed in float64 from the
samples they read. Blobs so depend on the input alone; only a reference that
lands within float64 noise (about 1e-13) of a tie could still differ, and both
roundings are then equally good.

Images have a cheaper reference where the encoder's first stage output is at
hand (``first``: :func:`latents_and_first`). Their 2D encoder runs a grouped
stage along the rows (each output one 57-tap correlation of one channel),
then a dense stage down the columns (each output a sum of 24 x 57 products,
which oneDNN splits differently on different thread counts: every thread
difference measured came from it). The first stage's float32 output was the
same on 1 to 4 threads and in other processes, so the reference of a latent
not solved at an end is the dense stage in float64 over the first stage's
values it reads (:meth:`ExactRounding._from_first`): a gather of ``24 x 57``
floats and one product, about a seventh of the samples' window. The band
shrinks with it (``FIRST_TOL_UNITS``). A large image encoded in strips
computes its first stage again, in bands of rows, for its near ties
(``_encode_tiles.StripImage.first_rows``): per row the same values.

The recomputation is exact, not windowed: along each axis a latent position is
*inside* (one correlation with the inner filter), on an *edge row* of the
symmetric analysis (:func:`~sklearn_walloc._wavelets._edge_rows`), or *solved*
at the end (the least-squares latents of :mod:`~sklearn_walloc._edges`). Inside
both axes, a latent is one product of its 57x57 support with the stages'
composite filter; edge rows go through the separable stages with their rows;
a solved latent is ``P u - Q z_before - p0``, a linear functional of the last
samples of the axis (and of the other axis' analysis), precomputed once per
model and axis length class (:meth:`ExactRounding._end`). A latent solved along
both axes (the corner) is the axis-1 solve on the axis-0 solved latents before
it. Positions of one class share their weights, so each class is one gather of
the samples and two or three batched products. ``tests/test_ties.py`` checks
the values against the full reference at every position (every shipped model,
periodic models, odd and short axes).
"""

import math

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from ._edges import _PROBE, EdgeEncoder
from ._wavelets import _edge_rows

__all__ = [
    "ExactRounding",
    "deadzone_round",
    "exact_rounding",
    "latents_and_first",
    "tie_distance",
]

#: Tolerance in units of ``2**-24 * (max|x| * gain + max|bias|)`` of a signal,
#: the float32 rounding scale of its latents (``gain``: the product of the
#: stages' largest kernel l1 norms). The largest distance measured between the
#: float32 and float64 latents of the shipped models, 1 and 2 threads, was 6.2
#: such units (rgb-16x on the held-out photos; uniform-noise photos 4.6, audio
#: 3.9); 24 leaves a margin of about 4x and flags about 1 photo latent in 500
#: and 1 audio latent in 10,000. (Units per channel, from each channel's own
#: l1 norm, measured up to 9.6: no tighter bound there.)
TOL_UNITS = 24.0
#: The same for latents whose reference is the dense stage in float64 over the
#: first stage's float32 output (``first``): only the dense stage's float32
#: error is left, measured up to 3.5 units (rgb-16x on bundled, mate and noise
#: photos, 1 to 4 threads, ``benchmarks/exact_rounding.py``); 12 keeps a
#: margin of 3.4x and halves the latents recomputed.
FIRST_TOL_UNITS = 12.0
#: Images too (the default). A photo's near-tie latents (about 1 in 500) take
#: the reference of :meth:`ExactRounding.values`: where the encoder's first
#: (grouped) stage output is at hand (``first``, every in-memory image), the
#: dense stage in float64 over the ``G x 57`` first-stage values each reads
#: (the first stage's float32 output was identical at 1 to 4 threads and in
#: other processes: each value is one 57-tap correlation, which oneDNN's
#: grouped kernel does not split); else (large images
#: read in strips, ends solved by ``EdgeEncoder``) the float64 recomputation
#: from the samples. Measured on one thread (0.5 MP photo, rgb-16x):
#: ``transform`` 11.1 -> 15.9 ms CPU, where the samples-only recomputation
#: took 22 ms; without it, 1 latent in 920,000 (1 photo in 40) differed
#: between 1, 2, 3 and 4 threads (``benchmarks/exact_rounding.py``).
EXACT_IMAGES = True
# Rows of a large image's first stage computed at once for its near ties.
_FIRST_BAND = 256
# Whole references for signals whose near positions would read more samples.
_WHOLE = 4.0
# Samples gathered per batch of recomputation (16 MB in float64: about 200
# positions of rgb-16x; larger batches were up to 10% faster than 64).
_BATCH = 2**21


def tie_distance(u, deadzone=0.0):
    """Distance of companded latents ``u`` to the nearest boundary of
    :func:`deadzone_round`: ``|frac(u) - 1/2|``, and for ``|u| < 1`` the
    distance to ``1/2 + deadzone`` instead (``1/2`` is then no boundary)."""
    dist = torch.floor(u).sub_(u).add_(0.5).abs_()  # in place: millions of latents
    if deadzone:
        a = u.abs()
        dist = torch.where(a < 1, a.sub_(0.5 + deadzone).abs_(), dist)
    return dist


def deadzone_round(u, deadzone=0.0):
    """``u`` rounded to the nearest integer, except that ``|u| < 1/2 +
    deadzone`` gives 0: a wider zero bin, which the entropy coder codes in
    fewer bits than the distortion it adds (``benchmarks/deadzone.py``).
    Rounds ``u`` in place when ``deadzone`` is 0."""
    if not deadzone:
        return u.round_()
    zero = u.abs() < 0.5 + deadzone
    return u.round().masked_fill_(zero, 0)


def latents_and_first(fused, x):
    """``fused(x)`` and, for images, its first stage's output (which
    :meth:`ExactRounding.values` reads; None where there is none)."""
    if x.dim() == 4 and hasattr(fused, "first_stage_too"):
        return fused.first_stage_too(x)
    return fused(x), None


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
        # On the CPU: the recomputation is a few hundred small products.
        self.reference = fused.to(torch.float64).to("cpu")
        separable = fused.encoder if isinstance(fused, EdgeEncoder) else fused
        self.stride = separable.stride
        self.periodic = separable.line[2] != "symmetric"
        size = max(max(s.kernel.shape[2:]) for s in separable.stages)
        offset = separable.offset
        self.size, self.offset = size, offset
        self.solved = isinstance(fused, EdgeEncoder)
        self.separable = self.reference.encoder if self.solved else self.reference
        # Gain of the stages from max|x| to max|z| (l1 norms of their kernels).
        gain = 1.0
        for stage in separable.stages:
            gain *= float(stage.kernel.double().abs().flatten(1).sum(1).max())
        self.gain = gain
        self.bias_peak = float(separable.bias.double().abs().max())
        # The float64 reference's weights (the float32 encoder's, cast): the
        # grouped stage's inner filter along axis 1 (2D), the dense stage's
        # kernel and band mix along axis 0.
        sep = self.separable
        *grouped, last = sep.stages
        assert [s.axis for s in sep.stages] == list(reversed(range(len(sep.stages))))
        self.line_kernel = None
        if grouped:
            (stage,) = grouped
            nb = stage.kernel.shape[0] // stage.groups
            self.line_kernel = stage.kernel[:nb].reshape(nb, size).contiguous()
        self.kernel = last.kernel.reshape(*last.kernel.shape[:2], size).contiguous()
        self.mix = last.mix
        self.mix_flat = (
            self.mix.permute(2, 1, 0).reshape(-1, len(self.mix)).contiguous()
        )
        self.bias = sep.bias
        self.depth = fused.depth if self.solved else 0
        self.kernel_flat = self._flat(self.kernel)
        self._cache = {}

    def tolerance(self, x):
        """Per-signal bound ``(N,)`` float64 on ``|z32 - z_ref|``."""
        # max |x| without an |x| copy (amax / amin are also several times
        # faster than vector_norm(inf) or aminmax on channels-last photos).
        if isinstance(x, torch.Tensor):
            dims = tuple(range(1, x.dim()))
            x = x.detach()
            peak = torch.maximum(x.amax(dim=dims), x.amin(dim=dims).neg())
        else:  # a large image read from its source (``_encode_tiles.StripImage``)
            peak = x.peak()
        return TOL_UNITS * 2.0**-24 * (peak.double() * self.gain + self.bias_peak)

    def round(self, bottleneck, z, x, gain=None, tol=None, deadzone=0.0, first=None):
        """Integer latents (``z``'s dtype) of float32 latents ``z`` of ``x``,
        companded by ``bottleneck`` at float64 ``gain`` (``(N,)`` or None),
        rounded by :func:`deadzone_round`; ``first``: the encoder's first
        stage output for ``x`` (:func:`latents_and_first`), or None."""
        n = len(z)
        view = (n,) + (1,) * (z.dim() - 1)
        g = gain
        if g is None:
            g = torch.ones(n, dtype=torch.float64, device=z.device)
        tol = self.tolerance(x) if tol is None else tol
        # |du/dz| <= bound * sqrt(2/pi) / scale (the slope of erf at 0).
        slope = bottleneck.bound * math.sqrt(2 / math.pi) / bottleneck.scale
        band = tol * g * slope  # (N,): |u32 - u_ref| <= band
        # One pass in z's dtype decides every entry farther than band + slack
        # from a tie, slack bounding its distance to the float64 compand of
        # the same z (8 ulps of erf, the gain and the products; 64 taken):
        # both round alike there. The rest (about 1 in 1000) is redone in
        # float64, and the entries within band of a tie take the reference.
        slack = 64 * torch.finfo(z.dtype).eps / 2 * bottleneck.bound
        u = bottleneck.compand(z * g.to(z.dtype).view(view))
        maybe = tie_distance(u, deadzone) <= (band + slack).view(view)
        q = deadzone_round(u, deadzone)
        if not bool(maybe.any()):
            return q
        at = maybe.nonzero(as_tuple=True)
        u = bottleneck.compand(z[at].double() * g[at[0]])
        near = torch.zeros_like(maybe)
        dist = tie_distance(u, deadzone)
        near[at] = dist <= band[at[0]]
        q[at] = deadzone_round(u, deadzone).to(q.dtype)  # u rounded in place
        if first is None and hasattr(x, "first_rows"):
            first = x  # a large image computes its own first stage
        if first is not None and len(x.shape) == 4 and bool(near.any()):
            # The first stage's reference leaves only the dense stage's
            # float32 error: positions it serves are near within a narrower
            # band (FIRST_TOL_UNITS of TOL_UNITS).
            grid = [s // self.stride for s in x.shape[2:]]
            pos = np.stack([at[0].numpy(), at[2].numpy(), at[3].numpy()], 1)
            fast = torch.from_numpy(self._first_serves(pos, grid))
            narrow = band[at[0]] * (FIRST_TOL_UNITS / TOL_UNITS)
            near[at] &= ~fast | (dist <= narrow)
        if bool(near.any()):
            index = near.any(dim=1).nonzero()  # (F, 1 + ndim): signal, position
            at = (index[:, 0], slice(None), *index[:, 1:].T)
            zr = self.values(x, index, first)  # (F, D)
            ur = bottleneck.compand(zr * g[index[:, 0]][:, None])
            rounded = deadzone_round(ur, deadzone).to(q.dtype)
            q[at] = torch.where(near[at], rounded, q[at])
        return q

    def peak(self, z, x, tol=None, first=None):
        """``max |z_ref|`` per signal ``(N,)`` float64: the float32 peak can
        change with the threads, and gain decisions are thresholds on it."""
        tol = self.tolerance(x) if tol is None else tol
        mag = z.detach().abs().amax(dim=1).double()  # (N, *G)
        peak = mag.flatten(1).amax(1)
        view = (len(z),) + (1,) * (mag.dim() - 1)
        index = (mag >= (peak - 2 * tol).view(view)).nonzero()
        values = self.values(x, index, first).abs().amax(dim=1)
        return torch.zeros_like(peak).scatter_reduce(
            0, index[:, 0], values, "amax", include_self=True
        )

    @torch.no_grad()
    def values(self, x, index, first=None):
        """Reference latents ``(F, D)`` float64 of ``x`` at latent positions
        ``index`` ``(F, 1 + ndim)`` (signal, then position per axis).

        Each latent is computed from the samples it reads: positions of the
        same class along every axis (inner, edge row, solved end) share their
        weights, so each class is one gather and a few batched products.
        With ``first``, the float32 output of the encoder's first (grouped)
        stage, whose values do not depend on the thread count, a position
        inside along axis 0 is its last (dense) stage in float64 over the
        ``G x size`` first-stage values it reads (:meth:`_from_first`).
        """
        if x.device.type != "cpu" or index.device.type != "cpu":
            first = None if first is None else first.cpu()
            return self.values(x.cpu(), index.cpu(), first).to(index.device)
        grid = [s // self.stride for s in x.shape[2:]]
        d = self._latent_dim()
        out = torch.empty((len(index), d), dtype=torch.float64)
        if not len(index):
            return out
        if first is None and hasattr(x, "first_rows"):
            first = x  # a large image computes its own first stage
        if first is not None and len(grid) == 2:
            fast = self._first_serves(index.numpy(), grid)
            if fast.any():
                rows = torch.from_numpy(np.flatnonzero(fast))
                out[rows] = self._from_first(first, index[rows].numpy(), grid)
                rest = torch.from_numpy(np.flatnonzero(~fast))
                if len(rest):
                    out[rest] = self.values(x, index[rest])
                return out
        # Bookkeeping in NumPy: a few hundred positions, dozens of tiny ops.
        index = index.cpu().numpy()
        # A signal whose positions would read more than _WHOLE times its
        # samples (a flat photo whose every latent sits near a tie, a silent
        # clip's peak) is cheaper as one whole reference.
        reads = np.bincount(index[:, 0], minlength=len(x)) * x.shape[1]
        whole = reads * self.size ** len(grid) > _WHOLE * math.prod(x.shape[1:])
        for n in np.flatnonzero(whole).tolist():
            rows = np.flatnonzero(index[:, 0] == n)
            z = self._whole_reference(x, n)
            out[torch.from_numpy(rows)] = z[
                (slice(None), *torch.from_numpy(index[rows, 1:].T))
            ].T
        if whole.any():
            keep = np.flatnonzero(~whole[index[:, 0]])
            if len(keep):
                out[torch.from_numpy(keep)] = self.values(
                    x, torch.from_numpy(index[keep])
                )
            return out
        axes = [self._classify(index[:, 1 + a], m, a) for a, m in enumerate(grid)]
        key = np.zeros(len(index), dtype=np.int64)
        for kind, _, _ in axes:  # one integer per class tuple (classes < 16)
            key = key * 16 + kind
        order = np.argsort(key, kind="stable")
        cuts = np.flatnonzero(np.diff(key[order])) + 1
        for rows in np.split(order, cuts):
            code = int(key[rows[0]])
            group = [code // 16 ** (len(grid) - 1 - a) % 16 for a in range(len(grid))]
            reads = x.shape[1] * math.prod(
                self._width(min(c, 2), m, a)
                for a, (c, m) in enumerate(zip(group, grid))
            )
            batch = max(1, _BATCH // reads)
            for part in np.split(rows, range(batch, len(rows), batch)):
                at = [(s[part], e[part]) for _, s, e in axes]
                z = self._group(x, index[part], group, at, grid)
                out[torch.from_numpy(part)] = z
        return out

    def _first_serves(self, index, grid):
        """Which positions (NumPy ``(F, 3)``) :meth:`_from_first` computes:
        every one not solved at the end of an axis (``EdgeEncoder``)."""
        kind0, _, _ = self._classify(index[:, 1], grid[0], 0)
        kind1, _, _ = self._classify(index[:, 2], grid[1], 1)
        return (kind0 < 2) & (kind1 < 2)

    def _from_first(self, first, index, grid):
        """Latents ``(F, D)`` float64 at positions ``index`` (NumPy), none
        solved, from the first stage's float32 output ``first`` ``(N, G, H,
        w)``: the ``G x width`` values each reads along axis 0, then the
        dense stage in float64 (its kernel inside; on an edge row, the row
        of the exact symmetric analysis and the stage's band mix)."""
        out = torch.empty((len(index), self._latent_dim()), dtype=torch.float64)
        kind, start, row = self._classify(index[:, 1], grid[0], 0)
        for k in (0, 1):
            sel = np.flatnonzero(kind == k)
            if not len(sel):
                continue
            width = self._width(k, grid[0], 0)
            n, s, p1 = index[sel, 0], start[sel], index[sel, 2]
            win = torch.from_numpy(_first_windows(first, n, s, p1, width))
            if k == 0:  # (F, G, size)
                z = win.flatten(1) @ self._dense_flat() + self.bias
            else:  # edge rows (F, nb, width) on the window, then the mix
                coef = self._rows(grid[0], row[sel]) @ win.transpose(1, 2)
                z = coef.flatten(1) @ self.mix_flat + self.bias
            out[torch.from_numpy(sel)] = z
        return out

    def _dense_flat(self):
        """The dense stage's kernel as ``(G * size, D)`` float64."""
        if getattr(self, "_dense", None) is None:
            self._dense = self.kernel.reshape(len(self.kernel), -1).T.contiguous()
        return self._dense

    def _whole_reference(self, x, n):
        """The reference latents ``(D, *G)`` of the whole signal ``x[n]``."""
        if isinstance(x, torch.Tensor):
            return self.reference(x[n : n + 1].double())[0]
        return x.reference(self.reference)[0]

    def _classify(self, p, m, axis):
        """Class, first sample and edge-table row of positions ``p`` (NumPy)
        on an axis of ``m`` positions. Class 0: one correlation with the inner
        filter; 1: an edge row (``_table``); ``2 + k``: solved at the end
        (EdgeEncoder), the ``k``-th of the last ``depth`` positions."""
        start = p * self.stride - self.offset
        zero = np.zeros_like(p)
        if self.periodic:
            return zero, start, zero
        n_left, n_right, width, _ = self._table(m)
        left, right = p < n_left, p >= m - n_right
        start = np.where(left, 0, np.where(right, m * self.stride - width, start))
        row = np.where(left, p, np.where(right, p - (m - n_right) + n_left, 0))
        kind = (left | right).astype(np.int64)
        if self.solved and m >= _PROBE:
            k = p - (m - self.depth)
            if (k >= 0).any():
                end = m * self.stride - self._width(2, m, axis)
                kind = np.where(k >= 0, 2 + k, kind)
                start = np.where(k >= 0, end, start)
        return kind, start, row

    def _group(self, x, index, group, at, grid):
        """Reference latents ``(F, D)`` of positions of one class per axis."""
        n = index[:, 0]
        if len(grid) == 2 and group[0] >= 2 and group[1] >= 2:
            return self._corner(x, index, group, grid)
        widths = [self._width(c, m, a) for a, (c, m) in enumerate(zip(group, grid))]
        z = _gather(x, n, [s for s, _ in at], widths)  # (F, C, w_0, ...) float64
        f = len(index)
        if not any(group):  # inside: one product with the composite filter
            return z.flatten(1) @ self._composite() + self.bias
        if len(grid) == 2 and group[1] >= 2:  # solved along axis 1 (last column)
            end = self._end(1, grid[1])
            k = group[1] - 2
            if group[0] == 0:
                return z.flatten(1) @ end["inner"][k] + end["bias"][k]
            rows = self._rows(grid[0], at[0][1])  # (F, nb, w_0)
            coef = rows @ z.movedim(2, 1).flatten(2)  # (F, nb, C * R)
            return coef.flatten(1) @ end["edge"][k] + end["bias"][k]
        if len(grid) == 2:  # the grouped stage along axis 1: (F, C, w_0, nb)
            if group[1] == 0:
                z = z @ self.line_kernel.T
            else:
                rows = self._rows(grid[1], at[1][1])
                z = z @ rows.transpose(1, 2)[:, None]
        if group[0] == 0:  # the dense stage inside
            return z.flatten(1) @ self.kernel_flat + self.bias
        if group[0] == 1:  # edge rows, then the stage's mix of their bands
            rows = self._rows(grid[0], at[0][1])  # (F, nb, w_0)
            coef = rows @ z.movedim(2, 1).reshape(f, z.shape[2], -1)
            return coef.flatten(1) @ self.mix_flat + self.bias
        end = self._end(0, grid[0])
        k = group[0] - 2
        return z.flatten(1) @ end["dense"][k] + end["bias"][k]

    def _composite(self):
        """The stages' composite filter ``(C * size**ndim, D)`` float64."""
        if getattr(self, "_composite_filter", None) is None:
            *grouped, _ = self.separable.stages
            k = self.kernel  # (D, G, r)
            for stage in grouped:  # 2D: (D, C * nb, r) -> (D, C, r, k)
                c = stage.groups
                k = k.reshape(len(k), c, -1, self.size)
                k = torch.einsum("ocbr,bk->ocrk", k, self.line_kernel)
            self._composite_filter = k.reshape(len(k), -1).T.contiguous()
        return self._composite_filter

    def _width(self, c, m, axis):
        if c == 0:
            return self.size
        if c == 1:
            return self._table(m)[2]
        return self._end(axis, m)["width"]

    def _flat(self, kernel):
        """Dense-stage weights ``(D, G, w)`` as ``(C * w * nb, D)`` matching
        the grouped stage's output ``(F, C, w, nb)`` (2D), ``(C * w, D)``
        (1D)."""
        d, g, w = kernel.shape
        if self.line_kernel is None:
            return kernel.reshape(d, -1).T.contiguous()
        nb = len(self.line_kernel)
        k = kernel.reshape(d, g // nb, nb, w).permute(1, 3, 2, 0)
        return k.reshape(-1, d).contiguous()

    def _cached(self, key, build):
        cache = self._cache
        if key not in cache:
            if len(cache) > 256:  # many signal sizes: start over
                cache.clear()
            cache[key] = build()
        return cache[key]

    def _long(self, m):
        """``m``, or -1 for every axis long enough to share its edge rows."""
        rows = _edge_rows(*self.separable.line[:2], m * self.stride)
        return -1 if rows is _edge_rows(*self.separable.line[:2], 2**40) else m

    def _table(self, m):
        """Edge rows of an axis of ``m`` positions: ``(n_left, n_right, width,
        rows)``, ``rows`` ``(n_left + n_right, nb, width)`` float64, the
        first ``n_left`` read samples ``[0, width)``, the others the last
        ``width`` samples (zero-padded); a short axis has ``n_left = m``."""

        def build():
            length = m * self.stride
            rows = _edge_rows(*self.separable.line[:2], length)
            if rows.right is None:
                return m, 0, length, rows.left.permute(1, 0, 2).contiguous()
            (nb, n_left, p_left), (_, n_right, p_right) = (
                rows.left.shape,
                rows.right.shape,
            )
            width = min(max(p_left, p_right), length)
            table = torch.zeros((n_left + n_right, nb, width), dtype=torch.float64)
            table[:n_left, :, :p_left] = rows.left.permute(1, 0, 2)
            table[n_left:, :, width - p_right :] = rows.right.permute(1, 0, 2)
            return n_left, n_right, width, table

        return self._cached(("table", self._long(m)), build)

    def _rows(self, m, row):
        """Edge rows ``(F, nb, width)`` of table rows ``row`` (NumPy)."""
        return self._table(m)[3][torch.from_numpy(row)]

    def _at(self, p, m, kernel, mix):
        """First sample and weights ``(D, G, w)`` of a dense stage (``kernel``
        inside, ``mix`` on edge rows) at position ``p`` of ``m``."""
        n_left, n_right, width, table = self._table(m)
        if n_left <= p < m - n_right:
            return p * self.stride - self.offset, kernel
        row = p if p < n_left else p - (m - n_right) + n_left
        start = 0 if p < n_left else m * self.stride - width
        return start, torch.einsum("ogb,bw->ogw", mix, table[row])

    def _line_at(self, p, m):
        """First sample and weights ``(nb, w)`` of the grouped stage at
        position ``p`` of ``m``."""
        n_left, n_right, width, table = self._table(m)
        if n_left <= p < m - n_right:
            return p * self.stride - self.offset, self.line_kernel
        row = p if p < n_left else p - (m - n_right) + n_left
        return (0 if p < n_left else m * self.stride - width), table[row]

    def _end(self, axis, m):
        """The solved latents at the end of ``axis`` (``m`` positions) as
        linear functionals of the samples (:mod:`~sklearn_walloc._edges`):
        ``new = P u - Q z_before - p0``, with ``z_before`` the separable
        latents of the ``n_before`` positions before and ``u`` the samples
        (1D) or the other axis' analysis of the last ``n_samples``."""
        return self._cached(
            ("end", axis, self._long(m)), lambda: self._build_end(axis, m)
        )

    def _build_end(self, axis, m):
        solver = self.reference._solver(axis, "cpu", torch.float64)
        depth, n_before, n_s = solver.depth, solver.n_before, solver.n_samples
        d = self._latent_dim()
        length = m * self.stride
        first = [m - depth - n_before + t for t in range(n_before)]
        q = solver.Q.reshape(depth * d, n_before, d)
        bias = solver.p0.neg() - q.sum(1) @ self.bias
        if axis == 0:  # u: the samples (1D) or the grouped stage's output
            at = [self._at(p, m, self.kernel, self.mix) for p in first]
            width = length - min(min(s for s, _ in at), length - n_s)
            g = self.kernel.shape[1]
            dense = torch.zeros((depth * d, g, width), dtype=torch.float64)
            dense[:, :, width - n_s :] = solver.P.reshape(-1, n_s, g).transpose(1, 2)
            for t, (s, k) in enumerate(at):
                o = s - (length - width)
                dense[:, :, o : o + k.shape[2]] -= torch.einsum(
                    "od,dgw->ogw", q[:, t], k
                )
            dense = [self._flat(dense[i * d : (i + 1) * d]) for i in range(depth)]
            return {"width": width, "dense": dense, "bias": bias.chunk(depth)}
        # Axis 1: u is the axis-0 analysis of the last columns, applied by the
        # solver's fused 1D encoder (channels: column, then signal channel).
        at = [self._line_at(p, m) for p in first]
        width = length - min(min(s for s, _ in at), length - n_s)
        nb, c = len(self.line_kernel), self.kernel.shape[1] // len(self.line_kernel)
        lines = torch.zeros((n_before, nb, width), dtype=torch.float64)
        for t, (s, w) in enumerate(at):
            o = s - (length - width)
            lines[t, :, o : o + w.shape[1]] = w
        (stage,) = solver.fused.stages
        o = depth * d
        kernel = stage.kernel.reshape(o, n_s, c, -1)  # (o, column, C, rows)
        mix = stage.mix.reshape(o, n_s, c, -1)  # (o, column, C, nb)
        inner = torch.zeros((o, c, kernel.shape[3], width), dtype=torch.float64)
        inner[..., width - n_s :] = kernel.permute(0, 2, 3, 1)
        before = self.kernel.reshape(d, c, nb, -1)  # (D, C, nb_1, rows)
        inner -= torch.einsum("otd,dcbr,tbs->ocrs", q, before, lines)
        edge = torch.zeros((o, nb, c, width), dtype=torch.float64)
        edge[..., width - n_s :] = mix.permute(0, 3, 2, 1)
        before = self.mix.reshape(d, c, nb, -1)  # (D, C, nb_1, nb_0)
        edge -= torch.einsum("otd,dcbq,tbs->oqcs", q, before, lines)
        bias = solver.fused.bias - q.sum(1) @ self.bias
        fused = torch.zeros_like(edge)  # the corner's: its z_before are solved
        fused[..., width - n_s :] = mix.permute(0, 3, 2, 1)
        return {
            "width": width,
            "inner": [t.reshape(d, -1).T.contiguous() for t in inner.split(d)],
            "edge": [t.reshape(d, -1).T.contiguous() for t in edge.split(d)],
            "bias": bias.chunk(depth),
            "fused": [t.reshape(d, -1).T.contiguous() for t in fused.split(d)],
            "fused_bias": solver.fused.bias.chunk(depth),
            "q": [t.T.contiguous() for t in solver.Q.split(d)],
            "before": n_before,
        }

    def _corner(self, x, index, group, grid):
        """Latents solved along both axes: the solver of axis 1 on the
        solved latents of axis 0 before them (``_end(1)``'s ``fused``
        functional minus ``Q`` times those latents)."""
        m0, m1 = grid
        end = self._end(1, m1)
        k = group[1] - 2
        # The solved latents of the same row before the corner.
        before = m1 - self.depth - end["before"] + np.arange(end["before"])
        aux = np.repeat(index, len(before), axis=0)
        aux[:, 2] = np.tile(before, len(index))
        z = self.values(x, torch.from_numpy(aux)).reshape(len(index), -1)
        # The axis-1 solver's own term: its row is an edge row of axis 0.
        n_left, n_right, width, _ = self._table(m0)
        p = index[:, 1]
        row = p - (m0 - n_right) + n_left
        start = np.full_like(p, m0 * self.stride - width)
        w = [width, end["width"]]
        first = [start, np.full_like(p, m1 * self.stride - end["width"])]
        u = _gather(x, index[:, 0], first, w)  # (F, C, width, R)
        coef = self._rows(m0, row) @ u.movedim(2, 1).flatten(2)
        fused = coef.flatten(1) @ end["fused"][k] + end["fused_bias"][k]
        return fused - z @ end["q"][k]

    def _latent_dim(self):
        return self.separable.stages[-1].kernel.shape[0]


def _first_windows(first, n, starts, cols, width):
    """First-stage values ``(F, G, width)`` float64 of rows ``[start, start +
    width)`` (wrapping around) at column ``cols`` of signals ``n``: from the
    tensor ``first`` ``(N, G, H, w)``, or from a large image that computes
    its first stage for bands of rows (``_encode_tiles.StripImage``)."""
    if isinstance(first, torch.Tensor) and first.device.type != "cpu":
        # Gathered where it lies: a GPU's first stage never crosses whole.
        rows = torch.from_numpy((starts[:, None] + np.arange(width)) % first.shape[2])
        idx = [torch.from_numpy(a).to(first.device) for a in (n, cols)]
        win = first[idx[0][:, None], :, rows.to(first.device), idx[1][:, None]]
        return win.movedim(-1, 1).double().cpu().numpy()
    if isinstance(first, torch.Tensor):
        return _windows_along_rows(first.detach().numpy(), n, starts, cols, width)
    out = np.empty((len(n), first.shape[1] * first.n_bands, width))
    order = np.argsort(starts, kind="stable")
    sorted_starts = starts[order]
    i = 0
    while i < len(order):  # bands of _FIRST_BAND rows, each computed once
        lo = int(sorted_starts[i])
        j = int(np.searchsorted(sorted_starts, lo + _FIRST_BAND, side="left"))
        sel = order[i:j]
        hi = int(starts[sel].max()) + width
        block = first.first_rows(lo, hi).numpy()  # (1, G, hi - lo, w)
        zeros = np.zeros(len(sel), dtype=np.int64)
        out[sel] = _windows_along_rows(block, zeros, starts[sel] - lo, cols[sel], width)
        i = j
    return out


def _windows_along_rows(src, n, starts, cols, width):
    """``src[n, :, start : start + width, col]`` ``(F, G, width)`` float64
    (rows wrapping around the end)."""
    height = src.shape[2]
    if ((starts >= 0) & (starts + width <= height)).all():
        view = sliding_window_view(src, width, axis=2)  # (N, G, H', w, width)
        win = view[n, :, starts, cols]
    else:  # periodic borders: the window wraps around
        rows = (starts[:, None] + np.arange(width)) % height
        win = np.moveaxis(src[n[:, None], :, rows, cols[:, None]], -1, 1)
    return win.astype(np.float64)


def _gather(x, n, starts, widths):
    """:func:`_windows` of a tensor, or of a large image that gathers its own
    windows (``_encode_tiles.StripImage``)."""
    if isinstance(x, torch.Tensor):
        return _windows(x, n, starts, widths)
    return x.windows(n, starts, widths)


def _windows(x, n, starts, widths):
    """``x[n]`` float64 on the windows ``[start, start + width)`` of each
    spatial axis (wrapping around its end): ``(F, C, *widths)``; ``x`` on the
    CPU, ``n`` and ``starts`` NumPy arrays."""
    lengths = x.shape[2:]
    xn = x.detach().numpy()
    if all(((s >= 0) & (s + w <= m)).all() for s, w, m in zip(starts, widths, lengths)):
        # Slices, copied and cast at once: several times faster than indexing.
        out = np.empty((len(n), x.shape[1], *widths))
        for k, (i, *first) in enumerate(zip(n.tolist(), *[s.tolist() for s in starts])):
            out[k] = xn[
                (i, slice(None), *[slice(a, a + w) for a, w in zip(first, widths)])
            ]
        return torch.from_numpy(out)
    index = [n.reshape(-1, *[1] * len(starts))]
    for a, (s, w, m) in enumerate(zip(starts, widths, lengths)):
        shape = [len(s)] + [1] * len(starts)
        shape[1 + a] = w
        index.append(((s[:, None] + np.arange(w)) % m).reshape(shape))
    # Advanced indices around a slice: (F, *widths, C).
    return torch.from_numpy(
        np.moveaxis(xn[(index[0], slice(None), *index[1:])], -1, 1).astype(np.float64)
    )
