"""The companding quantiser."""

import pytest
import torch

from sklearn_walloc._bottleneck import Bottleneck, latent_range


@pytest.mark.parametrize("bits", [2, 4, 8, 12])
def test_symbols_are_integers_in_range(bits):
    bn = Bottleneck(bits)
    z = torch.linspace(-1e6, 1e6, 10001)
    q = bn.quantize(z, "symbols")
    k = latent_range(bits)
    assert torch.equal(q, q.round())
    assert q.min() == -k and q.max() == k
    assert (torch.diff(q) >= 0).all()


def test_expand_inverts_compand():
    bn = Bottleneck(8)
    z = torch.linspace(-2 * bn.scale, 2 * bn.scale, 1001, dtype=torch.float64)
    torch.testing.assert_close(bn.expand(bn.compand(z)), z, rtol=1e-6, atol=1e-6)
    # The clamp keeps the extremes finite.
    assert torch.isfinite(bn.expand(torch.tensor([-1e9, 1e9]))).all()


def test_noise_is_uniform_and_reproducible():
    bn = Bottleneck(8)
    z = torch.zeros(100_000)
    a = bn.quantize(z, "noise", torch.Generator().manual_seed(1))
    b = bn.quantize(z, "noise", torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.min() >= -0.5 and a.max() < 0.5
    assert abs(float(a.mean())) < 0.01 and abs(float(a.var()) - 1 / 12) < 0.002


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        Bottleneck(8).quantize(torch.zeros(2), "dequantize")
