"""The entropy model both symbol orders share: tables, tokens, contexts, passes.

Blob formats 1-2 (``_entropy``, the interlaced order) and 3 (``_entropy_batched``,
every channel of a pass at once) code the same symbols with the same integer
model; this module holds that model, so that each order imports it and neither
imports the other: the stored integer frequency tables (verified against a pinned
SHA-256), the token map of zigzag residuals, the context buckets, the
coarse-to-fine pass schedule, and the byte-bounded caches of schedules and plans.
``_entropy`` describes the model in full.
"""

import collections
import functools
import hashlib
import threading
from pathlib import Path
from typing import NamedTuple

import constriction
import numpy as np

_MIN_BITS, _MAX_BITS = 2, 16

_DIRECT = 64  # residual magnitudes z < 64 are their own token
_N_TOKENS = 104  # 64 direct + 4 sub-buckets for each exponent 6..15
_N_CONTEXTS = 32
_N_TABLES = 256  # a table index is one byte
_TABLE_TOTAL = 1 << 22  # target sum of the stored integer frequencies
_SENTINEL = 0x5A3C  # 16-bit end marker; catches most corrupted payloads
# Predictor modes: the prediction is SHRINK/4 times the neighbours' median, so
# channels with little spatial correlation are not hurt by predicting.
_SHRINK = (0, 2, 3, 4)

_TABLES_PATH = Path(__file__).parent / "data" / "entropy_tables.npy"
_TABLES_SHA256 = "370fe040c1c17cb75c8ced68d8012914bdd24e4ab610e27caf89ff57229201d4"

# Parameters of the stored table family (used only by ``_make_tables``): discretised
# generalised Gaussians, shape beta x log-spaced scale alpha, 4 x 64 = 256 tables.
_TABLE_BETAS = (0.5, 0.7, 1.0, 1.5)
_TABLE_SCALES = (0.02, 30000.0, 64)

_models = constriction.stream.model


class _Pass(NamedTuple):
    """Positions of one coding pass and their already-decoded neighbours."""

    pos: np.ndarray  # (n,) flat indices into the (H*W,) channel
    nbr: np.ndarray | None  # (4, n) flat neighbour indices (0 where missing)
    present: np.ndarray | None  # (4, n) bool, neighbour inside the grid
    count: np.ndarray | None  # (n,) number of present neighbours (>= 1)


# --------------------------------------------------------------------------------------
# Probability tables
# --------------------------------------------------------------------------------------


def _make_tables():
    """Compute the stored table family (run once; the committed file is authoritative).

    Each row is a discretised generalised Gaussian over residuals, summed over the
    values each token stands for, quantised to integer frequencies >= 1 that sum to
    about ``_TABLE_TOTAL``. Uses scipy floats, which is why the result is committed
    as a file instead of being recomputed at run time.

    Returns
    -------
    ndarray of int32, shape (256, 104)
    """
    from scipy.special import gammainc

    z = np.arange(1 << 16, dtype=np.int64)
    r = np.where(z % 2 == 0, z // 2, -(z + 1) // 2).astype(np.float64)
    tok, _, _ = _tokenize(z)
    rows = []
    for beta in _TABLE_BETAS:
        for alpha in np.geomspace(*_TABLE_SCALES):

            def cdf(x, alpha=alpha, beta=beta):
                return 0.5 + 0.5 * np.sign(x) * gammainc(
                    1 / beta, (np.abs(x) / alpha) ** beta
                )

            p = np.bincount(
                tok, weights=cdf(r + 0.5) - cdf(r - 0.5), minlength=_N_TOKENS
            )
            freq = np.floor(p / p.sum() * (_TABLE_TOTAL - _N_TOKENS) + 0.5)
            rows.append(np.maximum(freq, 1))
    return np.asarray(rows, dtype=np.int32)


@functools.cache
def _tables():
    """Load the committed integer tables, refusing a file that is not the pinned one."""
    raw = _TABLES_PATH.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _TABLES_SHA256:
        raise RuntimeError(
            f"{_TABLES_PATH} has SHA-256 {digest}, expected {_TABLES_SHA256}: "
            "the entropy tables are part of the format and must not change"
        )
    tables = np.load(_TABLES_PATH, allow_pickle=False).astype(np.int64)
    tables.setflags(write=False)
    return tables


def _n_valid_tokens(bound):
    """Number of tokens that a residual in ``[0, 2 * bound]`` can produce."""
    tok, _, _ = _tokenize(np.array([2 * bound], dtype=np.int64))
    return int(tok[0]) + 1


@functools.cache
def _log2_probs(n_valid):
    """-log2 of every stored table truncated to ``n_valid`` tokens (encoder only)."""
    freq = _tables()[:, :n_valid].astype(np.float64)
    return -np.log2(freq / freq.sum(axis=1, keepdims=True))


class _ModelCache:
    """Lazily built constriction models for the tables of one coding call."""

    def __init__(self, n_valid):
        self.n_valid = n_valid
        self._cache = {}

    def __getitem__(self, table):
        model = self._cache.get(table)
        if model is None:
            # int64 -> float64 is exact; constriction normalises deterministically.
            probs = _tables()[table, : self.n_valid].astype(np.float64)
            model = _models.Categorical(probs, perfect=False)
            self._cache[table] = model
        return model


# --------------------------------------------------------------------------------------
# Integer helpers shared by encoder and decoder
# --------------------------------------------------------------------------------------


def _floor_log2(a, max_exp):
    """Exact ``floor(log2(a))`` of positive int64 ``a < 2**(max_exp+1)``.

    A binary search on shifts: five integer passes instead of one comparison
    per possible exponent (``max_exp < 32``).
    """
    if max_exp >= 32:
        raise ValueError(f"max_exp must be below 32; got {max_exp}.")
    e = np.zeros(a.shape, dtype=np.int64)
    for step in (16, 8, 4, 2, 1):
        e += step * ((a >> (e + step)) > 0)
    return e


def _tokenize(z):
    """Split ``z >= 0`` into (token, number of raw bits, raw bits)."""
    e = _floor_log2(np.maximum(z, 1), 15)
    big = z >= _DIRECT
    nbits = np.where(big, e - 2, 0)
    tok = np.where(big, _DIRECT + 4 * (e - 6) + ((z >> nbits) & 3), z)
    extra = z & ((np.int64(1) << nbits) - 1)
    return tok, nbits, extra


def _token_bits(tok):
    """Number of raw bits that follow each token."""
    return np.where(tok >= _DIRECT, (tok - _DIRECT) // 4 + 4, 0)


def _detokenize(tok, extra):
    """Inverse of :func:`_tokenize`."""
    big = tok >= _DIRECT
    nbits = _token_bits(tok)
    top = 4 | ((tok - _DIRECT) & 3)
    return np.where(big, (top << nbits) | extra, tok)


def _context(spread):
    """Half-octave bucket ``min(floor(2*log2(spread+1)), 31)`` in integers."""
    a = spread + 1
    e = _floor_log2(a, 20)
    half = (a * a) >= (np.int64(1) << (2 * e + 1))
    return np.minimum(2 * e + half, _N_CONTEXTS - 1)


def _nbytes(value):
    """Bytes of the numpy arrays in ``value`` (nested tuples of arrays)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def sized_cache(max_bytes):
    """An LRU cache whose entries' arrays total at most ``max_bytes``.

    The schedules and plans of a grid shape cost 1-2 ms to build at 0.8 MP
    (10-15 ms at 12 MP): a cache of a fixed number of shapes either thrashes
    on a collection of photos of many sizes or holds gigabytes for large ones.
    The newest entry is always kept. Thread-safe; a value may be built twice
    by racing threads, never stored twice.
    """

    def decorate(fn):
        entries = collections.OrderedDict()  # args -> (value, bytes)
        lock = threading.Lock()
        total = [0]

        @functools.wraps(fn)
        def cached(*args, **kwargs):
            key = (args, tuple(sorted(kwargs.items())))
            with lock:
                if key in entries:
                    entries.move_to_end(key)
                    return entries[key][0]
            value = fn(*args, **kwargs)
            with lock:
                if key not in entries:
                    size = _nbytes(value)
                    entries[key] = (value, size)
                    total[0] += size
                    while total[0] > max_bytes and len(entries) > 1:
                        _, (_, freed) = entries.popitem(last=False)
                        total[0] -= freed
                return entries[key][0]

        cached.cache_len = lambda: len(entries)
        return cached

    return decorate


#: Bytes of schedules (and, in ``_entropy_batched``, of plans) kept per cache.
_CACHE_BYTES = 64 << 20


@sized_cache(_CACHE_BYTES)
def _schedule(height, width):
    """Coarse-to-fine passes over an ``height x width`` channel (see module doc)."""
    side = 1
    while side < max(height, width):
        side *= 2
    passes = [_Pass(np.zeros(1, dtype=np.int64), None, None, None)]
    step = side
    while step >= 2:
        h = step // 2
        diag_rows = np.arange(h, height, step)
        diag_cols = np.arange(h, width, step)
        ii, jj = np.meshgrid(diag_rows, diag_cols, indexing="ij")
        offsets = ((-h, -h), (-h, h), (h, -h), (h, h))
        passes.append(_make_pass(ii.ravel(), jj.ravel(), offsets, height, width))
        a_i, a_j = np.meshgrid(np.arange(0, height, step), diag_cols, indexing="ij")
        b_i, b_j = np.meshgrid(diag_rows, np.arange(0, width, step), indexing="ij")
        ii = np.concatenate([a_i.ravel(), b_i.ravel()])
        jj = np.concatenate([a_j.ravel(), b_j.ravel()])
        offsets = ((-h, 0), (h, 0), (0, -h), (0, h))
        passes.append(_make_pass(ii, jj, offsets, height, width))
        step = h
    return tuple(p for p in passes if p.pos.size)


def _make_pass(ii, jj, offsets, height, width):
    ii = ii.astype(np.int64)
    jj = jj.astype(np.int64)
    nbr = np.empty((4, ii.size), dtype=np.int64)
    present = np.empty((4, ii.size), dtype=bool)
    for k, (di, dj) in enumerate(offsets):
        ni, nj = ii + di, jj + dj
        present[k] = (ni >= 0) & (ni < height) & (nj >= 0) & (nj < width)
        nbr[k] = np.where(present[k], ni * width + nj, 0)
    count = present.sum(axis=0)
    return _Pass(ii * width + jj, nbr, present, count)


def _wrap(r, bound):
    """Wrap ``r`` into ``[-bound, bound]`` modulo ``2*bound+1``."""
    return (r + bound) % (2 * bound + 1) - bound
