"""The torch wavelet packet transform against PyWavelets, node by node."""

import numpy as np
import pytest
import pywt
import torch

from sklearn_walloc._wavelets import (
    WaveletPacket,
    apply_fused,
    band_paths,
    fused_encoder,
    resolve_wavelet,
    separable_encoder,
)

CASES = [
    (1, (64,)),
    (1, (24,)),
    (2, (32, 24)),
    (2, (16, 16)),
]


def _pywt_bands(x, wavelet, levels, ndim):
    cls = pywt.WaveletPacket if ndim == 1 else pywt.WaveletPacket2D
    wp = cls(x, wavelet, mode="periodization", maxlevel=levels)
    return np.stack([wp[path].data for path in band_paths(levels, ndim)])


@pytest.mark.parametrize("wavelet", ["bior4.4", "haar", "db3", "sym4", "bior2.2"])
@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("ndim,shape", CASES)
def test_matches_pywavelets_node_by_node(wavelet, levels, ndim, shape, rng):
    wpt = WaveletPacket(levels, wavelet, ndim)
    x = rng.standard_normal((2, 3, *shape))
    y = wpt(torch.from_numpy(x)).numpy()
    assert y.shape == (2, 3 * wpt.n_bands, *[s // 2**levels for s in shape])
    for n in range(2):
        for c in range(3):
            ref = _pywt_bands(x[n, c], wavelet, levels, ndim)
            got = y[n, c * wpt.n_bands : (c + 1) * wpt.n_bands]
            np.testing.assert_allclose(
                got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max()
            )


@pytest.mark.parametrize("ndim,shape", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_perfect_reconstruction(ndim, shape, dtype, tol, rng):
    wpt = WaveletPacket(3, "bior4.4", ndim)
    x = torch.from_numpy(rng.standard_normal((3, 2, *shape))).to(dtype)
    y = wpt(x)
    assert y.dtype == dtype
    assert torch.allclose(wpt.inverse(y), x, atol=tol)


def test_band_order_is_pywavelets_natural_order():
    assert band_paths(1, 2) == ["a", "h", "v", "d"]
    assert band_paths(2, 1) == ["aa", "ad", "da", "dd"]
    wp = pywt.WaveletPacket2D(np.zeros((8, 8)), "haar", maxlevel=2)
    assert band_paths(2, 2) == [n.path for n in wp.get_level(2, "natural")]


def test_gradients_flow_and_are_exact(rng):
    wpt = WaveletPacket(2, "db2", 2).double()
    x = torch.from_numpy(rng.standard_normal((1, 1, 8, 8))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: wpt.inverse(wpt(t) ** 2), (x,))


def test_signals_shorter_than_the_filter_wrap_like_pywavelets(rng):
    # 4 samples, 10-tap filters: the periodic extension wraps several times.
    x = rng.standard_normal((1, 1, 4, 4))
    y = WaveletPacket(2, "bior4.4", 2)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y[0], _pywt_bands(x[0, 0], "bior4.4", 2, 2), atol=1e-10)


@pytest.mark.parametrize("ndim,shape", [*CASES, (2, (8, 8))])
@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("wavelet", ["bior4.4", "db3"])
def test_fused_encoder_equals_two_step_path(ndim, shape, levels, wavelet, rng):
    # (8, 8) at 3 levels: the 64-tap composite filter wraps around 8 samples.
    wpt = WaveletPacket(levels, wavelet, ndim)
    x = torch.from_numpy(rng.standard_normal((2, 3, *shape)))
    weight = torch.from_numpy(rng.standard_normal((5, 3 * wpt.n_bands)))
    bias = torch.from_numpy(rng.standard_normal(5))
    two_step = torch.einsum("ok,nk...->no...", weight, wpt(x))
    two_step = two_step + bias.view(1, -1, *[1] * ndim)
    # The single strided convolution with the composite filter...
    kernel, offset = fused_encoder(wpt, weight, bias)
    taps = pywt.Wavelet(wavelet).dec_len
    assert kernel.shape[-1] == (taps - 1) * (2**levels - 1) + 1
    fused = apply_fused(x, kernel, bias, offset, 2**levels)
    torch.testing.assert_close(fused, two_step, rtol=1e-10, atol=1e-10)
    # ...and the same filter factorised into one strided correlation per axis.
    separable = separable_encoder(wpt, weight, bias)
    assert len(separable.stages) == ndim
    torch.testing.assert_close(separable(x), two_step, rtol=1e-10, atol=1e-10)


def test_separable_encoder_costs_a_fraction_of_the_single_kernel():
    # RGB at 16x: 12 latents from 3 * 64 bands, bior4.4, 3 levels.
    wpt = WaveletPacket(3, "bior4.4", 2)
    weight, bias = torch.ones(12, 3 * 64), torch.zeros(12)
    kernel, _ = fused_encoder(wpt, weight, bias)
    dense = kernel.shape[0] * kernel[0].numel() / 8**2
    assert dense == 2304
    assert separable_encoder(wpt, weight, bias).macs_per_sample == 3 * 64 + 288


@pytest.mark.parametrize("bad", ["nope", "cmor1.5-1.0", "gaus1", 3])
def test_unknown_or_continuous_wavelet_is_refused(bad):
    with pytest.raises(ValueError, match="wavelet"):
        resolve_wavelet(bad)
