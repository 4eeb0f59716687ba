"""The entropy bottleneck: Gaussian-CDF companding to a bounded integer range.

A latent ``z`` is squashed to ``u = 2m (Phi(z / s) - 1/2)`` so that ``|u| < m``
with ``m = 2**(b-1) - 1 + 0.5 - 1e-3``; rounding ``u`` then yields integers in
``[-(2**(b-1) - 1), 2**(b-1) - 1]``. During training, additive uniform noise stands
in for rounding (a differentiable proxy); the decoder inverts the companding.
The constants follow the WaLLoC paper: ``s = (2**(b-1) - 1) / 1.85``.
"""

import math

import torch

__all__ = ["Bottleneck", "LaplaceRate", "latent_range"]

_EPS = 1e-4


def latent_range(latent_bits):
    """Largest integer magnitude a latent can take, ``2**(latent_bits-1) - 1``."""
    return 2 ** (int(latent_bits) - 1) - 1


class Bottleneck(torch.nn.Module):
    """Companding quantiser with one ``quantize(z, mode)`` entry point.

    Parameters
    ----------
    latent_bits : int
        Bits per latent; integers lie in ``[-K, K]`` with ``K = 2**(b-1) - 1``.

    Examples
    --------
    >>> import torch
    >>> bn = Bottleneck(8)
    >>> q = bn.quantize(torch.tensor([-1e9, -3.0, 0.0, 40.0, 1e9]), "symbols")
    >>> q.tolist()
    [-127.0, -4.0, 0.0, 56.0, 127.0]
    """

    def __init__(self, latent_bits=8):
        super().__init__()
        k = latent_range(latent_bits)
        self.latent_bits = int(latent_bits)
        self.scale = k / 1.85
        self.bound = k + 0.5 - 1e-3

    def compand(self, z):
        """Map real latents into ``(-bound, bound)``."""
        return self.bound * torch.erf(z / (self.scale * math.sqrt(2.0)))

    def expand(self, u):
        """Inverse of :meth:`compand`, clamped so the extremes stay finite."""
        lim = 1.0 - 2.0 * _EPS
        t = torch.clamp(u / self.bound, -lim, lim)
        return self.scale * math.sqrt(2.0) * torch.erfinv(t)

    def quantize(self, z, mode, generator=None):
        """Compand and quantise.

        Parameters
        ----------
        z : Tensor
        mode : {"noise", "symbols"}
            ``"noise"`` adds uniform noise in ``[-0.5, 0.5)`` (training);
            ``"symbols"`` rounds to the integer latents (inference).
        generator : torch.Generator, optional
            Source of the training noise, for reproducibility.
        """
        u = self.compand(z)
        if mode == "noise":
            noise = torch.rand(
                u.shape, generator=generator, device=u.device, dtype=u.dtype
            )
            return u + noise - 0.5
        if mode == "symbols":
            return torch.round(u)
        raise ValueError(f"mode must be 'noise' or 'symbols', got {mode!r}.")


class LaplaceRate(torch.nn.Module):
    """Differentiable estimate of the bits of (noisy) latents.

    Each latent channel is modelled as a zero-mean Laplace distribution with a
    learned scale, discretised to unit bins: ``p(u) = F(u + 1/2) - F(u - 1/2)``.
    It only shapes training (the ``rate_weight`` term); the entropy coder uses
    its own adaptive integer tables.

    Parameters
    ----------
    channels : int
        Number of latent channels.
    signal_ndim : int
        Spatial axes after the channel axis.
    """

    def __init__(self, channels, signal_ndim):
        super().__init__()
        self.signal_ndim = signal_ndim
        self.log_scale = torch.nn.Parameter(torch.zeros(channels))

    @torch.no_grad()
    def initialise(self, q):
        """Start each scale at the mean absolute value of latents ``q``."""
        dims = [0, *range(2, q.dim())]
        self.log_scale.copy_(torch.log(q.abs().mean(dim=dims) + 0.5))

    def bits(self, u):
        """Total estimated bits of ``u`` of shape ``(N, channels, *S)``."""
        b = self.log_scale.exp().view(1, -1, *[1] * self.signal_ndim)

        def cdf(t):
            return 0.5 + 0.5 * torch.sign(t) * (1 - torch.exp(-t.abs() / b))

        # Use the tail nearer zero for precision: p = F(|u|+1/2) - F(|u|-1/2).
        a = u.abs()
        p = cdf(a + 0.5) - cdf(a - 0.5)
        return -torch.log2(p.clamp_min(1e-9)).sum()
