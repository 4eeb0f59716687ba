"""Quality and rate measures for lossy compression.

Distortion: :func:`psnr`, :func:`snr` and :func:`ms_ssim` compare a signal with
its reconstruction. Rate: :func:`bits_per_sample`, :func:`bits_per_pixel` and
:func:`compression_ratio` count the coded bits of a list of blobs (or a number
of bits) against the signals they code, and :func:`entropy_bits` is the cost of
an ideal static per-channel code of integer latents, the baseline an entropy
coder is measured against. Codecs: :func:`bd_rate` and :func:`bd_psnr` are the
Bjøntegaard deltas between two rate-distortion curves.

Every function takes NumPy arrays (anything :func:`numpy.asarray` reads) and
returns Python floats, or a NumPy array where it says so.
"""

import math
from numbers import Real

import numpy as np

__all__ = [
    "bd_psnr",
    "bd_rate",
    "bits_per_pixel",
    "bits_per_sample",
    "compression_ratio",
    "entropy_bits",
    "ms_ssim",
    "psnr",
    "snr",
]


def _pair(x_true, x_pred):
    """Both arrays, and their difference in a floating type (float32 at least).

    Integer samples are subtracted after the cast (no wrap-around); the
    difference of float32 signals stays float32, as the estimators compute it.
    """
    x_true, x_pred = np.asarray(x_true), np.asarray(x_pred)
    if x_true.shape != x_pred.shape:
        raise ValueError(
            f"x_true and x_pred must have the same shape; got {x_true.shape} "
            f"and {x_pred.shape}."
        )
    if x_true.size == 0:
        raise ValueError("x_true and x_pred must not be empty.")
    dtype = np.result_type(x_true.dtype, x_pred.dtype, np.float32)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"x_true and x_pred must hold real numbers; got {x_true.dtype} and "
            f"{x_pred.dtype}."
        )
    return x_true, x_pred, x_true.astype(dtype, copy=False) - x_pred.astype(dtype)


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}.")
    return float(value)


def _db(num, den):
    """``10 log10(num / den)``, ``inf`` where ``den`` is 0.

    Scalars go through :func:`math.log10`, which the benchmark reports were
    computed with (NumPy's ``log10`` can differ from it in the last bit).
    """
    if np.ndim(den) == 0:
        return math.inf if den == 0 else 10 * math.log10(num / den)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(num / den)


def _round_trip_db(x, y, metric, data_range, domain=None):
    """Per-signal PSNR or SNR of decoded batch ``y`` against ``x`` (``(n, ...)``);
    in a full-scale integer ``domain`` (a sample dtype name), of ``y`` rounded
    and clipped to its range.

    The error is floored at ``1e-12`` times the reference, and a silent signal
    decoded exactly scores 120 dB (``WallocTransformer.score``).
    """
    if domain is not None and np.dtype(domain).kind in "iu":
        info = np.iinfo(domain)
        y = np.clip(np.rint(y), float(info.min), float(info.max))
    mse = ((y - x).astype(np.float64) ** 2).reshape(len(x), -1).mean(axis=1)
    if metric == "psnr":
        ref = np.full(len(x), float(data_range) ** 2)
    else:
        ref = (x.astype(np.float64) ** 2).reshape(len(x), -1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(ref / np.maximum(mse, ref * 1e-12))
    return np.where((ref == 0) & (mse == 0), 120.0, db)


def psnr(x_true, x_pred, *, data_range=255.0, per_signal=False):
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)``.

    Parameters
    ----------
    x_true : array-like
        The original signal(s), any shape.
    x_pred : array-like of the same shape
        The reconstruction.
    data_range : float, default=255.0
        The peak: 255 for 8-bit images, 1 for signals in [0, 1] or audio in
        [-1, 1) (:class:`~sklearn_walloc.WallocTransformer` uses its fitted
        ``data_range_``).
    per_signal : bool, default=False
        If True, the first axis indexes signals and one PSNR per signal is
        returned.

    Returns
    -------
    psnr : float or ndarray of shape (n_signals,)
        ``inf`` where the reconstruction is exact. The error is computed in the
        inputs' floating type (float32 at least: integer samples are cast
        first, so they never wrap around) and averaged in float64.

    See Also
    --------
    snr : The same ratio against the signal's own energy.
    ms_ssim : A structural similarity measure for images.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.metrics import psnr
    >>> x = np.full((4, 4), 100, dtype=np.uint8)
    >>> round(psnr(x, x + 1), 4)  # an error of 1 everywhere: 20 log10(255)
    48.1308
    >>> psnr(np.zeros((2, 3)), np.array([[0, 0, 0], [1, 1, 1]]),
    ...      data_range=1.0, per_signal=True)
    array([inf,  0.])
    """
    data_range = _check_positive(data_range, "data_range")
    _, _, err = _pair(x_true, x_pred)
    sq = err.astype(np.float64) ** 2
    if per_signal:
        if err.ndim == 0:
            raise ValueError("per_signal=True needs an axis of signals.")
        return _db(data_range**2, sq.reshape(len(sq), -1).mean(axis=1))
    return float(_db(data_range**2, sq.mean()))


def snr(x_true, x_pred):
    """Signal-to-noise ratio in dB: ``10 log10(sum(x_true**2) / sum(error**2))``.

    The usual measure for audio: it does not depend on a peak value.

    Parameters
    ----------
    x_true : array-like
        The original signal(s), any shape.
    x_pred : array-like of the same shape
        The reconstruction.

    Returns
    -------
    snr : float
        ``inf`` where the reconstruction is exact.

    See Also
    --------
    psnr : The ratio against a fixed peak.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.metrics import snr
    >>> t = np.linspace(0, 1, 8000)
    >>> x = np.sin(2 * np.pi * 440 * t)
    >>> round(snr(x, 0.9 * x), 2)  # an error of 10% of the signal: 20 dB
    20.0
    """
    x_true, _, err = _pair(x_true, x_pred)
    energy = np.sum(x_true.astype(np.float64) ** 2)
    return float(_db(energy, np.sum(err.astype(np.float64) ** 2)))


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gauss_1d(size=11, sigma=1.5):
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _blur_valid(x, g):
    """Separable 'valid' Gaussian filtering over axes 0 and 1 of (H, W, C)."""
    from scipy.ndimage import correlate1d

    r = len(g) // 2
    for axis in (0, 1):
        if x.shape[axis] >= len(g):
            x = correlate1d(x, g, axis=axis, mode="constant")
            x = x[r:-r] if axis == 0 else x[:, r:-r]
    return x


def _ssim_cs(x, y, g, data_range):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu1, mu2 = _blur_valid(x, g), _blur_valid(y, g)
    s11 = _blur_valid(x * x, g) - mu1**2
    s22 = _blur_valid(y * y, g) - mu2**2
    s12 = _blur_valid(x * y, g) - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    ssim = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs
    return ssim.mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _pool2(x):
    """2x2 average pooling with torch's avg_pool2d(padding=size % 2) semantics."""
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:  # zero padding on both sides, count_include_pad=True
        x = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    x = x[:h, :w]
    return x.reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))


def ms_ssim(x_true, x_pred, *, data_range=255.0):
    """Multi-scale structural similarity (Wang, Simoncelli and Bovik, 2003).

    The definition of ``pytorch_msssim.ms_ssim``: 5 scales with weights
    (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), an 11-tap Gaussian window of
    sigma 1.5 applied with 'valid' filtering, K = (0.01, 0.03), 2x2 average
    pooling between scales, negative factors clipped to 0, mean over channels.
    Computed in float64 with separable SciPy filters (pytorch-msssim's grouped
    convolutions are an order of magnitude slower on a CPU).

    Parameters
    ----------
    x_true : array-like of shape (H, W) or (H, W, C)
        The original image, channels last. The shorter side must exceed 160
        pixels (the coarsest of the 5 scales still holds an 11-tap window).
    x_pred : array-like of the same shape
        The reconstruction.
    data_range : float, default=255.0
        The peak: 255 for 8-bit images, 1 for images in [0, 1].

    Returns
    -------
    ms_ssim : float
        1 for identical images; lower is worse.

    See Also
    --------
    psnr : Peak signal-to-noise ratio.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.metrics import ms_ssim
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 256, size=(192, 192, 3)).astype(np.uint8)
    >>> ms_ssim(x, x)
    1.0
    >>> noisy = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
    >>> 0 < ms_ssim(x, noisy) < 1
    True
    """
    data_range = _check_positive(data_range, "data_range")
    x_true, x_pred, _ = _pair(x_true, x_pred)
    if x_true.ndim not in (2, 3):
        raise ValueError(
            f"ms_ssim takes one image of shape (H, W) or (H, W, C); got shape "
            f"{x_true.shape}."
        )
    if min(x_true.shape[:2]) <= 160:
        raise ValueError(
            f"ms_ssim needs both sides longer than 160 pixels (5 scales of an "
            f"11-tap window); got {x_true.shape[:2]}."
        )
    x = x_true.astype(np.float64).reshape(*x_true.shape[:2], -1)
    y = x_pred.astype(np.float64).reshape(*x_pred.shape[:2], -1)
    g = _gauss_1d()
    factors = []
    for i in range(len(_MS_WEIGHTS)):
        ssim, cs = _ssim_cs(x, y, g, data_range)
        if i < len(_MS_WEIGHTS) - 1:
            factors.append(np.maximum(cs, 0))
            x, y = _pool2(x), _pool2(y)
    factors.append(np.maximum(ssim, 0))
    val = np.prod(np.stack(factors) ** np.array(_MS_WEIGHTS)[:, None], axis=0)
    return float(val.mean())


def entropy_bits(latents, *, channel_axis=-1):
    """Bits of an ideal static per-channel code: ``sum_c n_c H(histogram_c)``.

    The size of a code whose per-channel tables are the empirical histograms
    and cost nothing to transmit: the baseline an entropy coder is measured
    against.

    Parameters
    ----------
    latents : array-like of int
        Integer symbols, for example the latents of
        :meth:`~sklearn_walloc.WallocTransformer.transform` in the batch form
        ``(n, h, w, latent_dim)``.
    channel_axis : int, default=-1
        The axis of channels; every other axis holds symbols of one channel.

    Returns
    -------
    bits : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.metrics import entropy_bits
    >>> z = np.array([[0, 5], [1, 5], [0, 5], [1, 5]])  # 2 channels
    >>> entropy_bits(z)  # 4 fair coin flips, and a constant
    4.0
    """
    q = np.moveaxis(np.asarray(latents), channel_axis, 0)
    total = 0.0
    for channel in q.reshape(q.shape[0], -1):
        _, counts = np.unique(channel, return_counts=True)
        total -= float((counts * np.log2(counts / counts.sum())).sum())
    return total


def _n_bits(blobs):
    """Bits of a list of byte strings, or a number of bits as given."""
    if isinstance(blobs, (bytes, bytearray)):
        return 8 * len(blobs)
    if isinstance(blobs, Real) and not isinstance(blobs, bool):
        if not blobs >= 0:
            raise ValueError(f"a number of bits must be >= 0; got {blobs!r}.")
        return float(blobs)
    try:
        return 8 * sum(len(b) for b in blobs)
    except TypeError:
        raise TypeError(
            "blobs must be bytes, a sequence of bytes or a number of bits; got "
            f"{type(blobs).__name__}."
        ) from None


def _as_signals(X):
    if isinstance(X, (list, tuple)):
        return [np.asarray(x) for x in X]
    return [np.asarray(X)]


def bits_per_sample(blobs, X):
    """Coded bits per scalar value of the signals they code.

    One value is one sample of one channel: a pixel of an RGB image holds 3,
    a frame of stereo audio 2.

    Parameters
    ----------
    blobs : bytes, sequence of bytes or float
        The coded signals (for example
        :meth:`~sklearn_walloc.WallocCodec.compress` output), counted whole, or
        a number of bits.
    X : array-like or list of array-like
        The signals at their original size; every entry counts.

    Returns
    -------
    bits : float

    See Also
    --------
    bits_per_pixel : Bits per pixel of images, channels together.
    compression_ratio : Source bits over coded bits.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.metrics import bits_per_sample
    >>> audio = np.zeros((44100, 2), dtype=np.int16)  # one second of stereo
    >>> bits_per_sample([b"x" * 22050], audio)  # 22 kB for 88200 values
    2.0
    """
    n_values = sum(x.size for x in _as_signals(X))
    if n_values == 0:
        raise ValueError("X holds no values.")
    return _n_bits(blobs) / n_values


def bits_per_pixel(blobs, images):
    """Coded bits per pixel (all channels of a pixel together).

    Parameters
    ----------
    blobs : bytes, sequence of bytes or float
        The coded images, counted whole, or a number of bits.
    images : array-like or list of array-like
        One image ``(H, W)`` or ``(H, W, C)``, a batch ``(n, H, W, C)``, or a
        list of images of any sizes (a batch of grey images ``(n, H, W)`` must
        be given as a list or as ``(n, H, W, 1)``).

    Returns
    -------
    bpp : float
        Equal to ``C * bits_per_sample(blobs, images)`` for ``C`` channels.

    See Also
    --------
    bits_per_sample : Bits per scalar value.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.metrics import bits_per_pixel
    >>> photo = np.zeros((512, 512, 3), dtype=np.uint8)
    >>> bits_per_pixel([b"x" * 16384], photo)  # 16 kB for a 512x512 photo
    0.5
    """
    n_pixels = 0
    for x in _as_signals(images):
        if x.ndim not in (2, 3, 4):
            raise ValueError(
                "images must be (H, W), (H, W, C), (n, H, W, C) or a list of "
                f"images; got an array of shape {x.shape}."
            )
        n_pixels += math.prod(x.shape[:3] if x.ndim == 4 else x.shape[:2])
    if n_pixels == 0:
        raise ValueError("images hold no pixels.")
    return _n_bits(blobs) / n_pixels


def compression_ratio(blobs, X, *, source_bits=8):
    """Source bits over coded bits: ``source_bits / bits_per_sample(blobs, X)``.

    Parameters
    ----------
    blobs : bytes, sequence of bytes or float
        The coded signals, counted whole, or a number of bits.
    X : array-like or list of array-like
        The signals at their original size.
    source_bits : float, default=8
        Bits per scalar value of the uncompressed source: 8 for 8-bit images,
        16 for CD audio.

    Returns
    -------
    ratio : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.metrics import compression_ratio
    >>> photo = np.zeros((512, 512, 3), dtype=np.uint8)
    >>> compression_ratio([b"x" * 16384], photo)  # 24 bits per pixel / 0.5
    48.0
    """
    source_bits = _check_positive(source_bits, "source_bits")
    return source_bits / bits_per_sample(blobs, X)


# ------------------------------------------------------------ Bjøntegaard
_BD_METHODS = ("pchip", "cubic")


def _rd_curve(rate, dist, which):
    """One curve as ``(log rate, quality)`` float64 arrays sorted by rate."""
    rate = np.asarray(rate, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64)
    if rate.ndim != 1 or dist.shape != rate.shape:
        raise ValueError(
            f"rate_{which} and dist_{which} must be 1D and of the same length; "
            f"got shapes {rate.shape} and {dist.shape}."
        )
    if len(rate) < 4:
        raise ValueError(
            f"a Bjøntegaard delta needs at least 4 points per curve; rate_{which} "
            f"has {len(rate)}."
        )
    if not (np.isfinite(rate).all() and np.isfinite(dist).all()):
        raise ValueError(f"rate_{which} and dist_{which} must be finite.")
    if not (rate > 0).all():
        raise ValueError(f"rate_{which} must be positive (it is taken in log).")
    order = np.argsort(rate, kind="stable")
    rate, dist = rate[order], dist[order]
    if not (np.diff(rate) > 0).all() or not (np.diff(dist) > 0).all():
        raise ValueError(
            f"the {which} curve must be monotone: dist_{which} (a quality such as "
            f"PSNR in dB, higher is better) must increase strictly with rate_{which}"
            "; drop the points that another point of the same curve dominates."
        )
    return np.log(rate), dist


def _bd_fit(x, y, method):
    """An antiderivative of the curve ``y(x)``: ``F(a, b) = integral_a^b y``."""
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        f = PchipInterpolator(x, y, extrapolate=False)
        return lambda a, b: float(f.integrate(a, b))
    poly = np.polynomial.Polynomial.fit(x, y, 3).integ()
    return lambda a, b: float(poly(b) - poly(a))


def _bd_interval(lo, hi, what):
    if not hi > lo:
        raise ValueError(
            f"the two curves' {what} ranges do not overlap (common range "
            f"[{lo:.6g}, {hi:.6g}]); a Bjøntegaard delta is only defined on a "
            "common interval."
        )
    return lo, hi


def _bd_check(method, rate_range):
    if method not in _BD_METHODS:
        raise ValueError(f"method must be one of {_BD_METHODS}; got {method!r}.")
    if rate_range is None:
        return None
    try:
        lo, hi = (float(v) for v in rate_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"rate_range must be None or a pair (low, high); got {rate_range!r}."
        ) from None
    if not (0 < lo < hi < math.inf):
        raise ValueError(
            f"rate_range must satisfy 0 < low < high < inf; got {rate_range!r}."
        )
    return math.log(lo), math.log(hi)


def bd_rate(
    rate_ref, dist_ref, rate_test, dist_test, *, method="pchip", rate_range=None
):
    """Bjøntegaard delta rate: the mean rate difference at equal quality, in %.

    The Bjøntegaard metric (VCEG-M33, 2001) as codec comparisons report it:
    each curve's log-rate is interpolated as a function of the quality, both
    are integrated over the interval of qualities that the two curves share,
    and the mean difference ``d`` of log-rates becomes ``100 (exp(d) - 1)``.
    Negative values mean that the test codec needs fewer bits than the
    reference for the same quality (-10: 10% fewer bytes).

    Parameters
    ----------
    rate_ref : array-like of shape (n_ref,)
        Rates of the reference codec (bits per pixel, bytes, kbit/s: any
        positive unit, the same for both curves), in any order.
    dist_ref : array-like of shape (n_ref,)
        Qualities at those rates, higher is better (PSNR in dB, MS-SSIM in
        dB, ...); they must increase strictly with the rate.
    rate_test : array-like of shape (n_test,)
        Rates of the codec under test.
    dist_test : array-like of shape (n_test,)
        Its qualities.
    method : {"pchip", "cubic"}, default="pchip"
        The interpolation. ``"pchip"``: piecewise cubic Hermite interpolation
        (SciPy's ``PchipInterpolator``) through every point, as in the JCT-VC
        and JVET common-test-conditions spreadsheets and in modern BD
        implementations; it never overshoots between points. ``"cubic"``: the
        original Bjøntegaard fit, one cubic polynomial (least squares when a
        curve has more than 4 points).
    rate_range : (float, float) or None, default=None
        Restrict the comparison to the qualities that the reference reaches
        between these two rates (for example ``(0.15, 1.0)`` bits per pixel),
        intersected with the common interval. None: the whole common interval.

    Returns
    -------
    bd_rate : float
        In percent.

    Raises
    ------
    ValueError
        A curve with fewer than 4 points, non-finite or non-positive rates,
        a quality that does not increase strictly with the rate, curves whose
        quality ranges do not overlap, or an unknown ``method``.

    See Also
    --------
    bd_psnr : The mean quality difference at equal rate.

    Examples
    --------
    >>> from sklearn_walloc.metrics import bd_rate
    >>> rate = [0.25, 0.5, 1.0, 2.0]
    >>> psnr = [30.0, 33.0, 36.0, 39.0]
    >>> # The same qualities for 20% fewer bits:
    >>> round(bd_rate(rate, psnr, [0.8 * r for r in rate], psnr), 6)
    -20.0
    """
    window = _bd_check(method, rate_range)
    x_ref, y_ref = _rd_curve(rate_ref, dist_ref, "ref")
    x_test, y_test = _rd_curve(rate_test, dist_test, "test")
    lo, hi = max(y_ref[0], y_test[0]), min(y_ref[-1], y_test[-1])
    if window is not None:
        # The reference's qualities at the window's rates (its rate axis is
        # monotone, so the interpolant maps the window onto a quality window).
        from scipy.interpolate import PchipInterpolator

        q = PchipInterpolator(x_ref, y_ref, extrapolate=True)(window)
        lo, hi = max(lo, float(q[0])), min(hi, float(q[1]))
    lo, hi = _bd_interval(lo, hi, "quality")
    area_ref = _bd_fit(y_ref, x_ref, method)(lo, hi)
    area_test = _bd_fit(y_test, x_test, method)(lo, hi)
    return 100.0 * math.expm1((area_test - area_ref) / (hi - lo))


def bd_psnr(
    rate_ref, dist_ref, rate_test, dist_test, *, method="pchip", rate_range=None
):
    """Bjøntegaard delta PSNR: the mean quality difference at equal rate.

    Each curve's quality is interpolated as a function of the log-rate, both
    are integrated over the interval of log-rates that the two curves share,
    and the difference of the integrals is divided by the interval's length.
    Positive values mean that the test codec is better. In dB for PSNR; in the
    unit of ``dist_*`` in general.

    Parameters
    ----------
    rate_ref : array-like of shape (n_ref,)
        Rates of the reference codec (any positive unit, the same for both
        curves), in any order.
    dist_ref : array-like of shape (n_ref,)
        Qualities at those rates, higher is better; they must increase
        strictly with the rate.
    rate_test : array-like of shape (n_test,)
        Rates of the codec under test.
    dist_test : array-like of shape (n_test,)
        Its qualities.
    method : {"pchip", "cubic"}, default="pchip"
        The interpolation, as in :func:`bd_rate`: piecewise cubic Hermite
        (JCT-VC/JVET spreadsheets) or one cubic polynomial (VCEG-M33).
    rate_range : (float, float) or None, default=None
        Restrict the integral to these rates (for example ``(0.15, 1.0)`` bits
        per pixel), intersected with the common interval.

    Returns
    -------
    bd_psnr : float
        In dB for PSNR.

    Raises
    ------
    ValueError
        As :func:`bd_rate`, for rate ranges that do not overlap.

    See Also
    --------
    bd_rate : The mean rate difference at equal quality.

    Examples
    --------
    >>> from sklearn_walloc.metrics import bd_psnr
    >>> rate = [0.25, 0.5, 1.0, 2.0]
    >>> psnr = [30.0, 33.0, 36.0, 39.0]
    >>> round(bd_psnr(rate, psnr, rate, [p + 1 for p in psnr]), 6)
    1.0
    """
    window = _bd_check(method, rate_range)
    x_ref, y_ref = _rd_curve(rate_ref, dist_ref, "ref")
    x_test, y_test = _rd_curve(rate_test, dist_test, "test")
    lo, hi = max(x_ref[0], x_test[0]), min(x_ref[-1], x_test[-1])
    if window is not None:
        lo, hi = max(lo, window[0]), min(hi, window[1])
    lo, hi = _bd_interval(lo, hi, "log-rate")
    area_ref = _bd_fit(x_ref, y_ref, method)(lo, hi)
    area_test = _bd_fit(x_test, y_test, method)(lo, hi)
    return float((area_test - area_ref) / (hi - lo))
