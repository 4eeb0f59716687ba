"""WallocCodec: a WallocTransformer that also turns its latents into bytes."""

# The transformer owns the signal <-> latent path; this module adds only the
# integer latents <-> bytes step (``_entropy``) inside the blob container
# (``_container``), and keeps both directions batch-invariant by running the
# network through the transformer's fixed-size chunks.

import dataclasses
import math
from functools import partial
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from . import _dask, _signal
from ._blob_checks import as_blob_list, check_blob, check_max_values, fingerprint_of
from ._container import (
    ENHANCED_VERSION,
    FORMAT_VERSION,
    MAX_GAIN_STEPS,
    blob_info,
    pack_blob,
    unpack_blob,
)
from ._enhancement import EnhancedDecoder, enhancement_encoder, fit_enhancement
from ._entropy import decode_latents, encode_latents
from ._networks import _ungain, gain_search
from ._rate import HIGHEST_GAIN, LOWEST_GAIN, check_targets, compress_to_target
from ._signal import merge_padded, pad_to_multiple, run_in_chunks
from ._tiles import decode_grids
from ._units import describe_input, finish_signal, restore_values
from .transformer import WallocTransformer

__all__ = [
    "GAIN_MAX_LOSS_DB",
    "GAIN_MAX_SNR_DB",
    "MAX_DECODED_VALUES",
    "WallocCodec",
    "blob_info",
]

#: Largest signal (number of scalar values) that :meth:`WallocCodec.decompress`
#: decodes unless told otherwise: about 134 M values (512 MiB of float32), e.g. a
#: 6688 x 6688 RGB image or 25 minutes of 44.1 kHz stereo. A blob of a constant
#: signal is tiny whatever its size, so without a limit a few bytes could ask for
#: gigabytes. As Pillow's ``Image.MAX_IMAGE_PIXELS``, it is read at each call:
#: assign another int to change it for the process, or None to switch the check
#: off (for trusted blobs only).
MAX_DECODED_VALUES = 2**27

#: Largest SNR loss, in dB, that rounding the latents of a 1D signal may cost
#: against its unrounded latents before ``adaptive_gain`` widens them: a higher
#: gain and more latent bits for that signal (docs/format.md, "Wider latents").
GAIN_MAX_LOSS_DB = 1.5
#: ... except that a rounding error this far (dB) under the signal's energy is
#: always accepted: near-lossless clips would otherwise take up to 16 bits per
#: latent for SNRs of 50-65 dB.
GAIN_MAX_SNR_DB = 45.0


class WallocCodec(WallocTransformer):
    """WaLLoC with entropy coding: signals to self-contained byte strings.

    The same model and parameters as :class:`WallocTransformer`, plus
    :meth:`compress` and :meth:`decompress`. Each signal becomes one *blob*: a
    small header (signal kind, original shape and dtype, latent grid, a
    fingerprint of the model) and the integer latents coded with a context
    model (each latent predicted from its already-decoded neighbours, one of
    256 stored integer frequency tables chosen per context and transmitted), so
    decoding is integer-only and gives the same latents on every machine. The
    byte format is specified in ``docs/format.md``.

    :meth:`decompress` returns each signal as it went into :meth:`compress`:
    the same dtype, scale and rank (uint8 photos come back uint8, float audio
    in ``[-1, 1]`` comes back float in ``[-1, 1]``).
    ``decompress(..., restore=False)`` gives model units instead: float32,
    exactly ``inverse_transform(transform(X))`` cropped to the original size.

    Parameters
    ----------
    latent_dim : int, default=12
        Channels of the latent grid (the encoder's output width).

    levels : int, default=3
        Wavelet packet levels ``J``; each spatial axis shrinks by ``2**J``.

    wavelet : str, default="bior4.4"
        Any discrete orthogonal or biorthogonal PyWavelets wavelet.

    signal_ndim : {1, 2}, default=2
        2 for images ``(H, W, C)``, 1 for audio and time series ``(L, C)``.

    signal_shape : tuple of int, default=None
        How to read one row of flat 2D input (see :class:`WallocTransformer`).

    latent_bits : int or "auto", default="auto"
        Latents are integers in ``[-(2**(b-1) - 1), 2**(b-1) - 1]``; "auto": 8
        (see :class:`WallocTransformer`; quiet audio keeps its precision
        through ``adaptive_gain``).

    decoder_width : int, default=64
        Channels of the residual decoder path (0: linear decoder only).

    decoder_depth : int, default=2
        Residual blocks in the decoder (0: linear decoder only).

    max_iter : int, default=0
        Optimiser steps after the closed-form start; 0 (the default) keeps
        the closed form (see :class:`WallocTransformer` for why).

    batch_size : int, default=16
        Random crops per optimiser step.

    crop_size : int, default=None
        Side of the training crops; None means 128 for images, 8192 for 1D.

    learning_rate : float, default=3e-4
        Adam's initial step size, decayed on a cosine schedule.

    rate_weight : float, default=0.0
        Rate-distortion trade-off in training (see :class:`WallocTransformer`);
        0 is the pure-MSE objective.

    train_encoder : bool, default=True
        Whether training updates the encoder; False trains the decoder alone,
        which keeps the closed-form latents (but the last row and column) and
        so the coded size (see :class:`WallocTransformer`).

    early_stopping : bool, default=True
        Validate on held-out signals and keep the best state.

    validation_fraction : float, default=0.1
        Fraction of the signals held out when ``early_stopping=True``.

    n_iter_no_change : int, default=10
        Validations without improvement before training stops.

    tol : float, default=1e-3
        Smallest improvement, in dB, that counts.

    warm_start : bool, default=False
        Continue training the fitted model on ``fit``, in place: not while
        other threads compress or decompress with it (their outputs would
        come from a half-trained model and still pass the fingerprint check).

    device : str, default="auto"
        "auto", "cpu", "cuda", "cuda:1", ...: where the network runs. Entropy
        coding always runs on the CPU.

    random_state : int, RandomState instance or None, default=None
        Seeds fitting (see :class:`WallocTransformer`).

    verbose : int, default=0
        >0 shows progress bars while fitting, compressing and decompressing.

    adaptive_gain : bool, default=True
        For 1D signals (audio), :meth:`compress` compands the latents of each
        signal whose latent peak is below half a companding scale at a gain
        ``2**(g/4)`` (``g`` quarter octaves, up to 90 dB) that brings the peak
        to the level of loud signals, and records ``g`` in the blob;
        :meth:`decompress` undoes it. A quiet clip then keeps about the
        precision of a loud one with 8-bit latents. Other signals get ``g =
        0``, and for them ``decompress(compress(X))`` equals
        ``inverse_transform(transform(X))`` exactly; for a quiet one it is
        more precise than that round trip (:meth:`transform` has no gain: its
        latents keep one scale for every signal). A signal whose rounding
        would cost it more than ``GAIN_MAX_LOSS_DB`` (1.5 dB) of SNR against
        its unrounded latents (high-SNR clips, wide dynamic range) also gets
        a higher gain and wider latents in its blob (up to 16 bits), chosen
        from its own latents and one synthesis (``compress`` of audio takes
        about 1.3-1.4x as long); a rounding error ``GAIN_MAX_SNR_DB`` (45 dB)
        under the signal is always accepted. False: no gain, the identity
        holds for every signal. Images get a gain only from ``gain`` or a
        rate target.

    gain : int, default=0
        The quantiser gain of :meth:`compress` without a rate target, in
        quarter octaves (``2**(gain/4)``, 1.5 dB each), from -40 to 24: each
        signal's latents are companded at that gain and coded with it
        (``adaptive_gain`` then does not apply); negative means coarser steps,
        fewer bytes. 0: the model's own rate. The shipped ``rgb-16x``,
        ``rgb-4x`` and ``grey-16x`` load with a negative default
        (``from_pretrained``), where their bits buy the most quality.

    boundary : {"symmetric", "periodization"}, default="symmetric"
        Borders of the wavelet packets, as :class:`WallocTransformer`'s.

    enhancement_dim : int, default=0
        Enhancement channels (images): ``fit`` also finds this many linear
        channels that carry what the ``latent_dim`` latents and the decoder
        leave out (the principal directions of the decoder's error on the
        training signals, in the wavelet packet domain), and a rate target
        (``compress(X, target_bpp=...)`` / ``target_psnr``) codes as many of
        them as pay, at the same gain: quality then keeps rising with the
        rate instead of stopping at what ``latent_dim`` channels can hold.
        ``transform``, blobs without a target and the model's fingerprint for
        them are unchanged; blobs with enhancement channels are format 5. At
        most the wavelet packet bands minus ``latent_dim``; 0 for 1D models.

    Attributes
    ----------
    spec_ : ModelSpec
        The fitted model's structure and sample domain (see
        :class:`WallocTransformer`); it enters the fingerprint.

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
        Peak-to-peak range used by :meth:`score`.

    latent_scale_ : float
        Factor applied to the projections before companding.

    n_iter_ : int
        Optimiser steps run by the last fit.

    loss_curve_ : list of float
        Training loss per step.

    validation_scores_ : list of float
        Validation PSNR in dB (empty without early stopping).

    best_validation_score_ : float or None
        Best of ``validation_scores_``.

    n_iter_kept_ : int
        The step whose state was kept (0: the start, the closed form with or
        without the least-squares start of the residual decoder path, as
        :class:`WallocTransformer`).

    validation_gain_ : float or None
        What training gained on the validation signals, in dB.

    See Also
    --------
    WallocTransformer : The model without entropy coding.
    blob_info : What a blob holds, without a model.

    Notes
    -----
    A blob records the fingerprint of the model that made it (16 bytes of
    SHA-256 over the network's weights and structural parameters);
    :meth:`decompress` refuses a blob from another model, a truncated, extended
    or corrupted blob, or anything that is not a blob, with a ``ValueError``.
    Refitting changes the fingerprint: keep the fitted model (``save`` or
    ``joblib``) as long as its blobs.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc.codec import WallocCodec
    >>> from sklearn_walloc.datasets import load_photos
    >>> photos = [p[:96, :128] for p in load_photos(split="fit")]
    >>> codec = WallocCodec(latent_dim=12, levels=3, max_iter=0,
    ...                     random_state=0).fit(photos)
    >>> X = load_photos(["astronaut"])[0][:100, :90]     # (100, 90, 3) uint8
    >>> blobs = codec.compress([X])
    >>> Y = codec.decompress(blobs)                      # as it went in
    >>> Y.shape, Y.dtype
    ((1, 100, 90, 3), dtype('uint8'))
    >>> F = codec.decompress(blobs, restore=False)       # model units, float32
    >>> R = codec.inverse_transform(codec.transform(X[None]))[:, :100, :90]
    >>> bool(np.array_equal(F, R))
    True
    >>> bool(codec.compression_ratio([X]) > 16)         # 8-bit source, whole blobs
    True
    """

    _parameter_constraints: dict = {
        **WallocTransformer._parameter_constraints,
        "adaptive_gain": ["boolean"],
        "gain": [Interval(Integral, LOWEST_GAIN, HIGHEST_GAIN, closed="both")],
        "enhancement_dim": [Interval(Integral, 0, None, closed="left")],
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
        learning_rate=0.0003,
        rate_weight=0.0,
        train_encoder=True,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=0.001,
        warm_start=False,
        device="auto",
        random_state=None,
        verbose=0,
        adaptive_gain=True,
        gain=0,
        boundary="symmetric",
        enhancement_dim=0,
    ):
        super().__init__(
            latent_dim=latent_dim,
            levels=levels,
            wavelet=wavelet,
            signal_ndim=signal_ndim,
            signal_shape=signal_shape,
            latent_bits=latent_bits,
            decoder_width=decoder_width,
            decoder_depth=decoder_depth,
            max_iter=max_iter,
            batch_size=batch_size,
            crop_size=crop_size,
            learning_rate=learning_rate,
            rate_weight=rate_weight,
            train_encoder=train_encoder,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            warm_start=warm_start,
            device=device,
            random_state=random_state,
            verbose=verbose,
            boundary=boundary,
        )
        self.adaptive_gain = adaptive_gain
        self.gain = gain
        self.enhancement_dim = enhancement_dim

    @classmethod
    def _added_params(cls):
        return {
            **super()._added_params(),
            "adaptive_gain": True,
            "gain": 0,
            "enhancement_dim": 0,
        }

    def _spec_from_params(self, channels, domain):
        spec = super()._spec_from_params(channels, domain)
        return dataclasses.replace(spec, enhancement_dim=int(self.enhancement_dim))

    def _fit_extras(self, padded):
        """Fit the enhancement channels (``enhancement_dim``) on the
        training signals, after the model they enhance."""
        k = self.spec_.enhancement_dim
        if k:
            fit_enhancement(self.module_, padded, k)

    # ---------------------------------------------------------------- identity
    def fingerprint(self, enhanced=False):
        """The 16-byte fingerprint of the fitted model, recorded in every blob.

        SHA-256 (truncated) over a tag, the model's spec (``spec_``: its
        structure and sample domain) and every learned tensor (little-endian);
        models of model format 1 and older pickles keep their original formula
        (see ``_spec.legacy_fingerprint``). Unchanged by pickling,
        ``save``/``load`` and the device; changed by any refit.

        Parameters
        ----------
        enhanced : bool, default=False
            False: the fingerprint of the model without its enhancement
            channels, which every blob without them records (adding
            enhancement channels to a model keeps its blobs decodable). True:
            with them, as blobs that carry them (format 5) record.

        Returns
        -------
        fingerprint : bytes
            16 bytes.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocCodec
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> codec = WallocCodec(latent_dim=2, levels=1, max_iter=0)
        >>> codec = codec.fit(X)  # 4 smooth grey 16x16 images
        >>> fp = codec.fingerprint()
        >>> type(fp).__name__, len(fp)
        ('bytes', 16)
        """
        check_is_fitted(self)
        return fingerprint_of(self, bool(enhanced))

    # ------------------------------------------------------------- compression
    def compress(self, X, *, target_bpp=None, target_psnr=None):
        """Encode signals to self-contained, entropy-coded byte strings.

        Parameters
        ----------
        X : array-like or list of array-like
            Signals in any input form of :meth:`transform`: flat rows read with
            ``signal_shape``, a batch ``(n, H, W[, C])`` / ``(n, L, C)``, or a
            list of signals of different sizes ``(H, W[, C])`` / ``(L[, C])``.
        target_bpp : float, default=None
            Rate control, per signal: the best quality whose blob (header
            included) is at most this many bits per pixel for images (all
            channels together), or per sample and channel for 1D signals (as
            PCM's 16 bits). The quantiser's gain is searched in quarter octaves
            (1.5 dB), from 10 octaves coarser to 6 finer than the model's own
            rate; a target below the coarsest blob gives that blob and a
            ``UserWarning``. Costs about 5-8 entropy codings per signal. A
            codec with enhancement channels (``enhancement_dim``) codes them
            too, as many as round to something other than 0 (format 5).
        target_psnr : float, default=None
            Rate control, per signal: the smallest blob whose decoded signal
            reaches this PSNR in dB, in the model's sample domain as
            :meth:`score` measures it (peak ``data_range_``: 255 for 8-bit
            images, 65535 for 16-bit audio). A PSNR the model cannot reach at
            any gain gives the smallest blob within 0.1 dB of the best and a
            ``UserWarning``. Costs about 5-8 codings and decodings per signal.
            Neither target given: the codec's ``gain`` (0: the model's own
            rate, with a gain for quiet 1D signals only, see
            ``adaptive_gain``); both: ``ValueError``.

        Returns
        -------
        blobs : list of bytes
            One blob per signal, in input order. Each records the signal's
            original shape (with or without a channel axis, as given) and
            dtype, so :meth:`decompress` returns it at its original size. A
            signal gives the same bytes alone or in any batch. For a
            ``dask.array.Array`` (samples along axis 0) or a ``dask.bag.Bag``
            of signals: a lazy ``dask.bag.Bag`` of the same blobs, in order
            (needs the ``[dask]`` extra).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocCodec
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> codec = WallocCodec(latent_dim=2, levels=1, max_iter=0)
        >>> codec = codec.fit(X)  # 4 smooth grey 16x16 images
        >>> blobs = codec.compress(X)  # one self-contained blob per image
        >>> len(blobs), type(blobs[0]).__name__
        (4, 'bytes')
        >>> small = codec.compress(X, target_bpp=4.0)  # at most 4 bits per pixel
        >>> all(8 * len(b) <= 4.0 * 16 * 16 for b in small)
        True
        """
        targets = check_targets(target_bpp, target_psnr)
        if _dask.is_dask_array(X) or _dask.is_dask_bag(X):
            check_is_fitted(self)
            return _dask.compress(self, X, **targets)
        arrays, layout = self._read(X, lazy=True)
        described = describe_input(self, X, layout, arrays)
        fingerprint, version = fingerprint_of(self), FORMAT_VERSION
        if not targets and self.gain:
            self._validate_params()  # set_params does not check
            targets = {"gain": self.gain}

        def pack(grid, bits, gain, i):
            shape, dtype = described[i]
            enhanced = len(grid) > self.spec_.latent_dim
            v = ENHANCED_VERSION if enhanced else version
            return pack_blob(
                encode_latents(grid, bits, version=v),
                signal_ndim=self.signal_ndim,
                signal_shape=shape,
                dtype=dtype,
                levels=self.levels,
                latent_shape=grid.shape,
                latent_bits=bits,
                fingerprint=fingerprint_of(self, True) if enhanced else fingerprint,
                version=v,
                gain_steps=gain,
            )

        blobs = [None] * layout.n_signals
        with _progress(self, layout.n_signals, "compress") as bar:
            # Sizes that pad to the same shape run together (the same bits as
            # alone): one padded chunk per padded shape, not per size.
            stride = 2**self.levels
            centred = self.spec_.centred
            for arr, parts in merge_padded(
                arrays, stride, pad_alone=False, centred=centred
            ):
                idx = np.concatenate([layout.groups[k][0] for k, _ in parts])
                if targets:
                    rated = compress_to_target(self, arr, idx, described, pack, targets)
                    for i, blobs[i] in rated:
                        bar.update(1)
                    continue
                padded = [-(-d // stride) * stride for d in arr.shape[2:]]
                step = _chunk(arr.shape[1] * math.prod(padded))
                for start in range(0, len(arr), step):
                    q, gains, bits = self._encode_gained(arr[start : start + step])
                    for j, grid in enumerate(q):
                        i = int(idx[start + j])
                        blobs[i] = pack(grid, int(bits[j]), int(gains[j]), i)
                        bar.update(1)
        return blobs

    def _encode_gained(self, x):
        """Integer latents ``(n, D, *g)`` (int32), gains ``(n,)`` (quarter
        octaves) and latent bits ``(n,)``.

        Without a gain (images, legacy models, ``adaptive_gain=False``) these
        are exactly :meth:`transform`'s latents, zeros and the model's bits.
        """
        if not self._uses_gain():
            (q,) = self._encode([x])
            n = len(q)
            bits = np.full(n, self.latent_bits_, dtype=np.int64)
            return q.astype(np.int32), np.zeros(n, dtype=np.int64), bits
        module, fused, device = self._runtime_model()
        search = self._gain_search()
        width = self.latent_dim

        def encode(t):
            q, k, b = module.encode_gained(t, fused, MAX_GAIN_STEPS, search)
            # One tensor through the fixed-size chunks: the gain and the bits
            # ride along as two extra channels (integers below 2**24: exact).
            extra = torch.stack([k, b], 1).to(q.dtype)
            extra = extra.reshape(*extra.shape, *[1] * (q.dim() - 2))
            return torch.cat([q, extra.expand(-1, -1, *q.shape[2:])], 1)

        x = pad_to_multiple(x, 2**self.spec_.levels, self.spec_.centred)
        out = run_in_chunks(encode, x, device)
        first = (slice(None), slice(None), *[0] * (out.ndim - 2))
        k, b = out[:, width:][first].astype(np.int64).T
        return out[:, :width].astype(np.int32), k, b

    def _gain_search(self):
        """The fused synthesis on the execution device and its unit-latent
        energies (cached with the model)."""
        _, _, device = self._runtime_model()
        key = f"{device}/gain_search"
        if key not in self._runtime:
            synthesis = self.module_.fused_decoder().to(device)
            self._runtime[key] = gain_search(
                synthesis,
                self.latent_dim,
                self.signal_ndim,
                GAIN_MAX_LOSS_DB,
                GAIN_MAX_SNR_DB,
                device,
            )
        return self._runtime[key]

    def _uses_gain(self):
        return self.adaptive_gain and self.spec_.signal_ndim == 1

    def decompress(self, blobs, *, restore=True, max_values=None):
        """Decode blobs made by :meth:`compress` with this model.

        Parameters
        ----------
        blobs : iterable of bytes-like or dask.bag.Bag
            Blobs, for example the list :meth:`compress` returns (a single blob
            must be wrapped in a list). A ``dask.bag.Bag`` of blobs gives a
            lazy bag of signals, one per blob, in order: each partition's
            :meth:`decompress` result, one signal per item.
        restore : bool, default=True
            True: each signal in the units it went into :meth:`compress`:
            its original dtype, scale and rank. First the inverse of the
            sample-domain rule (for a float signal given to a uint8 model,
            ``y / 255`` clipped to ``[0, 1]``; for int32 audio given to an
            int16 model, ``y * 2**31 / 2**15``), then integer dtypes get
            ``clip(rint(y), dtype.min, dtype.max)``, floating dtypes a cast
            (clipped to the finite range of float16), ``bool`` ``y >= 0.5``;
            a signal given without a channel axis comes back without one.
            False: model units, float32, exactly
            ``inverse_transform(transform(X))`` cropped to the original size
            (from the start of each axis; centred, as the reference's ``crop``,
            for a model from ``from_reference``), channel axis always present
            (as :meth:`inverse_transform` returns), unclipped.
        max_values : int, default=None
            Largest number of scalar values a single blob may declare; larger
            declared signals are refused with a ``ValueError`` before anything
            is allocated (a constant signal of any size codes to a few bytes).
            None: the module's ``MAX_DECODED_VALUES`` at the time of the call
            (``2**27`` unless changed; Pillow's decompression-bomb convention).
            Within the limit, decoding runs in tiles of at most
            ``2**23`` output values (``_tiles.TILE_VALUES``; an eighth of that
            above ``2**26``), each rounded to the output dtype as it is
            decoded: peak memory is the output plus a working set (the latent
            grid, one pass of the entropy decoder, one tile), not a float copy
            of the whole signal; 277-289 MiB over the loaded rgb-16x for a
            136-byte blob declaring a 6688 x 6688 RGB photo (128 MiB as
            uint8): 2.2x the output.

        Returns
        -------
        X_rec : ndarray or list of ndarray
            Signals of equal original shape: a batch array ``(n, H, W, C)`` /
            ``(n, L, C)`` -- or, for a model that reads flat rows (fitted on
            flat input, or with a complete ``signal_shape``) and signals of
            exactly that shape, flat rows ``(n, n_features)`` as
            :meth:`inverse_transform` returns for flat latents. Otherwise
            (different sizes, or different dtypes with ``restore=True``) a list
            of signals in blob order. No blobs: an empty list.

        Raises
        ------
        ValueError
            If an item is not a valid blob of this model (other model,
            truncated, extended, corrupted, implausible), naming the item.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocCodec
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> codec = WallocCodec(latent_dim=2, levels=1, max_iter=0)
        >>> codec = codec.fit(X)  # 4 smooth grey 16x16 images
        >>> Y = codec.decompress(codec.compress(X))  # as given: (4, 16, 16)
        >>> Y.shape, Y.dtype
        ((4, 16, 16), dtype('float64'))
        >>> Z = codec.decompress(codec.compress(X), restore=False)  # model units
        >>> Z.shape, Z.dtype
        ((4, 16, 16, 1), dtype('float32'))
        >>> bool(np.array_equal(Z, codec.inverse_transform(codec.transform(X))))
        True
        """
        check_is_fitted(self)
        if _dask.is_dask_bag(blobs):
            # Workers are other processes: give them this process's limit.
            if max_values is None:
                max_values = MAX_DECODED_VALUES
            return _dask.decompress(self, blobs, restore=restore, max_values=max_values)
        blobs = as_blob_list(blobs)
        max_values = check_max_values(
            MAX_DECODED_VALUES if max_values is None else max_values
        )
        parsed = []
        for i, blob in enumerate(blobs):
            try:
                b = unpack_blob(blob)
                check_blob(self, b, max_values)
            except ValueError as e:
                raise ValueError(f"blobs[{i}]: {e}") from None
            parsed.append(b)
        groups = {}
        for i, b in enumerate(parsed):
            key = (b.latent_shape, b.gain_steps, b.latent_bits)
            if self.spec_.centred:
                # Each size is its own window of the decoded grid: decoded
                # apart, not cropped from the largest.
                key += (b.signal_shape[: self.signal_ndim],)
            groups.setdefault(key, []).append(i)
        out = [None] * len(parsed)
        with _progress(self, len(parsed), "decompress") as bar:
            for (latent_shape, gain_steps, latent_bits, *_), idx in groups.items():
                step = _chunk(math.prod(latent_shape))
                for start in range(0, len(idx), step):
                    part = idx[start : start + step]
                    # Each grid straight into the float32 batch: one int32
                    # grid at a time besides it, not a stacked copy of all.
                    z = np.empty((len(part), *latent_shape), dtype=np.float32)
                    for k, i in enumerate(part):
                        try:
                            z[k] = decode_latents(
                                parsed[i].payload,
                                latent_shape,
                                latent_bits,
                                version=parsed[i].version,
                            )
                        except ValueError as e:
                            raise ValueError(f"blobs[{i}]: {e}") from None
                    # Decode no more than the blobs ask for: a small blob may
                    # declare a huge signal, and padding a 1-row image to 2**J
                    # rows must not multiply its memory.
                    spatial = np.max(
                        [parsed[i].signal_shape[: self.signal_ndim] for i in part],
                        axis=0,
                    )
                    # A lone signal (every large one is) is rounded to its
                    # dtype tile by tile, into an output allocated once: its
                    # float32 decode never exists whole.
                    finish = None
                    if restore and len(part) == 1:
                        b = parsed[part[0]]
                        convert = partial(restore_values, b=b, spec=self.spec_)
                        finish = (b.dtype, convert)
                    signals = self._decode_gained(
                        z,
                        tuple(int(s) for s in spatial),
                        gain_steps,
                        latent_bits,
                        finish,
                    )
                    for i, x in zip(part, signals):
                        out[i] = finish_signal(
                            x, parsed[i], restore, self.spec_, finish is not None
                        )
                    bar.update(len(part))
        return self._lay_out(out, parsed, restore)

    def _decode_gained(self, z, out_spatial, gain_steps, latent_bits, finish=None):
        """Signals of latents coded at a gain and bit depth (the transformer's
        decode for the model's own bits), with or without enhancement
        channels; ``finish`` as in ``decode_grids``."""
        k = z.shape[1] - self.spec_.latent_dim
        if k > 0:
            module, _, device = self._runtime_model()
            decoder = self._enhanced_decoder(k, device)
            bottleneck = module._bottleneck(latent_bits)
            half = bottleneck.expand(torch.tensor(0.5, dtype=torch.float64))
            zero_bound = float(_ungain(half, gain_steps))

            def enhanced(q):
                return decoder(_ungain(bottleneck.expand(q), gain_steps), zero_bound)

            return decode_grids(module, z, device, out_spatial, enhanced, finish)
        if latent_bits == self.latent_bits_:
            (signals,) = self._decode([z], out_spatial, gain_steps, finish)
            return signals
        module, _, device = self._runtime_model()
        synthesis = self._gain_search().synthesis

        def decode(q):
            return module.decode_fused(q, synthesis, gain_steps, latent_bits)

        centred = self.spec_.centred
        return decode_grids(module, z, device, out_spatial, decode, finish, centred)

    def _enhancement_encoder(self, device):
        """The enhancement channels' separable encoder on ``device`` (cached)."""
        key = f"{device}/enhancement_encoder"
        if key not in self._runtime:
            module, _, _ = self._runtime_model()
            self._runtime[key] = enhancement_encoder(module).to(device)
        return self._runtime[key]

    def _enhanced_decoder(self, k, device):
        """The decoder of blobs with ``k`` enhancement channels (cached)."""
        key = f"{device}/enhanced/{k}"
        if key not in self._runtime:
            module, _, _ = self._runtime_model()
            self._runtime[key] = EnhancedDecoder(module, k).to(device)
        return self._runtime[key]

    def _lay_out(self, signals, parsed, restore):
        if not signals:
            return []
        shapes = {s.shape for s in signals}
        dtypes = {s.dtype for s in signals}
        if len(shapes) > 1 or len(dtypes) > 1:
            return signals
        flat = self._flat_signal_shape()
        b = parsed[0]
        ndim = self.signal_ndim
        channels = b.signal_shape[ndim] if len(b.signal_shape) > ndim else 1
        # One signal (a large image, say) becomes a batch of one without a copy.
        batch = signals[0][None] if len(signals) == 1 else np.stack(signals)
        if flat is not None and (tuple(flat[0]), flat[1]) == (
            tuple(b.signal_shape[:ndim]),
            channels,
        ):
            return batch.reshape(len(signals), -1)
        return batch

    # ----------------------------------------------------------------- rates
    def bits_per_sample(self, X):
        """Coded bits per scalar input value, whole blobs included.

        Parameters
        ----------
        X : array-like or list of array-like
            Signals in any input form of :meth:`compress`.

        Returns
        -------
        bits : float
            ``8 * sum(len(blob)) / n_values``, where ``n_values`` counts every
            sample of every channel of every signal at its original size (per
            pixel per channel for images: an RGB image's bits per pixel is 3x
            this).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocCodec
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> codec = WallocCodec(latent_dim=2, levels=1, max_iter=0)
        >>> codec = codec.fit(X)  # 4 smooth grey 16x16 images
        >>> from sklearn_walloc import metrics
        >>> bps = codec.bits_per_sample(X)
        >>> bps == metrics.bits_per_sample(codec.compress(X), X)
        True
        """
        arrays, layout = self._read(X, lazy=True)
        n_values = sum(
            a.shape[1] * math.prod(spatial) * len(idx)
            for a, (idx, spatial) in zip(arrays, layout.groups)
        )
        n_bits = 8 * sum(len(b) for b in self.compress(X))
        return n_bits / n_values

    def compression_ratio(self, X, source_bits=None):
        """Source bits over coded bits: ``source_bits / bits_per_sample(X)``.

        Parameters
        ----------
        X : array-like or list of array-like
            Signals in any input form of :meth:`compress`.
        source_bits : float, default=None
            Bits per scalar value of the uncompressed source; None means 8 for
            images (``signal_ndim=2``) and 16 for audio (``signal_ndim=1``).

        Returns
        -------
        ratio : float

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_walloc import WallocCodec
        >>> yy, xx = np.mgrid[0:16, 0:16]
        >>> X = np.stack([np.sin((xx + k) / 3) * np.cos(yy / 4) for k in range(4)])
        >>> codec = WallocCodec(latent_dim=2, levels=1, max_iter=0)
        >>> codec = codec.fit(X)  # 4 smooth grey 16x16 images
        >>> ratio = codec.compression_ratio(X, source_bits=32)
        >>> ratio == 32 / codec.bits_per_sample(X)
        True
        """
        if source_bits is None:
            source_bits = 8 if self.signal_ndim == 2 else 16
        if (
            isinstance(source_bits, bool)
            or not isinstance(source_bits, (int, float, np.integer, np.floating))
            or not source_bits > 0
        ):
            raise ValueError(
                f"source_bits must be a positive number, got {source_bits!r}"
            )
        return float(source_bits) / self.bits_per_sample(X)


# ----------------------------------------------------------------------- helpers
def _chunk(per_signal):
    """Signals per slice: the transformer's chunk size, so slices are its chunks."""
    return max(1, _signal._CHUNK_SCALARS // max(1, int(per_signal)))


def _progress(est, total, desc):
    from tqdm.auto import tqdm

    quiet = not est.verbose or total < 1
    return tqdm(total=total, desc=desc, unit="signal", leave=False, disable=quiet)
