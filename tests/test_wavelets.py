"""The torch wavelet packet transform against PyWavelets, node by node, for both
boundary rules; the fused (composite-filter) encoder against the two-step path."""

import numpy as np
import pytest
import pywt
import torch

from sklearn_walloc._synthesis import separable_decoder
from sklearn_walloc._wavelets import (
    WaveletPacket,
    _edge_rows,
    apply_fused,
    band_paths,
    default_boundary,
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
SYMMETRIC = ["bior4.4", "bior2.2", "bior6.8", "rbio4.4", "haar"]


def _pywt_bands(x, wavelet, levels, ndim):
    cls = pywt.WaveletPacket if ndim == 1 else pywt.WaveletPacket2D
    wp = cls(x, wavelet, mode="periodization", maxlevel=levels)
    return np.stack([wp[path].data for path in band_paths(levels, ndim)])


def _reflect_offset(wavelet):
    """Where the non-expansive coefficients sit in PyWavelets' expansive
    ``mode="reflect"`` output: the one offset that matches on a random signal."""
    x = np.random.default_rng(1).standard_normal(32)
    ours = (
        WaveletPacket(1, wavelet, 1, "symmetric")
        .double()(torch.from_numpy(x)[None, None])[0]
        .numpy()
    )
    ref = pywt.dwt(x, wavelet, mode="reflect")
    found = [
        s
        for s in range(len(ref[0]) - 15)
        if all(np.allclose(r[s : s + 16], o) for r, o in zip(ref, ours))
    ]
    assert len(found) == 1
    return found[0]


def _pywt_symmetric_bands(x, wavelet, levels, ndim):
    """Oracle: PyWavelets' reflect-mode DWT applied to every band at every
    level, each cut to its non-expansive half (the JPEG 2000 rule)."""
    s = _reflect_offset(wavelet)
    bands = [x]
    for _ in range(levels):
        nxt = []
        for b in bands:
            keep = tuple(slice(s, s + n // 2) for n in b.shape)
            if ndim == 1:
                nxt += [c[keep] for c in pywt.dwt(b, wavelet, mode="reflect")]
            else:
                a, details = pywt.dwt2(b, wavelet, mode="reflect")
                nxt += [c[keep] for c in (a, *details)]
        bands = nxt
    return np.stack(bands)


@pytest.mark.parametrize("wavelet", ["bior4.4", "haar", "db3", "sym4", "bior2.2"])
@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("ndim,shape", CASES)
def test_periodization_matches_pywavelets_node_by_node(
    wavelet, levels, ndim, shape, rng
):
    wpt = WaveletPacket(levels, wavelet, ndim, "periodization")
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


@pytest.mark.parametrize("wavelet", SYMMETRIC)
@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("ndim,shape", [*CASES, (2, (8, 40))])
def test_symmetric_matches_pywavelets_reflect_level_by_level(
    wavelet, levels, ndim, shape, rng
):
    wpt = WaveletPacket(levels, wavelet, ndim, "symmetric").double()
    x = rng.standard_normal((1, 2, *shape))
    y = wpt(torch.from_numpy(x)).numpy()
    for c in range(2):
        ref = _pywt_symmetric_bands(x[0, c], wavelet, levels, ndim)
        got = y[0, c * wpt.n_bands : (c + 1) * wpt.n_bands]
        np.testing.assert_allclose(got, ref, atol=1e-10)


def test_symmetric_borders_do_not_wrap_around():
    # A ramp: periodization sees a jump from the last sample back to the first,
    # so high-frequency energy appears at the ends; the symmetric extension sees
    # only a kink (the mirrored slope), more than 10x less detail.
    x = torch.linspace(0, 1, 64, dtype=torch.float64)[None, None]
    detail = {
        b: WaveletPacket(1, "bior4.4", 1, b).double()(x)[0, 1].abs()
        for b in ("symmetric", "periodization")
    }
    assert float(detail["periodization"][-1]) > 10 * float(detail["symmetric"].max())
    assert float(detail["symmetric"][1:-2].max()) < 1e-9  # interior: exact zero


@pytest.mark.parametrize("boundary", ["symmetric", "periodization"])
@pytest.mark.parametrize("ndim,shape", [*CASES, (1, (8,)), (2, (8, 16))])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_perfect_reconstruction(boundary, ndim, shape, dtype, tol, rng):
    wpt = WaveletPacket(3, "bior4.4", ndim, boundary)
    x = torch.from_numpy(rng.standard_normal((3, 2, *shape))).to(dtype)
    y = wpt(x)
    assert y.dtype == dtype
    assert y.shape[2:] == tuple(s // 8 for s in shape)  # non-expansive
    assert torch.allclose(wpt.inverse(y), x, atol=tol)


def test_default_boundary_is_symmetric_only_where_it_inverts():
    assert [default_boundary(w) for w in SYMMETRIC] == ["symmetric"] * len(SYMMETRIC)
    for w in ["db3", "sym4", "coif2", "bior3.3"]:
        assert default_boundary(w) == "periodization"
        assert WaveletPacket(2, w, 1).boundary == "periodization"
        with pytest.raises(ValueError, match="does not invert"):
            WaveletPacket(2, w, 1, "symmetric")
    assert WaveletPacket(2, "bior4.4", 1).boundary == "symmetric"
    with pytest.raises(ValueError, match="boundary"):
        WaveletPacket(2, "bior4.4", 1, "zero")


def test_band_order_is_pywavelets_natural_order():
    assert band_paths(1, 2) == ["a", "h", "v", "d"]
    assert band_paths(2, 1) == ["aa", "ad", "da", "dd"]
    wp = pywt.WaveletPacket2D(np.zeros((8, 8)), "haar", maxlevel=2)
    assert band_paths(2, 2) == [n.path for n in wp.get_level(2, "natural")]


@pytest.mark.parametrize("boundary", ["symmetric", "periodization"])
def test_gradients_flow_and_are_exact(boundary, rng):
    wpt = WaveletPacket(2, "bior2.2", 2, boundary).double()
    x = torch.from_numpy(rng.standard_normal((1, 1, 8, 8))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: wpt.inverse(wpt(t) ** 2), (x,))


def test_signals_shorter_than_the_filter_wrap_like_pywavelets(rng):
    # 4 samples, 10-tap filters: the periodic extension wraps several times.
    x = rng.standard_normal((1, 1, 4, 4))
    wpt = WaveletPacket(2, "bior4.4", 2, "periodization")
    y = wpt(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y[0], _pywt_bands(x[0, 0], "bior4.4", 2, 2), atol=1e-10)


@pytest.mark.parametrize(
    "ndim,shape", [*CASES, (2, (8, 8)), (1, (8,)), (1, (296,)), (2, (16, 1048))]
)
@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("wavelet", ["bior4.4", "db3", "haar", "rbio2.2", "bior5.5"])
def test_fused_encoder_equals_two_step_path(ndim, shape, levels, wavelet, rng):
    # (8, 8) at 3 levels: the 64-tap composite filter is longer than the signal;
    # 296 and 1048 are past the length from which edge rows are shared.
    # rbio2.2 and bior5.5: filters with more leading than trailing zero taps
    # (their grid once came out one short).
    wpt = WaveletPacket(levels, wavelet, ndim)
    x = torch.from_numpy(rng.standard_normal((2, 3, *shape)))
    weight = torch.from_numpy(rng.standard_normal((5, 3 * wpt.n_bands)))
    bias = torch.from_numpy(rng.standard_normal(5))
    two_step = torch.einsum("ok,nk...->no...", weight, wpt(x))
    two_step = two_step + bias.view(1, -1, *[1] * ndim)
    # The factorised composite filter, exact at the borders for both rules.
    separable = separable_encoder(wpt, weight, bias)
    assert len(separable.stages) == ndim
    torch.testing.assert_close(separable(x), two_step, rtol=1e-10, atol=1e-10)
    # The single strided convolution with the composite filter: exact
    # everywhere for the periodic rule, away from the borders for the other.
    kernel, offset = fused_encoder(wpt, weight, bias)
    taps = pywt.Wavelet(wavelet).dec_len
    assert kernel.shape[-1] == (taps - 1) * (2**levels - 1) + 1
    fused = apply_fused(x, kernel, bias, offset, 2**levels)
    if wpt.boundary == "symmetric":
        edge = -(-kernel.shape[-1] // 2**levels)
        inner = (slice(None), slice(None), *[slice(edge, -edge)] * ndim)
        fused, two_step = fused[inner], two_step[inner]
    torch.testing.assert_close(fused, two_step, rtol=1e-10, atol=1e-10)


def test_edge_rows_of_long_signals_are_shared_and_exact():
    # Long signals reuse the rows computed at a reference length; they must be
    # the rows of the actual length.
    shared = _edge_rows(3, "bior4.4", 4096)
    assert shared.left.shape[:2] == (8, 4) and shared.right.shape[:2] == (8, 5)
    line = WaveletPacket(3, "bior4.4", 1, "symmetric").double()
    p = shared.left.shape[2]
    eye = torch.zeros((p, 1, 4096), dtype=torch.float64)
    eye[torch.arange(p), 0, torch.arange(p)] = 1.0
    actual = line(eye)[:, :, :4].permute(1, 2, 0)
    torch.testing.assert_close(actual, shared.left, rtol=0, atol=1e-12)


def test_separable_encoder_costs_a_fraction_of_the_single_kernel():
    # RGB at 16x: 12 latents from 3 * 64 bands, bior4.4, 3 levels.
    wpt = WaveletPacket(3, "bior4.4", 2)
    weight, bias = torch.ones(12, 3 * 64), torch.zeros(12)
    kernel, _ = fused_encoder(wpt, weight, bias)
    dense = kernel.shape[0] * kernel[0].numel() / 8**2
    assert dense == 2304
    # 57 of the composite filters' 64 taps are not zero (PyWavelets pads the
    # 9-tap bior4.4 lowpass to 10): the factorised stages skip the rest.
    taps = 57
    assert separable_encoder(wpt, weight, bias).macs_per_sample == (
        3 * 8 * taps / 8 + 12 * 3 * 8 * taps / 8**2
    )


@pytest.mark.parametrize("bad", ["nope", "cmor1.5-1.0", "gaus1", 3])
def test_unknown_or_continuous_wavelet_is_refused(bad):
    with pytest.raises(ValueError, match="wavelet"):
        resolve_wavelet(bad)


@pytest.mark.parametrize(
    "ndim,shape", [(1, (8,)), (1, (300,)), (2, (4, 5)), (2, (40, 70)), (2, (90, 3))]
)
@pytest.mark.parametrize(
    "levels,wavelet", [(3, "bior4.4"), (1, "bior4.4"), (2, "db3"), (3, "haar")]
)
def test_fused_decoder_equals_linear_path_then_synthesis(
    ndim, shape, levels, wavelet, rng
):
    # The mirror of the fused encoder: 1x1 layer, packet synthesis, scale and
    # offset in one pass per axis, exact at the borders for both rules
    # (short grids are all border; 300 and 90 use the shared edge rows).
    wpt = WaveletPacket(levels, wavelet, ndim).double()
    z = torch.from_numpy(rng.standard_normal((2, 5, *shape)))
    weight = torch.from_numpy(rng.standard_normal((3 * wpt.n_bands, 5)))
    bias = torch.from_numpy(rng.standard_normal(3 * wpt.n_bands))
    bands = torch.einsum("kl,nl...->nk...", weight, z)
    two_step = 1.7 * wpt.inverse(bands + bias.view(1, -1, *[1] * ndim)) + 0.3
    fused = separable_decoder(wpt, weight, bias, 1.7, 0.3)
    torch.testing.assert_close(fused(z), two_step, rtol=1e-10, atol=1e-10)
    # Factored: the 1x1 layer alone, then grouped passes; the same operator,
    # also given the input channels as separate tensors (no stacked copy).
    factored = separable_decoder(wpt, weight, bias, 1.7, 0.3, factored=True)
    assert factored.head is not None and all(s.groups > 1 for s in factored.stages)
    torch.testing.assert_close(factored(z), two_step, rtol=1e-10, atol=1e-10)
    parts = (z[:, :2], z[:, 2:])
    torch.testing.assert_close(factored(parts), two_step, rtol=1e-10, atol=1e-10)
    for boundary in ("periodization",) if wavelet != "db3" else ():
        periodic = WaveletPacket(levels, wavelet, ndim, boundary).double()
        expected = periodic.inverse(bands + bias.view(1, -1, *[1] * ndim))
        got = separable_decoder(periodic, weight, bias, factored=True)(z)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
