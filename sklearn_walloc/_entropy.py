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

from typing import NamedTuple

import constriction
import numpy as np

from . import _entropy_batched
from ._entropy_model import (  # noqa: F401 - the model's names, read here too
    _CACHE_BYTES,
    _DIRECT,
    _MAX_BITS,
    _MIN_BITS,
    _N_CONTEXTS,
    _N_TABLES,
    _N_TOKENS,
    _SENTINEL,
    _SHRINK,
    _TABLE_TOTAL,
    _TABLES_PATH,
    _TABLES_SHA256,
    _context,
    _detokenize,
    _log2_probs,
    _make_tables,
    _ModelCache,
    _models,
    _n_valid_tokens,
    _Pass,
    _schedule,
    _tables,
    _token_bits,
    _tokenize,
    _wrap,
    sized_cache,
)
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
#: share one symbol order, 3 is the batched order, which 4 and 5 keep.
VERSIONS = (1, 2, 3, 4, 5)
LATEST_VERSION = 4
#: Largest number of latent values one payload may declare.
MAX_LATENT_VALUES = 2**31 - 1


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
    version : {1, 2, 3, 4}, default=4
        Blob format version whose symbol order to write: 3 and 4, the batched order
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
    version : {1, 2, 3, 4}, default=4
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
    version : {1, 2, 3, 4}, default=4
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
    # Format 4 changed the header (a signed gain), not the payload.
    return min(int(version), 3)


def _decode_batched(words, dims, bound):
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

    def decode_runs(self, runs):
        """The symbols of ``(model, count)`` runs in turn, as one int32 array:
        :meth:`decode` of each, without its per-call conversions."""
        decode, encode = self._dec.decode, self._enc.encode
        out = []
        for model, count in runs:
            symbols = decode(model, count)
            encode(symbols, model)
            out.append(symbols)
        return np.concatenate(out).astype(np.int32, copy=False)

    def canonical(self):
        again = self._enc.get_compressed()
        return again.shape == self.words.shape and bool(np.all(again == self.words))
