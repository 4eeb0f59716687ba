"""sklearn_walloc.metrics: known values, reference implementations, bad input, and
agreement with what the estimators report."""

import math

import numpy as np
import pytest

from sklearn_walloc import WallocCodec
from sklearn_walloc.metrics import (
    bd_psnr,
    bd_rate,
    bits_per_pixel,
    bits_per_sample,
    compression_ratio,
    entropy_bits,
    ms_ssim,
    psnr,
    snr,
)


def _pair():
    """A smooth RGB test card and a noisy copy, 176x200 (MS-SSIM needs > 160)."""
    yy, xx = np.mgrid[0:176, 0:200]
    card = 127.5 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    x = card[..., None] * np.array([1.0, 0.8, 0.6])
    y = np.clip(x + np.random.default_rng(0).normal(0, 12, x.shape), 0, 255)
    return x, y


# ------------------------------------------------------------------ distortion
def test_psnr_known_values():
    x = np.zeros((3, 5))
    assert psnr(x, x + 1, data_range=1.0) == 0.0
    assert psnr(x, x + 0.1, data_range=1.0) == pytest.approx(20.0)
    assert psnr(x, x) == math.inf
    # 20 log10(255) for an error of one grey level.
    assert psnr(x, x + 1) == pytest.approx(20 * math.log10(255))


def test_psnr_of_uint8_does_not_wrap_around():
    a = np.array([0, 255], dtype=np.uint8)
    b = np.array([255, 0], dtype=np.uint8)
    assert psnr(a, b) == 0.0  # an error of 255 everywhere, not 1


def test_psnr_per_signal_is_one_value_per_row():
    x = np.zeros((3, 4, 4))
    y = x.copy()
    y[1] += 1
    y[2] += 10
    out = psnr(x, y, data_range=10.0, per_signal=True)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, [np.inf, 20.0, 0.0])
    assert psnr(x[1], y[1], data_range=10.0) == out[1]


def test_snr_known_values_and_scale_invariance():
    x = np.sin(np.linspace(0, 20, 1000))
    assert snr(x, 0.9 * x) == pytest.approx(20.0)
    assert snr(100 * x, 90 * x) == pytest.approx(20.0)
    assert snr(x, x) == math.inf
    stereo = np.stack([x, x[::-1]], axis=1).astype(np.float32)
    assert snr(stereo, 0.99 * stereo) == pytest.approx(40.0, abs=1e-3)


def test_ms_ssim_matches_pytorch_msssim():
    x, y = _pair()
    # pytorch_msssim.ms_ssim(data_range=255) on this pair, in float64 (1.0.0); the
    # gap of ~3e-7 is its float32 Gaussian window.
    assert ms_ssim(x, y) == pytest.approx(0.9486619097689344, abs=1e-6)
    assert ms_ssim(x[..., 0], y[..., 0]) == pytest.approx(0.9624200759376313, abs=1e-6)
    assert ms_ssim(x / 255, y / 255, data_range=1.0) == pytest.approx(ms_ssim(x, y))
    assert ms_ssim(x, x) == pytest.approx(1.0)
    # A brightness shift keeps the structure: worse PSNR than the noise, better
    # MS-SSIM.
    shifted = np.clip(x + 40, 0, 255)
    assert psnr(x, shifted) < psnr(x, y)
    assert ms_ssim(x, y) < ms_ssim(x, shifted) < 1.0


def test_ms_ssim_against_the_installed_reference():
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("pytorch_msssim")
    x, y = _pair()

    def t(a):
        return torch.from_numpy(a[:, :170]).permute(2, 0, 1)[None]

    expected = float(reference.ms_ssim(t(x), t(y), data_range=255))
    assert ms_ssim(x[:, :170], y[:, :170]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: psnr(np.zeros(3), np.zeros(4)), "same shape"),
        (lambda: psnr(np.zeros(0), np.zeros(0)), "empty"),
        (lambda: psnr(np.zeros(3), np.zeros(3), data_range=0), "data_range"),
        (lambda: psnr(np.zeros(3), np.zeros(3), data_range=True), "data_range"),
        (lambda: snr(np.zeros(3), np.zeros((3, 1))), "same shape"),
        (lambda: ms_ssim(np.zeros((100, 300)), np.zeros((100, 300))), "160"),
        (
            lambda: ms_ssim(np.zeros((2, 200, 200, 3)), np.zeros((2, 200, 200, 3))),
            "one image",
        ),
        (lambda: bits_per_sample([b"ab"], np.zeros((0, 3))), "no values"),
        (lambda: bits_per_sample(-1, np.zeros(3)), ">= 0"),
        (lambda: bits_per_pixel([b"ab"], np.zeros(5)), r"\(H, W\)"),
        (lambda: compression_ratio([b"ab"], np.zeros(3), source_bits=0), "source_bits"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="real numbers"):
        psnr(np.array(["a"]), np.array(["b"]))
    with pytest.raises(TypeError, match="blobs"):
        bits_per_sample(object(), np.zeros(3))


# ------------------------------------------------------------------------ rate
def test_entropy_bits_known_values_and_channel_axis():
    z = np.array([[0, 5], [1, 5], [0, 5], [1, 5]])
    assert entropy_bits(z) == 4.0  # channel 0: 4 fair coins; channel 1: constant
    assert entropy_bits(z.T, channel_axis=0) == 4.0
    # One channel of 8 equiprobable symbols: 3 bits each.
    assert entropy_bits(np.arange(8)[:, None]) == pytest.approx(24.0)


def test_rates_count_whole_blobs_over_every_value():
    photos = [np.zeros((10, 20, 3), np.uint8), np.zeros((30, 10, 3), np.uint8)]
    blobs = [b"x" * 25, b"y" * 50]  # 600 bits for 500 pixels, 1500 values
    assert bits_per_pixel(blobs, photos) == pytest.approx(1.2)
    assert bits_per_sample(blobs, photos) == pytest.approx(0.4)
    assert bits_per_sample(600, photos) == pytest.approx(0.4)
    assert compression_ratio(blobs, photos) == pytest.approx(20.0)
    assert compression_ratio(blobs, photos, source_bits=16) == pytest.approx(40.0)
    batch = np.zeros((2, 10, 10, 3))
    assert bits_per_pixel(b"x" * 25, batch) == 1.0
    assert bits_per_pixel(200, np.zeros((10, 20))) == 1.0


# ------------------------------------------------- agreement with the estimators
@pytest.fixture(scope="module")
def codec(small_photos):
    return WallocCodec(
        latent_dim=6, levels=2, max_iter=0, decoder_width=8, random_state=0
    ).fit(small_photos)


def test_score_is_the_mean_psnr_of_the_round_trip(codec, small_photos):
    X = np.stack([p[:40, :48] for p in small_photos])
    R = codec.inverse_transform(codec.transform(X))[:, :40, :48]
    R = np.clip(np.rint(R), 0, 255)  # a uint8 domain scores the uint8 output
    per_photo = [psnr(x.astype(np.float32), r) for x, r in zip(X, R)]
    assert codec.score(X) == pytest.approx(np.mean(per_photo), abs=1e-9)


def test_codec_rates_equal_the_metrics_on_its_blobs(codec, small_photos):
    blobs = codec.compress(small_photos)
    assert codec.bits_per_sample(small_photos) == bits_per_sample(blobs, small_photos)
    assert codec.compression_ratio(small_photos) == pytest.approx(
        compression_ratio(blobs, small_photos)
    )
    assert bits_per_pixel(blobs, small_photos) == pytest.approx(
        3 * codec.bits_per_sample(small_photos)
    )


# ----------------------------------------------------------------- Bjøntegaard
_RATE = np.array([0.1, 0.2, 0.35, 0.6, 1.0, 1.7])
_PSNR = 24 + 4.5 * np.log2(_RATE / 0.1) - 0.2 * np.log2(_RATE / 0.1) ** 2


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25])
def test_bd_rate_of_a_curve_scaled_in_rate_is_the_factor(method, factor):
    # Same qualities at `factor` times the rate: exactly (factor - 1) * 100 %,
    # whatever the shape of the curve (the log-rates differ by a constant).
    got = bd_rate(_RATE, _PSNR, factor * _RATE, _PSNR, method=method)
    assert got == pytest.approx(100 * (factor - 1), abs=1e-9)
    # The other way round gives the reciprocal factor.
    back = bd_rate(factor * _RATE, _PSNR, _RATE, _PSNR, method=method)
    assert back == pytest.approx(100 * (1 / factor - 1), abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("shift", [1.0, -0.5])
def test_bd_psnr_of_a_curve_shifted_in_quality_is_the_shift(method, shift):
    assert bd_psnr(_RATE, _PSNR, _RATE, _PSNR + shift, method=method) == (
        pytest.approx(shift, abs=1e-12)
    )
    # Identical curves: no difference either way.
    assert bd_rate(_RATE, _PSNR, _RATE, _PSNR, method=method) == pytest.approx(0)


def test_bd_points_can_come_in_any_order_and_counts_may_differ():
    order = np.array([3, 0, 5, 1, 4, 2])
    a = bd_rate(_RATE, _PSNR, 0.8 * _RATE[:5], _PSNR[:5])
    b = bd_rate(_RATE[order], _PSNR[order], 0.8 * _RATE[:5][::-1], _PSNR[:5][::-1])
    assert a == b
    assert isinstance(a, float) and isinstance(
        bd_psnr(_RATE, _PSNR, _RATE, _PSNR), float
    )


def test_bd_published_pair_matches_the_reference_implementation():
    # The x265 pair of FAU-LMS/bjontegaard's README (rate in kbit/s, PSNR in dB);
    # the values are that package's (1.3.0) pchip and cubic results, which it
    # states agree with the JVET CTC spreadsheet to 10 decimals (pchip).
    rate_a = [9487.76, 4593.60, 2486.44, 1358.24]
    psnr_a = [40.037, 38.615, 36.845, 34.851]
    rate_t = [9787.80, 4469.00, 2451.52, 1356.24]
    psnr_t = [40.121, 38.651, 36.970, 34.987]
    args = (rate_a, psnr_a, rate_t, psnr_t)
    assert bd_rate(*args) == pytest.approx(-4.417485350589045, abs=1e-8)
    assert bd_psnr(*args) == pytest.approx(0.11969278542479489, abs=1e-10)
    assert bd_rate(*args, method="cubic") == pytest.approx(-4.420462706026296, abs=1e-6)
    assert bd_psnr(*args, method="cubic") == pytest.approx(
        0.12040941911471303, abs=1e-9
    )
    # Their second pair, at high rates, where the two fits disagree.
    rate_a = [82472.76, 26875.24, 9487.76, 4593.6]
    psnr_a = [43.825, 41.404, 40.037, 38.615]
    rate_t = [99896.96, 33952.04, 9787.8, 4469.0]
    psnr_t = [44.731, 41.875, 40.121, 38.651]
    args = (rate_a, psnr_a, rate_t, psnr_t)
    assert bd_rate(*args) == pytest.approx(-4.47218200276197, abs=1e-8)
    assert bd_psnr(*args) == pytest.approx(0.08887484704747745, abs=1e-10)
    assert bd_rate(*args, method="cubic") == pytest.approx(-4.699437548106711, abs=1e-6)


def test_bd_rate_range_restricts_the_interval():
    # A test curve 10% cheaper below 0.5 bpp and 30% cheaper above: the window
    # picks the part it names.
    test_rate = np.where(_RATE < 0.5, 0.9, 0.7) * _RATE
    low = bd_psnr(_RATE, _PSNR, test_rate, _PSNR, rate_range=(0.1, 0.3))
    high = bd_psnr(_RATE, _PSNR, test_rate, _PSNR, rate_range=(0.7, 1.5))
    assert 0 < low < high
    full = bd_rate(_RATE, _PSNR, 0.8 * _RATE, _PSNR, rate_range=(0.15, 1.0))
    assert full == pytest.approx(-20.0)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((_RATE[:3], _PSNR[:3], _RATE, _PSNR), {}, "at least 4 points"),
        ((_RATE, _PSNR, _RATE[:3], _PSNR[:3]), {}, "rate_test has 3"),
        ((_RATE, _PSNR[:5], _RATE, _PSNR), {}, "same length"),
        ((_RATE, _PSNR[::-1], _RATE, _PSNR), {}, "must be monotone"),
        ((np.r_[_RATE[:5], _RATE[4]], _PSNR, _RATE, _PSNR), {}, "monotone"),
        ((-_RATE, _PSNR, _RATE, _PSNR), {}, "positive"),
        ((_RATE, np.r_[_PSNR[:5], np.nan], _RATE, _PSNR), {}, "finite"),
        ((_RATE, _PSNR, _RATE, _PSNR), {"method": "akima"}, "method"),
        ((_RATE, _PSNR, _RATE, _PSNR), {"rate_range": (1.0, 0.5)}, "rate_range"),
        ((_RATE, _PSNR, _RATE, _PSNR), {"rate_range": 0.5}, "rate_range"),
    ],
)
def test_bd_bad_input_is_a_value_error(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bd_rate(*args, **kwargs)
    with pytest.raises(ValueError, match=match):
        bd_psnr(*args, **kwargs)


def test_bd_ranges_that_do_not_overlap():
    with pytest.raises(ValueError, match="quality ranges do not overlap"):
        bd_rate(_RATE, _PSNR, _RATE, _PSNR + 30)
    with pytest.raises(ValueError, match="log-rate ranges do not overlap"):
        bd_psnr(_RATE, _PSNR, 100 * _RATE, _PSNR)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_psnr(_RATE, _PSNR, _RATE, _PSNR, rate_range=(5.0, 9.0))
