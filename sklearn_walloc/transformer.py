"""WallocTransformer: WaLLoC's autoencoder as a scikit-learn transformer."""

# The estimator speaks scikit-learn; the rest lives in its own modules.

import copy
import math
import sys
import time
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _dask, _encode_tiles, _model_io, _reference, _streaming
from ._domain import data_range, sample_dtype_name, to_domain
from ._signal import (
    check_signal_shape,
    crop,
    pad_to_multiple,
    read_latents,
    read_signals,
    resolve_device,
    source_dtype,
    write_latents,
    write_signals,
)
from ._spec import ModelSpec, boundary_for
from ._tiles import decode_grids
from ._training import (
    TRAINING_OPTIONS,
    closed_form_start,
    optimise,
    validation_split,
)
from ._wavelets import WaveletPacket, resolve_wavelet
from .metrics import _round_trip_db

__all__ = ["AUTO_LATENT_BITS", "WallocTransformer"]

#: What ``latent_bits="auto"`` means for a new fit, images and audio alike. The
#: dynamic range of audio is served by the codec's per-signal gain
#: (``WallocCodec(adaptive_gain=True)``), not by wider latents.
AUTO_LATENT_BITS = 8


class WallocTransformer(TransformerMixin, BaseEstimator):
    """Wavelet-domain learned lossy compression (WaLLoC) as a transformer.

    A wavelet packet transform (``levels`` levels, every band split) exposes the
    redundancy of a signal; a single linear 1x1 layer maps the ``C *
    2**(levels*signal_ndim)`` bands at each position to ``latent_dim`` channels;
    a Gaussian-CDF companding quantiser turns them into integers in
    ``[-(2**(latent_bits-1) - 1), 2**(latent_bits-1) - 1]``. A small nonlinear
    decoder and the inverse transform reconstruct the signal. Fitting starts from
    a closed form (PCA of the wavelet packet coefficients, useful on its own) and
    can then train encoder and decoder for ``max_iter`` steps (0 by default),
    on the band-weighted MSE of the wavelet packet coefficients.

    The dimensionality reduction factor is ``C * 2**(levels*signal_ndim) /
    latent_dim``: 16x for RGB images with ``levels=3, latent_dim=12``.

    Read more in the README and in ``docs/``.

    Parameters
    ----------
    latent_dim : int, default=12
        Channels of the latent grid (the encoder's output width). At most the
        number of wavelet packet bands, ``C * 2**(levels*signal_ndim)``.

    levels : int, default=3
        Wavelet packet levels ``J``; each spatial axis shrinks by ``2**J``.

    wavelet : str, default="bior4.4"
        Any discrete orthogonal or biorthogonal PyWavelets wavelet.

    signal_ndim : {1, 2}, default=2
        2 for images ``(H, W, C)``, 1 for audio and time series ``(L, C)``.

    signal_shape : tuple of int, default=None
        How to read one row of flat 2D input: ``(H, W)``, ``(H, W, C)``,
        ``(L,)`` or ``(L, C)``, channels last, C order. Required for flat input
        when ``signal_ndim=2``; with ``signal_ndim=1`` a row is a mono signal
        unless given.

    latent_bits : int or "auto", default="auto"
        Latents are integers in ``[-(2**(b-1) - 1), 2**(b-1) - 1]``. "auto" means
        8, for images and 1D signals alike (earlier versions resolved it to 16
        for 1D signals; such models load with ``latent_bits=16``). Quiet audio
        keeps its precision through :class:`WallocCodec`'s per-signal gain,
        not through wider latents. The value used is ``latent_bits_``.

    decoder_width : int, default=64
        Channels of the residual decoder path (0: linear decoder only).

    decoder_depth : int, default=2
        Residual blocks in the decoder (0: linear decoder only).

    max_iter : int, default=0
        Optimiser steps after the closed-form start; 0 keeps the closed form.
        The default is the closed form because training on a CPU budget did
        not pay on held-out photos: from the bundled photos, the best setting
        gained +0.03 dB and +0.09 dB on two other photo sets after 1500
        steps, and others lost up to 0.35 dB (``docs/benchmarks.md``,
        "Training"). Training (``max_iter > 0``) starts the residual decoder
        path from a least-squares map of 3x3 latent neighbourhoods, then runs
        Adam steps in the wavelet packet domain (coefficients computed once,
        also for flipped copies of the signals).

    batch_size : int, default=16
        Random crops per optimiser step.

    crop_size : int, default=None
        Side of the training crops in samples (rounded down to a multiple of
        ``2**levels``, capped by the smallest signal); None means 128 for images
        and 8192 for 1D signals.

    learning_rate : float, default=3e-4
        Adam's initial step size, decayed to zero on a cosine schedule.
        Training batches are crops of the wavelet packet coefficients of the
        training signals, computed once; the objective is their MSE weighted
        per band by the energy of the band's synthesis atom, which stands for
        the signal MSE (within 0.35 dB of it on held-out photos for
        ``bior4.4``).

    rate_weight : float, default=0.0
        Rate-distortion trade-off (lambda): the training objective is the MSE
        divided by the data variance plus ``rate_weight`` times the estimated
        bits per input value (a per-channel Laplace model of the latents).
        0 is the paper's pure-MSE objective; larger values give fewer coded
        bits at a lower PSNR (useful range about 0.001 to 0.1).

    train_encoder : bool, default=True
        Whether training updates the encoder. False trains the decoder alone
        and keeps the closed-form encoder, and so the latents (but for the
        last row and column, which the encoder solves for the decoder) and
        the coded size: on held-out photos, joint training of a 16x model
        gained more PSNR but coded 18-26% more bytes, while training the
        decoder alone left the bytes unchanged (``docs/benchmarks.md``,
        "Pretrained models").

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the signals (at least two when
        there are four or more), validate the rounded
        round trip every 10 steps, stop after ``n_iter_no_change`` validations
        without an improvement of ``tol`` dB, and keep the best state (the
        closed-form start included), so training never ends worse than it began
        on the validation signals. With a single signal, it validates on it.

    validation_fraction : float, default=0.1
        Fraction of the signals held out when ``early_stopping=True``.

    n_iter_no_change : int, default=10
        Validations (or windows of 10 steps without early stopping) without
        improvement before training stops.

    tol : float, default=1e-3
        Smallest improvement, in dB, that counts.

    warm_start : bool, default=False
        If True, ``fit`` continues training the fitted model instead of
        starting again from the closed form. The model is updated in place:
        not while other threads use the estimator (see ``fit``).

    device : str, default="auto"
        "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
        Used to fit and to transform. A fitted model whose CUDA device is
        missing (loaded on a CPU-only machine) runs on the CPU with a
        ``UserWarning``; ``fit`` refuses it.

    random_state : int, RandomState instance or None, default=None
        Seeds the PCA subsample, the validation split, the weight
        initialisation, the crops and the training noise. With an int, fitting
        on the CPU is bit-reproducible.

    verbose : int, default=0
        >0 shows a progress bar with the loss during training; >1 also logs every
        validation.

    boundary : {"symmetric", "periodization"}, default="symmetric"
        Borders of the wavelet packets: symmetric extension (where the wavelet
        inverts with it, as bior4.4; other wavelets use periodization), or
        periodization, the reference implementation's (its latents; see
        :meth:`from_reference`).

    Attributes
    ----------
    spec_ : ModelSpec
        The fitted model's structure and sample domain (frozen): channels,
        ``latent_dim``, ``levels``, ``wavelet``, ``signal_ndim``, latent bits,
        decoder size, wavelet boundary rule and ``sample_dtype``, the dtype of
        the data seen in ``fit``, into whose units every input is converted
        (see Notes).

    module_ : torch.nn.Module
        The fitted autoencoder, on the CPU.

    n_channels_ : int
        Channels of the signals seen in ``fit``.

    latent_bits_ : int
        Bits per latent actually used (``latent_bits`` with "auto" resolved).

    n_features_in_ : int
        Number of features seen during fit (flat input only).

    signal_shape_ : tuple of int or None
        Shape ``(*spatial, C)`` of one row, when fitted on flat input.

    device_ : str
        Device the model was trained on.

    data_range_ : float
        Peak-to-peak range used by :meth:`score`, in the units of
        ``spec_.sample_dtype`` (the dtype's range for full-scale integer
        samples, else the observed range of the training data).

    latent_scale_ : float
        Factor applied to the projections before companding (closed form).

    n_iter_ : int
        Optimiser steps run by the last fit.

    loss_curve_ : list of float
        Training objective per step (noisy bottleneck), in squared data units:
        the MSE, plus ``rate_weight * variance * bits per value`` if rate_weight>0.

    validation_scores_ : list of float
        Validation PSNR in dB of the rounded round trip (with ``rate_weight>0``,
        the same transform of the rate-distortion objective), at the start and
        every 10 steps (empty without early stopping).

    best_validation_score_ : float or None
        Best of ``validation_scores_``: the state that was kept.

    n_iter_kept_ : int
        The step whose state was kept (``n_iter_`` without validation). 0 is
        the start: the closed form, or, when it validated better, the closed
        form with the least-squares start of the residual decoder path; its
        latents are the closed form's either way, while ``validation_gain_``
        may be positive.

    validation_gain_ : float or None
        ``best_validation_score_`` minus the closed form's validation score,
        in dB: what training gained on the held-out signals (None without
        validation).

    See Also
    --------
    WallocCodec : The same model with entropy coding to bytes.
    sklearn.decomposition.PCA : Linear dimensionality reduction.

    Notes
    -----
    Sample domain: integer samples are read at full scale, as scikit-image and
    soundfile read them (uint8/16/32: ``2**bits - 1``; int8/16/32:
    ``2**(bits-1)``); other dtypes are numbers as they are. An input of another
    dtype than ``spec_.sample_dtype`` is converted into it (a uint8 model reads
    floats in ``[0, 1]`` and uint16 photos; an int16 model reads int32 and
    floats in ``[-1, 1]``) or refused with a ``ValueError`` naming both (floats
    beyond full scale, full-scale integers given to a float model). The rule is
    in ``docs/transformer.md``.

    References
    ----------
    D. Jacobellis and N. J. Yadwadkar, "Learned Compression for Compressed
    Learning", arXiv:2412.09405, 2024.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_walloc import WallocTransformer
    >>> X, _ = load_digits(return_X_y=True)
    >>> walloc = WallocTransformer(latent_dim=2, levels=1, signal_shape=(8, 8),
    ...                            max_iter=0, random_state=0)
    >>> Z = walloc.fit_transform(X)
    >>> Z.shape
    (1797, 32)
    >>> walloc.inverse_transform(Z).shape
    (1797, 64)
    """

    _parameter_constraints: dict = {
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "levels": [Interval(Integral, 1, 10, closed="both")],
        "wavelet": [str],
        "signal_ndim": [Options(Integral, {1, 2})],
        "signal_shape": [tuple, list, None],
        "latent_bits": [Interval(Integral, 2, 16, closed="both"), StrOptions({"auto"})],
        "decoder_width": [Interval(Integral, 0, None, closed="left")],
        "decoder_depth": [Interval(Integral, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "crop_size": [Interval(Integral, 1, None, closed="left"), None],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "rate_weight": [Interval(Real, 0, None, closed="left")],
        "train_encoder": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "device": [StrOptions({"auto", "cpu"}), str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "boundary": [StrOptions({"symmetric", "periodization"})],
    }

    def __init__(
        self,
        latent_dim=12,
        levels=3,
        wavelet="bior4.4",
        signal_ndim=2,
        signal_shape=None,
        latent_bits="auto",
        decoder_width=64,
        decoder_depth=2,
        max_iter=0,
        batch_size=16,
        crop_size=None,
        learning_rate=3e-4,
        rate_weight=0.0,
        train_encoder=True,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-3,
        warm_start=False,
        device="auto",
        random_state=None,
        verbose=0,
        boundary="symmetric",
    ):
        self.latent_dim = latent_dim
        self.levels = levels
        self.wavelet = wavelet
        self.signal_ndim = signal_ndim
        self.signal_shape = signal_shape
        self.latent_bits = latent_bits
        self.decoder_width = decoder_width
        self.decoder_depth = decoder_depth
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.learning_rate = learning_rate
        self.rate_weight = rate_weight
        self.train_encoder = train_encoder
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.boundary = boundary

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the model: closed-form start, then ``max_iter`` training steps.

        Parameters
        ----------
        X : array-like, list of array-like, dask array or SignalStream
            Flat ``(n_samples, n_features)`` (rows read with ``signal_shape``),
            a batch ``(n, H, W[, C])`` / ``(n, L, C)``, or a list of signals of
            different sizes ``(H, W[, C])`` / ``(L[, C])``. Data larger than
            memory: a ``dask.array.Array`` chunked along samples, or a
            :class:`~sklearn_walloc.SignalStream` of chunks or file names,
            read twice chunk by chunk: the closed form uses the covariance of
            every signal's coefficients, and training draws its crops and
            validation signals from a random sample of whole signals of at
            most ``sklearn_walloc._streaming.MAX_SAMPLE_VALUES`` values.
        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted transformer.

        Notes
        -----
        Fitting (warm start included) updates the model in place: as in
        scikit-learn, do not fit an estimator other threads use (they may get a
        half-trained model's outputs); fit a copy and swap it in.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> X = np.random.default_rng(0).random((4, 16, 16))  # 4 grey 16x16 images
        >>> walloc = WallocTransformer(latent_dim=2, levels=1, max_iter=0).fit(X)
        >>> walloc.n_channels_, walloc.latent_bits_
        (1, 8)
        """
        warm = self.warm_start and hasattr(self, "module_")
        return self._fit(X, warm=warm, n_steps=self.max_iter, validate=True)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One pass of training steps on ``X`` (one crop per signal).

        The first call starts from the closed form on ``X``; later calls
        continue training without validation or early stopping.

        Parameters
        ----------
        X : array-like or list of array-like
            Signals in any input form of :meth:`fit`.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The transformer, trained further.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> X = np.random.default_rng(0).random((4, 16, 16))
        >>> walloc = WallocTransformer(latent_dim=2, levels=1, random_state=0)
        >>> for _ in range(3):  # closed form on the first call, then one pass each
        ...     walloc = walloc.partial_fit(X)
        >>> walloc.transform(X).shape
        (4, 8, 8, 2)
        """
        if _streaming.is_stream(X):
            raise TypeError(
                "partial_fit takes one chunk in memory; pass the chunks of a "
                "SignalStream or the blocks of a dask array one call at a time, "
                "or fit the whole stream with fit"
            )
        warm = hasattr(self, "module_")
        n = _n_signals(X)
        steps = max(1, math.ceil(n / self.batch_size))
        return self._fit(X, warm=warm, n_steps=steps, validate=False)

    def _fit(self, X, *, warm, n_steps, validate, parallel=None):
        resolve_wavelet(self.wavelet)
        device = resolve_device(self.device)
        check_signal_shape(self.signal_shape, self.signal_ndim)
        stride = 2**self.levels
        # A dask array or SignalStream is read chunk by chunk (_streaming);
        # its first chunk sets the sample domain and the layout.
        _streaming.check_not_one_shot(X)
        stream = _streaming.is_stream(X)
        first = _streaming.first_chunk(X) if stream else X
        if warm:
            domain = self.spec_.sample_dtype
        else:
            domain = sample_dtype_name(source_dtype(first, self.signal_ndim))
        arrays, layout = read_signals(
            self, first, reset=not warm, convert=_converter(domain)
        )
        spec = self._spec_from_params(arrays[0].shape[1], domain)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        if warm:
            self._check_structure(spec)
            module = self.module_
        else:
            module = spec.build()
            module.reset_parameters(torch.Generator().manual_seed(seed))
        start = time.perf_counter()
        if stream:
            padded, moments, lo, hi = _streaming.read_sample(
                self,
                X,
                seed=seed,
                convert=_converter(domain),
                channels=spec.in_channels,
            )
        else:
            padded = [pad_to_multiple(a, stride) for a in arrays]
        if stream and not warm:
            _streaming.closed_form_start(
                module, self, X, padded, moments, rng, _converter(domain)
            )
            self.data_range_ = data_range(domain, [np.array([lo, hi])])
        elif not warm:
            closed_form_start(module, padded, rng)
            self.data_range_ = data_range(domain, arrays)
        if not warm and self.verbose > 0:
            print(
                f"WaLLoC fit: closed form of {len(padded)} group(s) of signals "
                f"in {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
        train, val = validation_split(
            padded, validate and self.early_stopping, self.validation_fraction, rng
        )
        crop = self.crop_size or (128 if self.signal_ndim == 2 else 8192)
        history = optimise(
            module,
            train,
            val,
            max_iter=n_steps,
            batch_size=self.batch_size,
            crop_size=crop,
            learning_rate=self.learning_rate,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            device=device,
            seed=seed,
            verbose=self.verbose,
            data_range=self.data_range_,
            rate_weight=self.rate_weight,
            train_encoder=self.train_encoder,
            # Only a fresh closed form gets the least-squares decoder start:
            # warm starts and partial_fit continue from the trained state.
            **{**TRAINING_OPTIONS, "least_squares_start": not warm},
            parallel=parallel,
        )
        self.module_ = module.cpu().eval()
        for p in self.module_.parameters():
            p.requires_grad_(False)
        if not warm:
            self.spec_ = spec
        self.n_channels_ = self.spec_.in_channels
        self.latent_bits_ = self.spec_.latent_bits
        self.device_ = str(device)
        self.latent_scale_ = float(module.latent_scale)
        self.n_iter_ = history["n_iter"]
        self.loss_curve_ = history["loss_curve"]
        self.validation_scores_ = history["validation_scores"]
        self.best_validation_score_ = history.get("best_validation_score")
        self.n_iter_kept_ = history["best_iter"]
        start = history.get("start_validation_score")
        self.validation_gain_ = (
            None if start is None else self.best_validation_score_ - start
        )
        if layout.kind == "flat":
            spatial = layout.groups[0][1]
            self.signal_shape_ = (*spatial, self.n_channels_)
        elif not warm:
            self.signal_shape_ = None
        self._runtime = {}
        self._fit_extras(padded)
        return self

    def _fit_extras(self, padded):
        """What a subclass fits after the model, on the same padded signals."""

    def _resolve_latent_bits(self):
        if self.latent_bits == "auto":
            return AUTO_LATENT_BITS
        return self.latent_bits

    def _spec_from_params(self, channels, domain):
        """The spec a new fit on ``channels``-channel data in ``domain`` makes."""
        return ModelSpec(
            in_channels=int(channels),
            latent_dim=int(self.latent_dim),
            levels=int(self.levels),
            wavelet=str(self.wavelet),
            signal_ndim=int(self.signal_ndim),
            latent_bits=int(self._resolve_latent_bits()),
            decoder_width=int(self.decoder_width),
            decoder_depth=int(self.decoder_depth),
            boundary=boundary_for(self.boundary, str(self.wavelet)),
            sample_dtype=domain,
        )

    def _check_structure(self, spec):
        self.spec_.check_refit(spec)

    from_reference = classmethod(_reference.from_reference)

    # ---------------------------------------------------------------- inference
    def _runtime_model(self):
        """The fitted module and its fused encoder on the execution device."""
        device = resolve_device(self.device, fallback=True)
        key = str(device)
        runtime = self.__dict__.setdefault("_runtime", {})
        if key not in runtime:
            fused = self.module_.inference_encoder()
            module = (
                self.module_
                if device.type == "cpu"
                else copy.deepcopy(self.module_).to(device)
            )
            fused = fused.to(device)
            runtime[key] = (module, fused, device)
            # The fused synthesis serves models whose residual decoder path
            # is zero (closed form); decode_fused checks at each call.
            synthesis = self.module_.fused_decoder().to(device)
            runtime[f"{key}/decode"] = lambda q, gain_steps=0: module.decode_fused(
                q, synthesis, gain_steps
            )
        return runtime[key]

    def _read(self, X, lazy=False):
        """Model-unit signals (``lazy``: large integer images stay integers)."""
        check_is_fitted(self)
        lazy_above = _encode_tiles.LARGE_SAMPLES if lazy else None
        convert = _converter(self.spec_.sample_dtype)
        arrays, layout = read_signals(
            self, X, reset=False, convert=convert, lazy_above=lazy_above
        )
        if arrays[0].shape[1] != self.n_channels_:
            raise ValueError(
                f"X has {arrays[0].shape[1]} channel(s), but {type(self).__name__} "
                f"was fitted with {self.n_channels_} channel(s)"
                f"{_one_signal_hint(X, layout, self.n_channels_, self.signal_ndim)}."
            )
        return arrays, layout

    def _encode(self, arrays):
        # Large images in strips, the rest whole: the same latents.
        return _encode_tiles.encode_arrays(self, arrays, *self._runtime_model())

    def _decode(self, latents, out_spatial=None, gain_steps=0, finish=None):
        module, _, dev = self._runtime_model()
        decode = partial(self._runtime[f"{dev}/decode"], gain_steps=gain_steps)
        out, centred = out_spatial, self.spec_.centred
        return [
            decode_grids(module, z, dev, out, decode, finish, centred) for z in latents
        ]

    def transform(self, X):
        """Encode signals to integer-valued latents (float32).

        Parameters
        ----------
        X : array-like or list of array-like
            Signals in any input form of :meth:`fit`, with the fitted channel
            count.

        Returns
        -------
        Z : ndarray or list of ndarray
            Flat input: ``(n_samples, n_latents)``, the latent grid flattened in
            C order, channels last. Batch input: ``(n, ceil(H/2**J),
            ceil(W/2**J), latent_dim)`` or ``(n, ceil(L/2**J), latent_dim)``.
            List input: a list of such grids without the leading axis.
            A ``dask.array.Array`` (samples along axis 0): a lazy dask array
            of the same values, block by block (needs the ``[dask]`` extra).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> walloc = WallocTransformer(latent_dim=2, levels=1, max_iter=0)
        >>> walloc = walloc.fit(X)  # 4 smooth grey 16x16 images
        >>> Z = walloc.transform(X)  # each image: an 8x8 grid of 2 latents
        >>> Z.shape, Z.dtype
        ((4, 8, 8, 2), dtype('float32'))
        >>> bool(np.all(Z == np.round(Z)))  # integer-valued
        True
        """
        if _dask.is_dask_array(X):
            check_is_fitted(self)
            return _dask.transform(self, X)
        arrays, layout = self._read(X, lazy=True)
        return write_latents(self._encode(arrays), layout)

    def inverse_transform(self, X):
        """Decode latents back to signals.

        Parameters
        ----------
        X : array-like or list of array-like
            Latents in a form :meth:`transform` returns.

        Returns
        -------
        X_rec : ndarray or list of ndarray
            Flat latents: ``(n_samples, n_features_in_)``. Batch or list: the
            signals at the padded size (a multiple of ``2**levels`` per axis),
            channels last; a signal padded to it lies at its start (for a model
            from :meth:`from_reference`, centred: ``spec_.padding``). A dask
            array of latents: a lazy dask array.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> walloc = WallocTransformer(latent_dim=2, levels=1, max_iter=0)
        >>> walloc = walloc.fit(X)  # 4 smooth grey 16x16 images
        >>> R = walloc.inverse_transform(walloc.transform(X))
        >>> R.shape  # channels last, at the padded size
        (4, 16, 16, 1)
        """
        check_is_fitted(self)
        if _dask.is_dask_array(X):
            return _dask.inverse_transform(self, X)
        flat_shape = self._flat_signal_shape()
        spec = self.spec_
        stride = 2**spec.levels
        grid = None if flat_shape is None else [-(-s // stride) for s in flat_shape[0]]
        latents, layout = read_latents(X, spec.latent_dim, spec.signal_ndim, grid)
        signals = self._decode(latents)
        return write_signals(
            signals,
            layout,
            None if flat_shape is None else flat_shape[0],
            spec.centred,
        )

    def _flat_signal_shape(self):
        """(spatial, channels) of a flat row, from fit or from ``signal_shape``."""
        if self.signal_shape_ is not None:
            return tuple(self.signal_shape_[:-1]), self.signal_shape_[-1]
        parsed = check_signal_shape(self.signal_shape, self.signal_ndim)
        if parsed is None or -1 in parsed[0] or parsed[1] == -1:
            return None
        return parsed

    def score(self, X, y=None, *, metric="psnr"):
        """Mean PSNR (or SNR) in dB of the round trip, against ``X`` at its size.

        The default, and what ``GridSearchCV`` and ``cross_val_score`` use, is
        the PSNR: the error against the peak-to-peak range ``data_range_``
        (65535 for int16 audio, 255 for uint8 images). Audio quality is usually
        read as SNR, the error against the signal's own energy, which is 20 to
        30 dB lower for music at ordinary loudness: pass ``metric="snr"``.

        Parameters
        ----------
        X : array-like or list of array-like
            Signals in any input form of :meth:`fit`.
        y : None
            Ignored.
        metric : {"psnr", "snr"}, default="psnr"
            "psnr": ``10 log10(data_range_**2 / MSE)``; "snr": ``10
            log10(mean(x**2) / MSE)``, the signal's mean square (around zero,
            not its mean) over the error's, as audio tools report it.

        Returns
        -------
        score : float
            Mean over signals, in dB, in the model's sample domain (``X``
            converted as :meth:`transform` reads it); in an integer domain
            (uint8, int16) of the output rounded and clipped to its range, as
            ``WallocCodec.decompress`` returns it and codecs are compared.
            Errors are floored at ``1e-12`` times the reference: an exact
            round trip scores 120 dB rather than infinity.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> t = np.arange(4096) / 8000
        >>> x = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None, :, None]
        >>> model = WallocTransformer(signal_ndim=1, levels=2, latent_dim=2,
        ...                           max_iter=0, random_state=0).fit(x)
        >>> psnr, snr = model.score(x), model.score(x, metric="snr")
        >>> round(psnr - snr, 1)  # full range 65535 against an RMS of 5657
        21.3
        """
        if metric not in ("psnr", "snr"):
            raise ValueError(f"metric must be 'psnr' or 'snr', got {metric!r}")
        arrays, layout = self._read(X)
        decoded = self._decode(self._encode(arrays))
        rng, domain = self.data_range_, self.spec_.sample_dtype
        scores = [
            _round_trip_db(a, crop(d, spatial, self.spec_.centred), metric, rng, domain)
            for a, d, (_, spatial) in zip(arrays, decoded, layout.groups)
        ]
        return float(np.mean(np.concatenate(scores)))

    def get_feature_names_out(self, input_features=None):
        """Names of the flat latent features, ``walloctransformer0``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per column of the flat :meth:`transform` output.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> X = np.random.default_rng(0).random((5, 16))  # flat rows of 4x4 images
        >>> walloc = WallocTransformer(latent_dim=2, levels=1, signal_shape=(4, 4),
        ...                            max_iter=0).fit(X)
        >>> walloc.get_feature_names_out()[:3]
        array(['walloctransformer0', 'walloctransformer1', 'walloctransformer2'],
              dtype=object)
        """
        check_is_fitted(self)
        flat_shape = self._flat_signal_shape()
        if flat_shape is None:
            raise ValueError(
                "feature names exist for flat input only: fit on flat input or "
                "set signal_shape."
            )
        stride = 2**self.levels
        n_out = self.latent_dim * int(np.prod([-(-s // stride) for s in flat_shape[0]]))
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(n_out)], dtype=object)

    # ------------------------------------------------------------- persistence
    def __getstate__(self):
        # A copy: BaseEstimator may hand back the live __dict__, and pickling
        # must not drop the runtime cache of an estimator another thread uses.
        state = dict(super().__getstate__())
        state.pop("_runtime", None)
        return state

    def __setstate__(self, state):
        state = dict(state)
        state.pop("_structure", None)  # pickles made before spec_ existed
        # Parameters added since: a pickle made before has their defaults.
        for name, default in self._added_params().items():
            state.setdefault(name, default)
        super().__setstate__(state)
        if "module_" in state:
            if "spec_" not in state:
                self._adopt_legacy_model()
            self._runtime = {}

    @classmethod
    def _added_params(cls):
        """Parameters (with defaults) that older pickles may lack."""
        return {"train_encoder": True, "boundary": "symmetric"}

    def _adopt_legacy_model(self):
        """Give a model pickled before ``spec_`` existed its legacy spec.

        Those models used periodization boundaries and never converted input
        (no sample domain); their fingerprint formula is kept, so their blobs
        still decode.
        """
        latent_bits = getattr(self, "latent_bits_", self.latent_bits)
        self.spec_ = ModelSpec(
            in_channels=int(self.n_channels_),
            latent_dim=int(self.latent_dim),
            levels=int(self.levels),
            wavelet=str(self.wavelet),
            signal_ndim=int(self.signal_ndim),
            latent_bits=int(latent_bits),
            decoder_width=int(self.decoder_width),
            decoder_depth=int(self.decoder_depth),
            boundary="periodization",
            sample_dtype=None,
        )
        self.latent_bits_ = self.spec_.latent_bits
        for m in self.module_.modules():
            if isinstance(m, WaveletPacket):
                m.boundary = "periodization"

    def save(self, path):
        """Write the fitted model to ``path`` in a safe format (no pickle).

        The file is a NumPy ``.npz`` archive of arrays and JSON text with a
        format version; :meth:`load` reads it with ``allow_pickle=False``.

        Model format 2: an uncompressed ``.npz`` of ``header.npy`` (JSON:
        parameters, ``spec_``, fitted attributes) and the learned tensors.

        Parameters
        ----------
        path : str or path-like
            Destination file.

        Returns
        -------
        self : object
            The transformer, unchanged.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> walloc = WallocTransformer(latent_dim=2, levels=1, max_iter=0)
        >>> walloc = walloc.fit(X)  # 4 smooth grey 16x16 images
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = walloc.save(f"{folder}/model.npz")
        ...     same = WallocTransformer.load(f"{folder}/model.npz")
        >>> bool(np.array_equal(same.transform(X), walloc.transform(X)))
        True
        """
        check_is_fitted(self)
        _model_io.save(self, path)
        return self

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`, without unpickling anything.

        Everything in the file is validated before anything is built: the
        archive's members (stored, not compressed, of plausible sizes), each
        tensor's dtype and shape against the spec, the parameters, the spec,
        a whitelist of fitted attributes and finite weights. Files of model
        format 1 load as legacy models.

        Parameters
        ----------
        path : str or path-like
            File written by :meth:`save`.

        Returns
        -------
        estimator : WallocTransformer
            The fitted model, on the CPU.

        Raises
        ------
        ValueError
            If the file is not a valid model file, naming it and the problem.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocTransformer
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> walloc = WallocTransformer(latent_dim=2, levels=1, max_iter=0)
        >>> walloc = walloc.fit(X)  # 4 smooth grey 16x16 images
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = walloc.save(f"{folder}/model.npz")
        ...     same = WallocTransformer.load(f"{folder}/model.npz")
        >>> same.get_params() == walloc.get_params()
        True
        """
        return _model_io.load(cls, path)

    @classmethod
    def from_pretrained(cls, name):
        """A fitted model shipped with the package, loaded offline.

        The same file serves both classes: ``WallocTransformer.from_pretrained``
        and ``WallocCodec.from_pretrained`` give the same weights and the same
        latents. How each model was trained (data, licences, steps, scores) is
        in ``sklearn_walloc/data/pretrained/TRAINING.md``.

        Parameters
        ----------
        name : str
            One of :func:`sklearn_walloc.list_pretrained`: ``"rgb-16x"``,
            ``"rgb-4x"``, ``"grey-16x"``, ``"stereo-5x"``, ``"mono-5x"``
            (``_pretrained.PRETRAINED`` describes each).

        Returns
        -------
        estimator : instance of cls
            Fitted, on the CPU, ready for ``transform`` (a codec for
            ``compress``, at the model's ``_pretrained.DEFAULT_GAINS``) without
            ``fit``. Fitting again trains a new model from these parameters
            (``warm_start=True`` continues from the shipped weights).

        Raises
        ------
        ValueError
            If ``name`` is not a shipped model.

        Examples
        --------
        >>> from sklearn_walloc import WallocCodec
        >>> from sklearn_walloc.datasets import load_photos
        >>> codec = WallocCodec.from_pretrained("rgb-16x")
        >>> codec.levels, codec.latent_dim, codec.spec_.sample_dtype
        (3, 12, 'uint8')
        >>> photo = load_photos(["astronaut"])[0][:128, :128]
        >>> codec.decompress(codec.compress([photo]))[0].shape  # uint8, as given
        (128, 128, 3)
        """
        from ._pretrained import load_pretrained

        return load_pretrained(cls, name)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _converter(domain):
    """The ``convert`` callback of ``read_signals`` for a sample domain."""
    if domain is None:
        return None
    return lambda x, source, name: to_domain(x, source, domain, name)


def _one_signal_hint(X, layout, n_channels, signal_ndim):
    """What to pass instead, when one signal was read as a batch of others."""
    shape = np.shape(X) if layout.kind != "list" else None
    if shape is None or len(shape) != signal_ndim + 1 or shape[-1] != n_channels:
        return ""
    what = "image" if signal_ndim == 2 else "signal"
    if layout.kind == "batch":
        read = (
            f"read as a batch of {shape[0]} one-channel signals of shape "
            f"{tuple(shape[1:])}"
        )
    else:
        read = f"read as {shape[0]} flat rows of {shape[-1]} samples"
    return f"; X has shape {tuple(shape)}, {read}; for one {what} pass X[None] or [X]"


def _n_signals(X):
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]
