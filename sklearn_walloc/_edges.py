"""Edge-optimised encoding: the last latents along each axis, by least squares.

With the symmetric boundary rule the last sample of an even-length axis is
highpass-centred, and the packet synthesis folds mirrored coefficients back onto
the last samples. The encoder's projection is optimal in the coefficient domain,
where the transform is (nearly) orthogonal; at the far end of an axis it is not,
and the last row and column of a photo decode 2-4 dB below the same lines coded
at the start of the axis (``benchmarks/borders.py``).

:class:`EdgeEncoder` re-chooses the latents of the last ``depth`` positions along
each axis as the least-squares fit of the signal's end by the decoder's linear
path, holding every other latent fixed. Only the encoder changes: the latents
are still integers on the same grid, so any decoder, and the blob format, are
unaffected, in the way a better JPEG encoder needs no new decoder.

The fit is exact and cheap because the packet transform is perfectly
reconstructing along every axis: after analysis along the *other* axes, the end
of the signal at one position of those axes depends only on the latents at that
position. Each axis is therefore a small dense problem, the same at every
position, solved once per model: the new latents are
``P u - Q z_above - p0``, with ``u`` the other-axes analysis of the last ``R``
samples and ``z_above`` the latents that reach them from before the end.
"""

import copy

import torch

from ._wavelets import SeparableEncoder, WaveletPacket, separable_encoder

__all__ = ["EdgeEncoder"]

#: Latent positions re-chosen at the end of each axis.
DEPTH = 1
# Probe grid length (latent positions) along the solved axis; the solution is
# used for grids at least this long, where the start's extension cannot reach
# the end's samples.
_PROBE = 16
_PROBED = 12  # latent positions probed at the end of the probe grid
_TOL = 1e-9


def _to_front(t, axis):
    """Move spatial ``axis`` to dim 2 (2D signals have one other axis, dim 3)."""
    return t if axis == 0 else t.transpose(2, 3)


class _AxisSolver:
    """Least-squares latents for the end of one spatial axis."""

    def __init__(self, module, axis, depth):
        d = module.signal_ndim
        self.axis = axis
        self.depth = depth
        self.other = (
            WaveletPacket(module.wpt.levels, module.wpt.wavelet, 1, module.wpt.boundary)
            if d == 2
            else None
        )
        latent_dim = module.encoder.out_channels
        # The decoder's linear path (the fused synthesis), in float64.
        decode = module.fused_decoder(torch.float64).to("cpu")
        # Probe grid: _PROBE positions along the axis, 2 along the other one
        # (the other axes' analysis undoes their synthesis exactly, so the
        # response at one position there is the response anywhere). Unit
        # latents at the last _PROBED positions; the first ones are too far
        # from the end to reach it (checked below).
        n_pos = _PROBE
        shape = (n_pos,) + ((2,) * (d - 1))
        eye = torch.eye(_PROBED * latent_dim + 1, dtype=torch.float64)[:, :-1]
        units = torch.zeros((len(eye), latent_dim, *shape), dtype=torch.float64)
        units[:, :, n_pos - _PROBED :, ...] = eye.reshape(
            len(eye), _PROBED, latent_dim, *(1,) * (d - 1)
        ).transpose(1, 2)
        grids = units if axis == 0 else units.transpose(2, 3)
        with torch.no_grad():
            u = self._analyse(decode(grids), axis)[:, 0]  # (B, S, U)
        base = u[-1]
        resp = u[:-1] - base  # (n_pos * L, S, U)
        n_samples = resp.shape[1]
        resp = resp.reshape(_PROBED, latent_dim, n_samples, -1)
        mag = resp.abs().amax(dim=(1, 3))  # (n_pos, S)
        tol = _TOL * float(mag.max())
        last = mag[-depth:].amax(dim=0) > tol
        first_row = int(torch.nonzero(last)[0])
        self.n_samples = n_samples - first_row
        reach = mag[:, first_row:].amax(dim=1) > tol
        first_pos = int(torch.nonzero(reach)[0])
        self.n_before = _PROBED - depth - first_pos
        if first_pos == 0:
            raise RuntimeError("edge probe too short for this wavelet and level")
        self.min_positions = n_pos

        def columns(r):  # (positions, L, R, U) -> (R*U, positions*L)
            return (
                r[:, :, first_row:]
                .permute(2, 3, 0, 1)
                .reshape(self.n_samples * r.shape[-1], -1)
            )

        B = columns(resp[_PROBED - depth :])
        A = columns(resp[first_pos : _PROBED - depth])
        c0 = base[first_row:].reshape(-1)
        # P = pinv(B): B has full column rank (the latents' responses at the
        # end are independent); solve the normal equations in float64.
        P = torch.linalg.solve(B.T @ B, B.T)
        self.P = P
        self.Q = P @ A
        self.p0 = P @ c0
        self.fused = None
        if self.other is not None:
            # P after the other axis' analysis is itself a 1x1 layer after a
            # 1D packet analysis of the strip's lines (channels: line, then
            # signal channel): one fused strided correlation, exact at the
            # other axis' borders, instead of an analysis then a product.
            self.fused = separable_encoder(self.other, P, -self.p0)

    def _analyse(self, x, axis):
        """``(N, C, *S)`` -> ``(N, Q, S_axis, U)``: other-axes analysis, with
        ``Q`` positions along the other axis and ``U`` channels."""
        x = _to_front(x, axis)
        if self.other is None:  # 1D: the samples themselves
            return x.permute(0, 2, 1)[:, None]
        n, c, s, w = x.shape
        y = self.other(x.permute(0, 2, 1, 3).reshape(n * s, c, w))
        y = y.reshape(n, s, y.shape[1], y.shape[2])
        return y.permute(0, 3, 1, 2)

    def to(self, device, dtype):
        out = copy.copy(self)
        out.P, out.Q, out.p0 = (t.to(device, dtype) for t in (self.P, self.Q, self.p0))
        if self.fused is not None:
            out.fused = self.fused.to(device).to(dtype)
        return out

    def __call__(self, x, z, first=None):
        """Write the least-squares latents into ``z`` (in place) given the
        samples ``x``; returns ``z``."""
        axis = self.axis
        m = z.shape[2 + axis]
        if m < self.min_positions:
            return z
        strip = x.narrow(2 + axis, x.shape[2 + axis] - self.n_samples, self.n_samples)
        zf = _to_front(z, axis)
        before = zf.narrow(2, m - self.depth - self.n_before, self.n_before)
        n = len(z)
        if self.fused is None:  # 1D: the samples themselves
            new = strip.permute(0, 2, 1).reshape(n, 1, -1) @ self.P.T - self.p0
            before = before.permute(0, 2, 1).reshape(n, 1, -1)
        elif first is not None:
            # The fused encoder's first stage already analysed every line
            # along the other (last) axis: the strip's u is its last rows.
            u = first.narrow(2, first.shape[2] - self.n_samples, self.n_samples)
            u = u.permute(0, 3, 2, 1).reshape(n, u.shape[3], -1)
            new = u @ self.P.T - self.p0
            before = before.permute(0, 3, 2, 1).reshape(n, new.shape[1], -1)
        else:
            lines = _to_front(strip, axis)
            lines = lines.permute(0, 2, 1, 3).reshape(n, -1, lines.shape[-1])
            new = self.fused(lines).transpose(1, 2)  # (N, Q, depth * L)
            before = before.permute(0, 3, 2, 1).reshape(n, new.shape[1], -1)
        new = new - before @ self.Q.T
        q = new.shape[1]
        new = new.reshape(n, q, self.depth, -1)
        # In place: z is the encoder's fresh output (EdgeEncoder owns it).
        if zf.ndim == 4:
            zf[:, :, m - self.depth :, :] = new.permute(0, 3, 2, 1)
        else:
            zf[:, :, m - self.depth :] = new[:, 0].permute(0, 2, 1)
        return _to_front(zf, axis)


class EdgeEncoder:
    """An inference encoder with least-squares latents at the end of each axis.

    Parameters
    ----------
    module : WallocAutoencoder
        A fitted module with the symmetric boundary rule.
    encoder : callable
        Its fused encoder (:meth:`WallocAutoencoder.fused_encoder`): samples
        ``(N, C, *S)`` to continuous latents ``(N, L, *G)``.
    depth : int, default=DEPTH
        Latent positions re-chosen at the end of each axis.

    Notes
    -----
    An axis is solved once the grid has at least ``_PROBE`` latent positions
    along it (128 samples at ``levels=3``); shorter axes keep the encoder's
    latents. Each axis' solution is computed on first use and cached.
    """

    def __init__(self, module, encoder, depth=DEPTH):
        self.module = module
        self.encoder = encoder
        self.depth = depth
        self._solvers = {}

    def to(self, *args, **kwargs):
        out = copy.copy(self)
        out.encoder = self.encoder.to(*args, **kwargs)
        out._solvers = self._solvers  # shared: cast per device and dtype at use
        return out

    def _solver(self, axis, device, dtype):
        key = (axis, str(device), dtype)
        if key not in self._solvers:
            base = self._solvers.get((axis, "cpu", torch.float64))
            if base is None:
                base = _AxisSolver(self.module, axis, self.depth)
                self._solvers[(axis, "cpu", torch.float64)] = base
            self._solvers[key] = base.to(device, dtype)
        return self._solvers[key]

    @torch.no_grad()
    def __call__(self, x):
        return self.first_stage_too(x)[0]

    def first_stage_too(self, x):
        """The latents of ``x`` and the encoder's first stage output (None
        for 1D signals), which exact rounding reads (``_ties``)."""
        first = None
        if x.dim() == 4 and isinstance(self.encoder, SeparableEncoder):
            z, first = self.encoder(x, keep_first=True)
        else:
            z = self.encoder(x)
        for axis in range(z.ndim - 2):
            if z.shape[2 + axis] >= _PROBE:
                solve = self._solver(axis, z.device, z.dtype)
                # The first stage ran along the last axis: it serves axis 0.
                z = solve(x.to(z.dtype), z, first if axis == 0 else None)
        return z, first
