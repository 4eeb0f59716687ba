"""Enhancement channels: any rate from one model.

A model's ``latent_dim`` projection caps its quality: past some rate, finer
quantiser steps (rate control's gain) buy bytes and no decibels
(``benchmarks/results/rate_control.md``: the shipped 16x model gained 0.03 dB
from 0.6 to 0.9 bpp). A codec with ``enhancement_dim = k`` also holds ``k``
linear channels ``E`` ``(k, n_bands)``, orthonormal rows in the model's
(normalised) wavelet packet domain, orthogonal to its linear decoder's range:
the principal directions of what its decoder leaves out, fitted on the
training signals (:func:`fit_enhancement`). Rate control (``compress(X,
target_bpp=...)`` / ``target_psnr``) codes them beside the latents at the
same gain, as ``s E analysis(x)`` (``s``, the enhancement scale, gives them
twice the base channels' quantiser step: :data:`STEP_RATIO`), drops the
trailing channels that round to 0 everywhere (the blob records how many it
kept: format 5), and keeps the better of that and the model's own blob
(``_rate``). The
decoder replaces the ``E``-component of its bands by the coded one::

    bands = L z + P (b + N(z)) + E_k^T e / s,   P = I - E_k^T E_k

(``L z + b``: the linear path, ``N``: the residual path, ``e``: the first ``k``
enhancement latents). A closed form's ``E`` are its next principal
components, so it then decodes as a closed form with ``latent_dim + k``
latents would; a trained decoder keeps its own estimate outside ``E_k``. The
base latents are the model's own, so ``transform``, the blobs without
enhancement and the model's fingerprint for them do not change.
"""

import math

import numpy as np
import torch

from ._networks import RefinedDecoder, _gain_factor
from ._synthesis import separable_decoder
from ._ties import deadzone_round, exact_rounding

__all__ = [
    "STEP_RATIO",
    "EnhancedDecoder",
    "encode_enhancement",
    "enhancement_encoder",
    "fit_enhancement",
    "trim",
]

#: The enhancement channels' quantiser step against the geometric mean of the
#: base channels' (in the bands), as ``1 / STEP_RATIO``: twice as coarse.
#: Chosen with rgb-16x on 384x384 crops of the bundled fit photos (training
#: photos) through ``target_bpp`` 0.2-0.9: against equal steps (1.0), +0.08 to
#: +0.33 dB of PSNR at 0.2-0.6 bpp, -0.10 dB at 0.9, and MS-SSIM up at every
#: rate (0.9269 -> 0.9305 at 0.2 bpp, 0.9696 -> 0.9757 at 0.6): a sparse, fine
#: enhancement latent draws a coloured speck at low rates. 0.7 and 0.35 were
#: close, 0.25 worse.
STEP_RATIO = 0.5
# Positions (latent grid) per batch of the covariance: ~100 MB of float64
# bands for an RGB model at levels=3.
_POSITIONS = 2**16


@torch.no_grad()
def fit_enhancement(module, signals, k):
    """Set ``module``'s enhancement channels from ``signals``.

    Parameters
    ----------
    module : WallocAutoencoder
        Fitted, on the CPU, built with ``enhancement_dim >= k``.
    signals : iterable of ndarray ``(n, C, *S)``
        Training signals in model units, padded to multiples of the stride.
    k : int
        Channels to fit (the module's ``enhancement_dim``).
    """
    lin = module.decoder.linear.weight.flatten(1).double()  # (nb, D)
    basis, _ = torch.linalg.qr(lin)  # range of the linear decoder
    nb = lin.shape[0]
    cov = torch.zeros((nb, nb), dtype=torch.float64)
    for x in signals:
        step = max(1, _POSITIONS // _positions(x, module))
        for start in range(0, len(x), step):
            t = torch.as_tensor(x[start : start + step], dtype=torch.float32)
            r = _residual_bands(module, t)  # (nb, P)
            r -= basis @ (basis.T @ r)
            cov += r @ r.T
    values, vectors = torch.linalg.eigh(cov)
    e = vectors[:, torch.argsort(values, descending=True)[:k]].T  # (k, nb)
    # Orthogonal to the linear path to float64 precision, rows orthonormal.
    e -= (e @ basis) @ basis.T
    q, _ = torch.linalg.qr(e.T)
    e = q.T * torch.sign(torch.diagonal(q.T @ e.T)).unsqueeze(1)
    # The base channels' quantiser step in the bands: a latent unit moves the
    # bands by |L_c| / latent_scale; the enhancement's by 1 / s.
    norms = lin.norm(dim=0).clamp_min(1e-12) / module.latent_scale.double()
    scale = STEP_RATIO / float(torch.exp(torch.log(norms).mean()))
    module.enhancement.copy_(e.to(module.enhancement.dtype))
    module.enhancement_scale.fill_(scale)


def _positions(x, module):
    return max(1, math.prod(x.shape[2:]) // module.stride ** (x.ndim - 2))


def _residual_bands(module, x):
    """Bands the decoder misses for signals ``x``: ``(n_bands, positions)``
    float64, at the model's own quantiser (gain 0)."""
    y = module.analysis(x)
    q = module.encode(x, "symbols")
    d = module.decoder(module.bottleneck.expand(q) / module.latent_scale)
    r = (y - d).double()
    return r.movedim(1, 0).reshape(r.shape[1], -1)


def enhancement_encoder(module, dtype=torch.float32):
    """The separable encoder of the enhancement latents ``s E analysis(x)``
    (before companding) from raw samples, normalisation folded in."""
    e = module.enhancement.double()
    return module.fused_projection(
        e,
        torch.zeros(len(e), dtype=torch.float64),
        module.enhancement_scale.double(),
        dtype,
    )


def encode_enhancement(
    module, fused, x, z, gain_steps, latent_bits, deadzone, first=None
):
    """Integer enhancement latents of ``x`` (``z = fused(x)``, one signal,
    ``first`` its first stage output) at a blob's gain and bits, rounded as
    its base latents are."""
    steps = torch.as_tensor([gain_steps], dtype=torch.int64)
    bottleneck = module._bottleneck(latent_bits)
    if module.rounds_exactly():
        ties = exact_rounding(fused, module)
        tol = ties.tolerance(x)
        gain = _gain_factor(steps, tol)
        return ties.round(bottleneck, z, x, gain, tol, deadzone, first)
    u = bottleneck.compand(z * _gain_factor(steps, z))
    return deadzone_round(u, deadzone)


def trim(q):
    """``q`` ``(k, *g)`` without its trailing channels of zeros only."""
    nonzero = q.reshape(len(q), -1).any(axis=1)
    kept = int(np.flatnonzero(nonzero)[-1]) + 1 if nonzero.any() else 0
    return q[:kept]


class EnhancedDecoder:
    """Expanded latents ``(n, D + k, *g)`` (base, then the first ``k``
    enhancement channels, gain undone) to signals, for inference."""

    def __init__(self, module, k, dtype=torch.float32):
        self.latent_dim = module.encoder.out_channels
        e = module.enhancement[:k].double()  # (k, nb)
        scale = module.enhancement_scale.double()
        decoder = module.decoder
        lin = decoder.linear.weight.flatten(1).double() / module.latent_scale.double()

        def outside(w):  # w without its component along E_k (the bands axis)
            return w - e.T @ (e @ w)

        bias = decoder.linear.bias.double()
        columns = [lin, e.T / scale]
        refine = decoder.refine is not None and not decoder._refine_is_zero()
        self.features = None
        # The decoder's own estimate of the enhancement latents, s E_k (bias +
        # N(z)): a channel coded 0 keeps it, clipped to the zero bin.
        predict = None
        if refine:
            last = decoder.refine[-1]
            self.features = RefinedDecoder(module, dtype).features
            columns.append(outside(last.weight.flatten(1).double()))
            bias = bias + last.bias.double()
            predict = scale * e @ last.weight.flatten(1).double()  # (k, width)
            self.predict = predict.to(dtype)
        self.predict_bias = (scale * e @ bias).to(dtype)  # (k,)
        weight = torch.cat(columns, dim=1)
        self.synthesis = separable_decoder(
            module.wpt,
            weight,
            outside(bias.unsqueeze(1)).squeeze(1),
            float(module.data_scale),
            float(module.data_offset),
            factored=True,
        ).to(dtype)

    def __call__(self, z, zero_bound=None):
        """Signals from expanded latents ``z``; with ``zero_bound`` (the
        largest ``|z|`` that rounds to 0 at the blob's gain), enhancement
        latents coded 0 take the decoder's own estimate clipped to
        ``[-zero_bound, zero_bound]`` instead of 0: every value of the zero
        bin is as consistent with the blob, and the estimate is the better
        guess (+0.5 dB at 0.15 bpp on held-out photos with rgb-16x)."""
        with torch.no_grad():
            d = self.latent_dim
            f = None if self.features is None else self.features(z[:, :d])
            if zero_bound is not None:
                view = (1, -1) + (1,) * (z.dim() - 2)
                guess = self.predict_bias.to(z.device).view(view)
                if f is not None:
                    w = self.predict.to(z.device)
                    guess = torch.einsum("kc,nc...->nk...", w, f) + guess
                guess = guess.expand_as(z[:, d:]).clamp(-zero_bound, zero_bound)
                ext = torch.where(z[:, d:] == 0, guess, z[:, d:])
                z = torch.cat([z[:, :d], ext], dim=1)
            return self.synthesis(z if f is None else (z, f))

    def to(self, *args, **kwargs):
        """Moved/cast in place, as a module's ``to``; returns itself."""
        if self.features is not None:
            self.features = self.features.to(*args, **kwargs)
            self.predict = self.predict.to(*args, **kwargs)
        self.predict_bias = self.predict_bias.to(*args, **kwargs)
        self.synthesis = self.synthesis.to(*args, **kwargs)
        return self
