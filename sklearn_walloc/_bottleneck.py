"""The entropy bottleneck: Gaussian-CDF companding to a bounded integer range.

A latent ``z`` is squashed to ``u = 2m (Phi(z / s) - 1/2)`` so that ``|u| < m``
with ``m = 2**(b-1) - 1 + 0.5 - 1e-3``; rounding ``u`` then yields integers in
``[-(2**(b-1) - 1), 2**(b-1) - 1]``. During training, additive uniform noise stands
in for rounding (a differentiable proxy); the decoder inverts the companding.
The constants follow the WaLLoC paper: ``s = (2**(b-1) - 1) / 1.85``.
"""

import math

import torch

__all__ = ["Bottleneck", "latent_range"]

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
    [-127.0, -3.0, 0.0, 54.0, 127.0]
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
