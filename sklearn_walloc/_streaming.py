"""Fitting from data that does not fit in memory.

``fit`` of a ``dask.array.Array`` (chunked along samples) or of a
:class:`SignalStream` (a re-iterable of chunks or file names) reads the data
twice, one chunk at a time, and never holds more than one chunk plus a bounded
sample:

1. the sample statistics (count, mean and centred sum of squares in float64,
   merged chunk by chunk with Chan et al.'s parallel formula; min and max) and
   a uniform random sample of whole signals bounded by ``MAX_SAMPLE_VALUES``
   (each signal gets a random key; the signals with the smallest keys that fit
   the budget are kept: a bottom-k sample, mergeable across chunks);
2. the mean and covariance of the wavelet packet coefficient vectors of every
   signal, accumulated the same way.

The principal axes of that covariance are the closed-form start, as in memory;
the sample chooses the latent scale and is what training draws its crops and
validation signals from. When all the data fits the budget, the sample is all
of it, in order, and the fit equals the in-memory fit up to float64 rounding
of the covariance. On dask the per-chunk statistics run on the workers and
merge in a tree; the model is one key of the graph.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

from ._signal import pad_to_multiple, read_signals
from ._training import _coefficient_vectors, pca_start

__all__ = ["MAX_SAMPLE_VALUES", "SignalStream", "is_stream"]

#: Scalar values (float32) of the random sample of signals kept in memory by a
#: streaming fit: 2**26 values is 256 MiB. Read at each fit; assign another int
#: to change it. Training crops and validation signals come from this sample.
MAX_SAMPLE_VALUES = 2**26

# Chunks merged at once in the dask tree reduction.
_FAN_IN = 8


class SignalStream:
    """Signals that ``fit`` reads chunk by chunk instead of all at once.

    ``fit`` reads the data twice (statistics, then the covariance of the
    wavelet packet coefficients), so the source must be re-iterable: a list
    of chunks or file names, or a function that returns a new iterator each
    time it is called.

    Parameters
    ----------
    source : sequence or callable
        A sequence (list, tuple) of chunks, or a zero-argument callable
        returning an iterable of chunks. A chunk is anything ``fit`` takes
        (flat rows, a batch array, a list of signals) or a file name
        (``str`` or path-like) of an image or audio file, read with the
        readers of the ``walloc`` command line.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_walloc import SignalStream, WallocTransformer
    >>> rng = np.random.default_rng(0)
    >>> chunks = [rng.random((4, 32, 32, 3)) for _ in range(3)]
    >>> walloc = WallocTransformer(latent_dim=6, levels=2, max_iter=0)
    >>> walloc.fit(SignalStream(chunks)).transform(chunks[0]).shape
    (4, 8, 8, 6)
    """

    def __init__(self, source):
        if not callable(source) and not isinstance(source, (list, tuple)):
            raise TypeError(
                "SignalStream takes a list or tuple of chunks or file names, or a "
                "function returning a new iterator of them; got "
                f"{type(source).__name__}"
            )
        self.source = source

    def __iter__(self):
        items = self.source() if callable(self.source) else self.source
        for item in items:
            yield _read_item(item)

    def __repr__(self):
        return f"SignalStream({self.source!r})"


def check_not_one_shot(X):
    """Refuse an iterator (a generator, say): fit must read the data twice."""
    import collections.abc

    if isinstance(X, collections.abc.Iterator):
        raise TypeError(
            f"X is a one-shot iterator ({type(X).__name__}), but fitting reads "
            "the data twice: pass a list, or for data larger than memory a "
            "SignalStream of a list of chunks or file names, or of a function "
            "that returns a new iterator each time"
        )


def _read_item(item):
    if isinstance(item, (str, bytes, os.PathLike)):
        from ._media import read_signal

        return [read_signal(item)[0]]
    return item


def is_stream(X):
    """True for the inputs that ``fit`` streams: SignalStream, dask arrays."""
    from . import _dask

    return isinstance(X, SignalStream) or _dask.is_dask_array(X)


@dataclass
class _Moments:
    """Count, mean and centred sum of squared deviations (float64)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x):
        """Of the rows of 2D ``x`` (vectors) or of all values of 1D ``x``."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        d = x - mean
        m2 = d.T @ d if x.ndim == 2 else np.dot(d, d)
        return cls(len(x), mean, m2)

    def merge(self, other):
        if other is None or other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        spread = np.multiply.outer(delta, delta) * (self.n * other.n / n)
        m2 = self.m2 + other.m2 + spread
        return _Moments(n, mean, m2)


@dataclass
class _Pass1:
    """What the first pass keeps: value moments, range, a bounded sample."""

    moments: _Moments
    lo: float
    hi: float
    sample: list  # (key, order, padded signal (C, *S)), smallest keys first
    budget: int

    def merge(self, other):
        sample = sorted(self.sample + other.sample, key=lambda s: s[0])
        return _Pass1(
            self.moments.merge(other.moments),
            min(self.lo, other.lo),
            max(self.hi, other.hi),
            _bounded(sample, self.budget),
            self.budget,
        )


def _bounded(sample, budget):
    """The prefix of a key-sorted sample that fits ``budget`` values (>= 1)."""
    kept, total = [], 0
    for s in sample:
        total += s[2].size
        if kept and total > budget:
            break
        kept.append(s)
    return kept


def _first_pass(est, chunk, part, seed, stride, convert, budget, channels):
    arrays, layout = read_signals(est, chunk, reset=True, convert=convert)
    for a in arrays:
        if a.shape[1] != channels:
            raise ValueError(
                f"chunk {part} of X has {a.shape[1]} channel(s), but its first "
                f"chunk has {channels}: all signals share one channel count"
            )
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    padded = [pad_to_multiple(a, stride) for a in arrays]
    moments = _merge_all([_Moments.of(p.reshape(-1)) for p in padded])
    # (place in the stream, signal): the layout knows each signal's index.
    signals = [
        ((part, int(i)), s)
        for p, (idx, _) in zip(padded, layout.groups)
        for i, s in zip(idx, p)
    ]
    keys = np.random.default_rng([seed, part]).random(len(signals))
    sample = sorted(
        ((float(k), order, s) for k, (order, s) in zip(keys, signals)),
        key=lambda s: s[0],
    )
    return _Pass1(moments, lo, hi, _bounded(sample, budget), budget)


def _second_pass(est, model, chunk, stride, convert):
    arrays, _ = read_signals(est, chunk, reset=True, convert=convert)
    moments = None
    with torch.no_grad():
        for a in arrays:
            a = pad_to_multiple(a, stride)
            for start in range(0, len(a), 64):
                y = model.analysis(torch.from_numpy(a[start : start + 64])).double()
                y = y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1]).numpy()
                m = _Moments.of(y)
                moments = m if moments is None else moments.merge(m)
    return moments


def _merge_all(items):
    out = items[0]
    for item in items[1:]:
        out = out.merge(item)
    return out


def _reduce(results):
    """Merge per-chunk results: in order in memory, as a tree on dask."""
    from . import _dask

    if not results:
        raise ValueError("X holds no signals")
    if not _dask.is_dask_collection(results[0]):
        return _merge_all(results)
    dask = _dask.require("dask")
    while len(results) > 1:
        results = [
            dask.delayed(_merge_all)(results[i : i + _FAN_IN])
            for i in range(0, len(results), _FAN_IN)
        ]
    return results[0].compute()


def _chunks(X):
    """The chunks of a stream: dask blocks along samples (delayed) or items."""
    from . import _dask

    if _dask.is_dask_array(X):
        X = _dask._along_samples(X, "X")
        return X.to_delayed().ravel().tolist()
    return X


def first_chunk(X):
    """The first chunk, in memory: it sets the sample domain and the layout."""
    from . import _dask

    if _dask.is_dask_array(X):
        return _dask._along_samples(X, "X").blocks[0].compute()
    for chunk in X:
        return chunk
    raise ValueError("X holds no chunks")


def _apply(func, X, *args):
    """``func(chunk, part, *args)`` over the chunks of ``X``; lazily on dask."""
    from . import _dask

    if _dask.is_dask_array(X):
        dask = _dask.require("dask")
        shared = [dask.delayed(a, traverse=False) for a in args]
        return [dask.delayed(func)(c, i, *shared) for i, c in enumerate(_chunks(X))]
    results = []
    for i, chunk in enumerate(X):
        r = func(chunk, i, *args)
        # Merge as we go: memory stays one chunk plus the sample.
        results = [_merge_all([*results, r])] if results else [r]
    return results


def _pass1_job(chunk, part, est, seed, stride, convert, budget, channels):
    return _first_pass(est, chunk, part, seed, stride, convert, budget, channels)


def _pass2_job(chunk, part, est, model, stride, convert):
    return _second_pass(est, model, chunk, stride, convert)


def read_sample(est, X, *, seed, convert, channels):
    """First pass over stream ``X``: ``(sample arrays, value moments, lo, hi)``.

    The sample is grouped by shape as a list of signals would be: one
    ``(n, C, *S)`` padded float32 array per shape, in stream order.
    """
    import copy

    reader = copy.deepcopy(est)  # reading flat rows sets n_features_in_
    stride = 2**est.levels
    first = _reduce(
        _apply(
            _pass1_job, X, reader, seed, stride, convert, MAX_SAMPLE_VALUES, channels
        )
    )
    sample = sorted(first.sample, key=lambda s: s[1])
    by_shape = {}
    for _, _, s in sample:
        by_shape.setdefault(s.shape, []).append(s)
    arrays = [np.stack(group) for group in by_shape.values()]
    return arrays, first.moments, first.lo, first.hi


def coefficient_moments(est, model, X, *, convert):
    """Second pass: moments of the coefficient vectors of every signal."""
    import copy

    reader = copy.deepcopy(est)
    return _reduce(_apply(_pass2_job, X, reader, model, 2**est.levels, convert))


def closed_form_start(module, est, X, sample, moments, rng, convert):
    """The closed form of ``_training`` from streamed statistics.

    The value moments set the normalisation, the coefficient covariance of
    every signal (second pass) gives the principal axes, and the sample's
    coefficient vectors choose the latent scale.
    """
    std = float(np.sqrt(moments.m2 / moments.n))
    module.data_offset.fill_(float(moments.mean))
    module.data_scale.fill_(std if std > 0 else 1.0)
    coef = coefficient_moments(est, module, X, convert=convert)
    Y = _coefficient_vectors(module, sample, rng)
    cov = torch.from_numpy(coef.m2 / max(coef.n - 1, 1))
    pca_start(module, torch.from_numpy(coef.mean), cov, Y)
