"""Integer-only entropy coding of integer latent grids with ``constriction``.

The coder turns a grid of integer latents ``q`` of shape ``(C, H, W)`` (2D signals)
or ``(C, L)`` (1D signals), with values in ``[-K, K]``, ``K = 2**(latent_bits-1)-1``,
into a byte string and back, exactly.

Model (see ``docs/format.md`` for the bit stream):

* Channels are coded in order. Inside a channel the positions are visited
  coarse-to-fine, like an interlaced image: first position ``(0, 0)``, then for
  each step ``s = S, S/2, ..., 2`` (``S`` the smallest power of two >= the grid's
  largest side) the "diagonal" pass (both coordinates odd multiples of ``s/2``)
  and the "axial" pass (exactly one coordinate an odd multiple of ``s/2``). Every
  position of a pass has up to four already-decoded neighbours at distance
  ``s/2``, so a whole pass is predicted and coded in a few vectorised calls. A 1D
  grid is the 2D scheme with ``H = 1``.
* Prediction: the mean of the two middle values of the four neighbours (missing
  neighbours at the border are replaced by the mean of the present ones). The
  residual is wrapped modulo ``2K+1`` into ``[-K, K]`` and zigzag-mapped to
  ``z`` in ``[0, 2K]``.
* ``z`` is split into a token (``z`` itself below 64; above, the exponent and two
  leading mantissa bits, 104 tokens in all) and raw low bits coded uniformly.
* Context: the spread of the neighbours around the prediction, bucketed on a
  half-octave log scale (32 buckets). For each (channel, context) the encoder picks
  the stored table that minimises the code length and sends its index (one byte,
  coded when the context first occurs), so the model adapts to every signal.

This module codes these symbols in the *interlaced* order of blob formats 1 and 2
(channel by channel, pass by pass, described here and in ``docs/format.md``).
Format 3 codes the same symbols in a batched order, every channel of a pass at
once (``_entropy_batched``); ``encode_latents`` and ``decode_latents`` take the
format ``version``.

Everything the decoder computes is integer arithmetic on decoded integers; the
probability tables are integer frequencies loaded from
``data/entropy_tables.npy`` (verified against a pinned SHA-256), converted exactly
to float64 only at the constriction boundary. Floats are used by the *encoder*
alone, to choose table indices that it then transmits.
"""

import collections
import functools
import hashlib
import threading
from pathlib import Path
from typing import NamedTuple

import constriction
import numpy as np

from .metrics import entropy_bits

__all__ = [
    "LATEST_VERSION",
    "MAX_LATENT_VALUES",
    "VERSIONS",
    "decode_latents",
    "empirical_entropy_bits",
    "encode_latents",
    "ideal_code_length_bits",
    "latent_bound",
]

#: Blob format versions whose payloads this module reads and writes; 1 and 2
#: share one symbol order, 3 is the batched order.
VERSIONS = (1, 2, 3)
LATEST_VERSION = 3
#: Largest number of latent values one payload may declare.
MAX_LATENT_VALUES = 2**31 - 1

_DIRECT = 64  # residual magnitudes z < 64 are their own token
_N_TOKENS = 104  # 64 direct + 4 sub-buckets for each exponent 6..15
_N_CONTEXTS = 32
_N_TABLES = 256  # a table index is one byte
_TABLE_TOTAL = 1 << 22  # target sum of the stored integer frequencies
_SENTINEL = 0x5A3C  # 16-bit end marker; catches most corrupted payloads
_MIN_BITS, _MAX_BITS = 2, 16
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


class _Channel(NamedTuple):
    """Encoder-side analysis of one channel: per pass contexts and symbols."""

    mode: int  # predictor mode, an index into _SHRINK
    ctx: list  # per pass (n,) int64 contexts
    tok: list  # per pass (n,) tokens of the zigzag residuals
    nbits: list  # per pass (n,) raw bits after each token
    extra: list  # per pass (n,) those raw bits
    tables: np.ndarray  # (_N_CONTEXTS,) chosen table index per context
    bits: float  # ideal code length of the channel, side information included


def latent_bound(latent_bits):
    """Return ``K = 2**(latent_bits-1) - 1``, the largest latent magnitude.

    Parameters
    ----------
    latent_bits : int
        Bits per latent, 2 to 16.

    Returns
    -------
    int
        The bound ``K``; latents lie in ``[-K, K]``.
    """
    if (
        isinstance(latent_bits, bool)
        or not isinstance(latent_bits, (int, np.integer))
        or not _MIN_BITS <= int(latent_bits) <= _MAX_BITS
    ):
        raise ValueError(
            f"latent_bits must be an integer in [{_MIN_BITS}, {_MAX_BITS}], "
            f"got {latent_bits!r}"
        )
    return (1 << (int(latent_bits) - 1)) - 1


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


def _predict(x, p, mode):
    """Integer prediction and context for the positions of pass ``p``.

    ``x`` is the flat int64 channel ``(H*W,)``, or channels ``(C, H*W)`` at
    once; only positions of earlier passes are read. ``mode`` indexes
    ``_SHRINK``. Returns ``pred`` and ``ctx`` of shape ``(..., n)``.
    """
    n = p.pos.size
    if p.nbr is None:  # the first position: nothing decoded around it yet
        lead = x.shape[:-1]
        return np.zeros((*lead, n), dtype=np.int64), np.full(
            (*lead, n), _N_CONTEXTS - 1
        )
    v = x[..., p.nbr]  # (..., 4, n)
    total = np.where(p.present, v, 0).sum(axis=-2)
    mean = (2 * total + p.count) // (2 * p.count)
    v = np.where(p.present, v, mean[..., None, :])
    # The two middle values of four, without sorting: all four less the extremes.
    middle = v.sum(axis=-2) - v.min(axis=-2) - v.max(axis=-2)
    pred = (_SHRINK[mode] * middle + 4) >> 3
    spread = np.abs(v - pred[..., None, :]).sum(axis=-2)
    return pred, _context(spread)


@sized_cache(_CACHE_BYTES)
def _joint_schedule(height, width):
    """All passes after the first as one, for the encoder, which knows every
    value and so can predict every pass at once; and where the passes split."""
    passes = _schedule(height, width)
    rest = passes[1:]
    sizes = np.cumsum([p.pos.size for p in passes])[:-1]
    if not rest:
        return None, sizes
    joint = _Pass(
        np.concatenate([p.pos for p in rest]),
        np.concatenate([p.nbr for p in rest], axis=1),
        np.concatenate([p.present for p in rest], axis=1),
        np.concatenate([p.count for p in rest]),
    )
    return joint, sizes


def _wrap(r, bound):
    """Wrap ``r`` into ``[-bound, bound]`` modulo ``2*bound+1``."""
    return (r + bound) % (2 * bound + 1) - bound


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _as_grid(q, bound):
    """Validate ``q`` and return it as int64 ``(C, H, W)`` (1D grids get ``H = 1``)."""
    q = np.asarray(q)
    if q.ndim not in (2, 3) or min(q.shape) < 1:
        raise ValueError(
            f"latents must have shape (C, H, W) or (C, L) with every size >= 1, "
            f"got {q.shape}"
        )
    if q.size > MAX_LATENT_VALUES:
        raise ValueError(f"too many latents: {q.size} > {MAX_LATENT_VALUES}")
    if q.dtype.kind in "iu":
        grid = q.astype(np.int64)
    elif q.dtype.kind == "f":
        if not np.all(np.isfinite(q)) or np.any(q != np.round(q)):
            raise ValueError("latents must be integer-valued")
        if np.abs(q).max() > bound:
            raise ValueError(f"latents must lie in [-{bound}, {bound}]")
        grid = q.astype(np.int64)
    else:
        raise ValueError(f"latents must be an integer array, got dtype {q.dtype}")
    if grid.min() < -bound or grid.max() > bound:
        raise ValueError(
            f"latents must lie in [-{bound}, {bound}], got [{grid.min()}, {grid.max()}]"
        )
    if grid.ndim == 2:
        grid = grid[:, None, :]
    return grid


def _check_shape(shape):
    """Validate a declared latent grid shape, returning it as a tuple of ints."""
    try:
        dims = tuple(int(d) for d in shape)
        ok = all(int(d) == d for d in shape)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"invalid latent shape {shape!r}") from None
    if not ok or len(dims) not in (2, 3) or min(dims) < 1:
        raise ValueError(f"invalid latent shape {shape!r}")
    n = 1
    for d in dims:
        n *= d
    if n > MAX_LATENT_VALUES:
        raise ValueError(f"latent shape {dims} declares too many values")
    return dims


# --------------------------------------------------------------------------------------
# Encoder side
# --------------------------------------------------------------------------------------


def _analyse(grid, bound):
    """Predict, tokenise and choose mode and tables per channel (encoder only).

    Predictions of all channels and passes are computed at once (the encoder
    knows every value); costs and choices stay per channel, computed exactly
    as the decoder-side order of passes implies.
    """
    n_chan, height, width = grid.shape
    passes = _schedule(height, width)
    joint, splits = _joint_schedule(height, width)
    x = grid.reshape(n_chan, -1)
    logp = _log2_probs(_n_valid_tokens(bound))
    n_tok = logp.shape[1]
    best = [None] * n_chan
    for mode in range(len(_SHRINK)):
        parts = [_predict(x, passes[0], mode)]
        pos = passes[0].pos
        if joint is not None:
            parts.append(_predict(x, joint, mode))
            pos = np.concatenate([pos, joint.pos])
        pred = np.concatenate([p for p, _ in parts], axis=1)
        ctx = np.concatenate([c for _, c in parts], axis=1)
        r = _wrap(x[:, pos] - pred, bound)
        z = np.where(r >= 0, 2 * r, -2 * r - 1)
        tok, nbits, extra = _tokenize(z)
        for c in range(n_chan):
            counts = np.bincount(ctx[c] * n_tok + tok[c], minlength=_N_CONTEXTS * n_tok)
            # einsum, not BLAS: OpenBLAS threads stall on this tiny product when
            # the cores are busy (measured 0.05 ms vs 16 ms under load).
            counts = counts.reshape(_N_CONTEXTS, n_tok).astype(np.float64)
            cost = np.einsum("ct,kt->ck", counts, logp)
            # The float costs only choose; the choice is transmitted, never
            # recomputed by the decoder.
            tables = np.argmin(cost, axis=1)
            used = np.unique(ctx[c])
            bits = cost[used, tables[used]].sum() + 8 * used.size + nbits[c].sum()
            if best[c] is None or bits < best[c].bits:
                per_pass = (np.split(a[c], splits) for a in (ctx, tok, nbits, extra))
                best[c] = _Channel(mode, *per_pass, tables, float(bits))
    return best


def encode_latents(q, latent_bits, *, version=LATEST_VERSION):
    """Entropy-code an integer latent grid.

    Parameters
    ----------
    q : array-like of int, shape (C, H, W) or (C, L)
        Integer latents in ``[-K, K]``, ``K = 2**(latent_bits-1) - 1``. Float arrays
        holding integer values are accepted.
    latent_bits : int
        Bits per latent, 2 to 16.
    version : {1, 2, 3}, default=3
        Blob format version whose symbol order to write: 3, the batched order
        (``_entropy_batched``); 1 and 2 share the original interlaced order.

    Returns
    -------
    bytes
        The payload: constriction range-coder words, little-endian uint32.
        Decode it with :func:`decode_latents` given the same shape, bits and
        version.
    """
    bound = latent_bound(latent_bits)
    version = _check_version(version)
    grid = _as_grid(q, bound)
    if version == 3:
        from . import _entropy_batched

        return _entropy_batched.encode(grid, bound).astype("<u4").tobytes()
    models = _ModelCache(_n_valid_tokens(bound))
    uniform = _models.Uniform()
    byte_model = _models.Uniform(_N_TABLES)
    mode_model = _models.Uniform(len(_SHRINK))
    enc = constriction.stream.queue.RangeEncoder()
    for chan in _analyse(grid, bound):
        enc.encode(chan.mode, mode_model)
        seen = np.zeros(_N_CONTEXTS, dtype=bool)
        for ctx, tok, nbits, extra in zip(chan.ctx, chan.tok, chan.nbits, chan.extra):
            present = np.unique(ctx)
            new = present[~seen[present]]
            if new.size:
                enc.encode(chan.tables[new].astype(np.int32), byte_model)
                seen[new] = True
            for k in present:
                sel = ctx == k
                enc.encode(tok[sel].astype(np.int32), models[int(chan.tables[k])])
            big = nbits > 0
            if big.any():
                sizes = (np.int64(1) << nbits[big]).astype(np.int32)
                enc.encode(extra[big].astype(np.int32), uniform, sizes)
    enc.encode(np.array([_SENTINEL], dtype=np.int32), _models.Uniform(1 << 16))
    return enc.get_compressed().astype("<u4").tobytes()


def empirical_entropy_bits(q):
    """Sum over channels of ``n * H(channel histogram)``, in bits.

    The cost of an ideal static per-channel code whose tables are free; the
    baseline a context model has to beat; :func:`sklearn_walloc.metrics.entropy_bits`
    with channels first.

    Parameters
    ----------
    q : array-like of int, shape (C, ...)

    Returns
    -------
    float
    """
    return entropy_bits(q, channel_axis=0)


def ideal_code_length_bits(q, latent_bits, *, version=LATEST_VERSION):
    """The model's own ideal code length of ``q``, in bits.

    Sum of ``-log2 p`` of every token under the (truncated, normalised) integer
    table actually used, plus the raw low bits, the one-byte table indices and the
    16-bit end marker. The coded size exceeds it only by the range coder's
    overhead (a few words) and constriction's fixed-point rounding.

    Parameters
    ----------
    q : array-like of int, shape (C, H, W) or (C, L)
    latent_bits : int
    version : {1, 2, 3}, default=3
        The format whose encoder choices to follow (version 3 chooses the
        predictor modes by a cheaper estimate).

    Returns
    -------
    float
    """
    bound = latent_bound(latent_bits)
    version = _check_version(version)
    grid = _as_grid(q, bound)
    if version == 3:
        from . import _entropy_batched

        return _entropy_batched.ideal_bits(grid, bound)
    total = 16.0 + 2.0 * grid.shape[0]  # end marker, predictor modes
    for chan in _analyse(grid, bound):
        total += chan.bits
    return total


# --------------------------------------------------------------------------------------
# Decoder side
# --------------------------------------------------------------------------------------


def decode_latents(payload, shape, latent_bits, *, version=LATEST_VERSION):
    """Decode a payload made by :func:`encode_latents`.

    Parameters
    ----------
    payload : bytes, bytearray or memoryview
        The coded latents.
    shape : tuple of int
        The latent grid shape, ``(C, H, W)`` or ``(C, L)``.
    latent_bits : int
        Bits per latent, 2 to 16.
    version : {1, 2, 3}, default=3
        Blob format version the payload was written for.

    Returns
    -------
    ndarray of int32, shape ``shape``

    Raises
    ------
    ValueError
        If the arguments are invalid or the payload is corrupted (detected by
        out-of-range symbols, the coder's own checks, or the end marker).
    """
    bound = latent_bound(latent_bits)
    version = _check_version(version)
    dims = _check_shape(shape)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError(f"payload must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if not payload or len(payload) % 4:
        raise ValueError(
            f"payload length must be a positive multiple of 4, got {len(payload)}"
        )
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    try:
        if version == 3:
            out = _decode_batched(words, dims, bound)
        else:
            out = _decode(words, dims, bound)
    except (ValueError, MemoryError):
        raise
    except Exception as exc:  # constriction signals corrupt data in its own ways
        raise ValueError(f"corrupted latent payload: {exc}") from exc
    return out


def _check_version(version):
    if isinstance(version, bool) or version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    return int(version)


def _decode_batched(words, dims, bound):
    from . import _entropy_batched

    dec = _Replaying(words)
    out = _entropy_batched.decode(dec, dims, bound)
    _check_canonical(dec)
    return out.astype(np.int32, copy=False)


def _check_canonical(dec):
    if not dec.canonical():
        raise ValueError(
            "corrupted latent payload: its words are not the encoder's for the "
            "decoded symbols (trailing or altered words)"
        )


def _decode(words, dims, bound):
    channels = dims[0]
    height, width = (1, dims[1]) if len(dims) == 2 else dims[1:]
    passes = _schedule(height, width)
    n_valid = _n_valid_tokens(bound)
    models = _ModelCache(n_valid)
    uniform = _models.Uniform()
    byte_model = _models.Uniform(_N_TABLES)
    mode_model = _models.Uniform(len(_SHRINK))
    dec = _Replaying(words)
    out = np.zeros((channels, height * width), dtype=np.int64)
    for c in range(channels):
        x = out[c]
        tables = np.zeros(_N_CONTEXTS, dtype=np.int64)
        seen = np.zeros(_N_CONTEXTS, dtype=bool)
        mode = int(dec.decode(mode_model, 1)[0])
        for p in passes:
            pred, ctx = _predict(x, p, mode)
            present = np.unique(ctx)
            new = present[~seen[present]]
            if new.size:
                tables[new] = dec.decode(byte_model, new.size)
                seen[new] = True
            tok = np.empty(p.pos.size, dtype=np.int64)
            for k in present:
                sel = ctx == k
                tok[sel] = dec.decode(
                    models[int(tables[k])], int(np.count_nonzero(sel))
                )
            if tok.min() < 0 or tok.max() >= n_valid:
                raise ValueError("corrupted latent payload: token out of range")
            nbits = _token_bits(tok)
            extra = np.zeros(p.pos.size, dtype=np.int64)
            big = nbits > 0
            if big.any():
                sizes = (np.int64(1) << nbits[big]).astype(np.int32)
                extra[big] = dec.decode(uniform, sizes)
            z = _detokenize(tok, extra)
            if z.max() > 2 * bound:
                raise ValueError("corrupted latent payload: residual out of range")
            r = np.where(z % 2 == 0, z // 2, -(z + 1) // 2)
            x[p.pos] = _wrap(pred + r, bound)
    end = dec.decode(_models.Uniform(1 << 16), 1)
    if int(end[0]) != _SENTINEL:
        raise ValueError("corrupted latent payload: end marker mismatch")
    _check_canonical(dec)
    return out.reshape(dims).astype(np.int32)


class _Replaying:
    """A range decoder that re-encodes every symbol it decodes.

    A payload is canonical when re-encoding what was read gives its words back
    exactly: words after the end marker, which the decoder never needs, are
    refused, as are alterations it happens to read through. The re-encoding
    uses the transmitted table choices, so it is integer-only and gives the
    same words on every machine (the encoder's float cost comparisons are not
    repeated).
    """

    def __init__(self, words):
        self.words = words
        self._dec = constriction.stream.queue.RangeDecoder(words)
        self._enc = constriction.stream.queue.RangeEncoder()

    def decode(self, model, arg):
        symbols = np.asarray(self._dec.decode(model, arg), dtype=np.int32)
        if isinstance(arg, np.ndarray):  # per-symbol parameters of the model
            self._enc.encode(symbols, model, arg)
        else:
            self._enc.encode(symbols, model)
        return symbols

    def canonical(self):
        again = self._enc.get_compressed()
        return again.shape == self.words.shape and bool(np.all(again == self.words))
