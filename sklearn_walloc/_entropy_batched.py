"""The batched latent stream of blob format 3: every channel of a pass at once.

Format 3 keeps the model of formats 1 and 2 (``_entropy``): the same coarse-to-fine
passes, predictor modes, contexts, tokens and integer tables. Only the order of the
symbols changes, so that a pass is coded and decoded for all channels together, in
a handful of whole-array operations and one ``constriction`` call per table in use:

1. the predictor mode of every channel (U(4) each);
2. for each pass: the table index of every (channel, context) pair that occurs for
   the first time, in increasing ``(channel, context)`` order (U(256) each); the
   pass's tokens, the channels' positions listed channel by channel and then
   stably sorted by their table index, each coded with its table; the raw low bits
   of the large tokens, channel by channel, in position order;
3. the end marker.

The decoder knows a pass's contexts from the earlier passes, so it sorts exactly
as the encoder did. ``docs/format.md`` specifies the stream. The encoder picks each
channel's predictor mode by the order-0 entropy of its (context, token) histogram
plus side information, then the best stored table per (channel, context); both
choices are floats used by the encoder alone and transmitted.
"""

import functools
from typing import NamedTuple

import constriction
import numpy as np

from . import _entropy as _e

_models = constriction.stream.model
_TABLE_MODEL = _models.Uniform(_e._N_TABLES)
_MODE_MODEL = _models.Uniform(len(_e._SHRINK))
_RAW_MODEL = _models.Uniform()
_END_MODEL = _models.Uniform(1 << 16)


class _Step(NamedTuple):
    """One pass after the first, ready for whole-array prediction."""

    pos: np.ndarray  # (n,) flat positions in the channel
    nbr: np.ndarray  # (4, n) flat neighbour positions (0 where missing)
    border: np.ndarray  # (nb,) indices into the pass of positions missing neighbours
    present: np.ndarray  # (4, nb) bool, which of their neighbours exist
    count: np.ndarray  # (nb,) how many exist (>= 1)


class _Plan(NamedTuple):
    steps: tuple  # _Step per pass after the first
    bounds: np.ndarray  # (P + 1,) start of each pass (pass 0 is position 0)
    joint: _Step | None  # every pass after the first as one (the encoder's view)


def _step(p, offset=0):
    border = np.flatnonzero(p.count < 4)
    return _Step(p.pos, p.nbr, border + offset, p.present[:, border], p.count[border])


@functools.lru_cache(maxsize=8)
def _plan(height, width, joint=False):
    """The passes of an ``height x width`` channel; with ``joint``, also all of
    them as one, for the encoder (the decoder does not pay for it)."""
    passes = _e._schedule(height, width)
    steps = tuple(_step(p) for p in passes[1:])
    sizes = [p.pos.size for p in passes]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    if not (joint and steps):
        return _Plan(steps, bounds, None)
    joint = _Step(
        np.concatenate([s.pos for s in steps]),
        np.concatenate([s.nbr for s in steps], axis=1),
        np.concatenate([s.border + b - 1 for s, b in zip(steps, bounds[1:])]),
        np.concatenate([s.present for s in steps], axis=1),
        np.concatenate([s.count for s in steps]),
    )
    return _Plan(steps, bounds, joint)


@functools.lru_cache(maxsize=16)
def _luts(bound):
    """Integer lookup tables of the token map and context buckets for ``bound``.

    The same integer functions as ``_entropy`` evaluated once over their whole
    domain, so a pass costs one gather each instead of a chain of shifts.
    """
    span = 2 * bound
    # x - prediction, both in [-K, K], to the zigzag of its wrapped value
    d = np.arange(-span, span + 1, dtype=np.int64)
    r = _e._wrap(d, bound)
    zigzag = np.where(r >= 0, 2 * r, -2 * r - 1).astype(np.int32)
    z = np.arange(span + 1, dtype=np.int64)
    tok, nbits, _ = _e._tokenize(z)
    # the spread is a sum of four |v - p| <= 2K
    ctx = _e._context(np.arange(4 * span + 1, dtype=np.int64)).astype(np.int32)
    n_valid = int(tok[-1]) + 1
    tok_bits = _e._token_bits(np.arange(n_valid, dtype=np.int64)).astype(np.int32)
    for a in (zigzag, tok, nbits, ctx, tok_bits):
        a.setflags(write=False)
    return zigzag, tok.astype(np.int32), nbits.astype(np.int32), ctx, tok_bits


@functools.lru_cache(maxsize=16)
def _key_luts(bound):
    """Token of ``x - prediction`` (offset by 2K) and ``context * V`` of a spread."""
    zigzag, tok, _, ctx, tok_bits = _luts(bound)
    n_valid = tok_bits.size
    return tok[zigzag], (ctx * n_valid).astype(np.int32)


def _middle(x, step):
    """The four neighbours ``(C, 4, n)`` of a pass and the sum of their middle two."""
    v = x[:, step.nbr]
    if step.border.size:
        vb = v[:, :, step.border]
        total = np.where(step.present, vb, 0).sum(axis=1)
        mean = (2 * total + step.count) // (2 * step.count)
        v[:, :, step.border] = np.where(step.present, vb, mean[:, None, :])
    a, b, c, d = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
    low = np.minimum(np.minimum(a, b), np.minimum(c, d))
    high = np.maximum(np.maximum(a, b), np.maximum(c, d))
    return v, a + b + c + d - low - high


def _predict(v, middle, shrink, ctx_lut):
    """Prediction and context of each position; ``shrink`` is a scalar or ``(C, 1)``."""
    pred = (shrink * middle + 4) >> 3
    spread = np.abs(v[:, 0] - pred)
    for k in (1, 2, 3):
        spread += np.abs(v[:, k] - pred)
    return pred, ctx_lut[spread]


@functools.cache
def _probabilities(n_valid):
    """The stored tables truncated to ``n_valid`` tokens, as exact float64 rows."""
    probs = _e._tables()[:, :n_valid].astype(np.float64)
    probs.setflags(write=False)
    return probs


_FAMILY = _models.Categorical(perfect=False)
# A group costs one constriction call and a model; a symbol coded with its own
# probability row costs a row of V floats. Below this many symbols per table in a
# pass, one call with a row per symbol is the faster of the two (the decoder's
# calls cost more: each is replayed).
_ROWS_PER_CALL = {"encode": 8, "decode": 64}


def _groups(sorted_tab, models, probs):
    """The constriction calls that code one pass's table-sorted tokens.

    Yields ``(slice, model, count or rows)``, the decoder's calls (the encoder
    makes the same kind of calls over its whole sorted grid at once). Both
    code each token with ``Categorical(perfect=False)`` over its table's row:
    per table group with one model, or all at once with a row per symbol, which
    ``constriction`` documents (and the tests check) to be the same code.
    """
    n = sorted_tab.size
    cuts = np.flatnonzero(sorted_tab[1:] != sorted_tab[:-1]) + 1
    if n < _ROWS_PER_CALL["decode"] * (cuts.size + 1):
        yield slice(0, n), _FAMILY, probs[sorted_tab]
        return
    bounds = np.concatenate([[0], cuts, [n]])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        yield slice(lo, hi), models[int(sorted_tab[lo])], hi - lo


# --------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------


class _Choice(NamedTuple):
    modes: np.ndarray  # (C,) predictor mode per channel
    pair: np.ndarray  # (C, N) 32 * channel + context per position, in pass order
    tok: np.ndarray  # (C, N) token per position
    nbits: np.ndarray  # (C, N) raw bits after each token
    extra: np.ndarray  # (C, N) those raw bits (0 where none)
    tables: np.ndarray  # (C * 32,) table index per (channel, context)
    used: np.ndarray  # (C * 32,) bool, the pair occurs
    cost: np.ndarray  # (C * 32,) ideal bits of its tokens under its table


@functools.cache
def _log2_probs_t(n_valid):
    """``-log2`` of the stored tables, float32, ``(n_valid, 256)`` (encoder only)."""
    return np.ascontiguousarray(_e._log2_probs(n_valid).T, dtype=np.float32)


def _best_tables(counts, n_valid):
    """The cheapest stored table of each row of token counts, and its bits."""
    tables = np.zeros(counts.shape[0], dtype=np.int64)
    bits = np.zeros(counts.shape[0])
    used = np.flatnonzero(counts.sum(axis=1))
    if used.size:
        # Tokens no row uses add nothing: leave them out of the product.
        top = int(np.flatnonzero(counts[used].sum(axis=0))[-1]) + 1
        # einsum, not BLAS: OpenBLAS threads stall on small products when the
        # cores are busy. float32 is exact for the counts and ample to choose
        # a table (the choice is transmitted, never recomputed).
        cost = np.einsum(
            "rt,tk->rk",
            counts[used, :top].astype(np.float32),
            _log2_probs_t(n_valid)[:top],
        )
        tables[used] = np.argmin(cost, axis=1)
        bits[used] = cost[np.arange(used.size), tables[used]]
    return tables, bits, used


def _entropy_bits(counts):
    """Order-0 entropy of each row of counts, in bits: a lower bound on the bits
    of those tokens under any table (Gibbs' inequality)."""
    c = counts.astype(np.float64)
    n = c.sum(axis=1)
    return n * np.log2(np.maximum(n, 1)) - (c * np.log2(np.maximum(c, 1))).sum(axis=1)


def _choose(x, bound, plan):
    """Pick mode and tables per channel for the flat channels ``x`` ``(C, H*W)``.

    A mode's exact cost is the bits of its tokens under the best stored table of
    each (channel, context), 8 bits per table index, and the raw bits. It is
    evaluated for each channel's most promising mode first, then only for the
    modes whose lower bound (entropy instead of the best table) can still beat
    it: the same choice as evaluating every mode, at a fraction of the cost.
    """
    n_chan = x.shape[0]
    _, _, _, _, tok_bits = _luts(bound)
    n_valid = tok_bits.size
    n_ctx = _e._N_CONTEXTS
    n_modes = len(_e._SHRINK)
    pos = np.zeros(1, dtype=np.int64)
    if plan.joint is not None:
        pos = np.concatenate([pos, plan.joint.pos])
        v, middle = _middle(x, plan.joint)
    target = x[:, pos] + 2 * bound  # offset into the zigzag table
    tok_of_d, ctx_key = _key_luts(bound)
    offset = (np.arange(n_chan, dtype=np.int32)[:, None] * n_ctx) * n_valid
    n_keys = n_chan * n_ctx * n_valid
    first = offset[:, 0] + (n_ctx - 1) * n_valid  # position 0: prediction 0

    def keys_for(shrink):
        keys = np.empty((n_chan, pos.size), dtype=np.int32)
        keys[:, 0] = first + tok_of_d[target[:, 0]]
        if plan.joint is not None:
            if shrink == 0:
                pred = 0
                spread = np.abs(v[:, 0])
                for k in (1, 2, 3):
                    spread += np.abs(v[:, k])
            else:
                pred = (shrink * middle + 4) >> 3
                spread = np.abs(v[:, 0] - pred)
                for k in (1, 2, 3):
                    spread += np.abs(v[:, k] - pred)
            body = keys[:, 1:]
            np.add(ctx_key[spread], tok_of_d[target[:, 1:] - pred], out=body)
            body += offset
        return keys

    keys, counts = [], []
    lower = np.empty((n_modes, n_chan))
    for m, shrink in enumerate(_e._SHRINK):
        keys.append(keys_for(shrink))
        c = np.bincount(keys[-1].ravel(), minlength=n_keys).reshape(-1, n_valid)
        counts.append(c)
        raw = c.reshape(n_chan, n_ctx, n_valid).sum(axis=1) @ tok_bits
        side = 8 * (c.sum(axis=1) > 0).reshape(n_chan, n_ctx).sum(axis=1) + raw
        lower[m] = _entropy_bits(c).reshape(n_chan, n_ctx).sum(axis=1) + side
        lower[m] -= 1e-6 * np.abs(lower[m])  # float rounding: keep it a bound
    exact = np.full((n_modes, n_chan), np.inf)
    tables = np.zeros((n_modes, n_chan * n_ctx), dtype=np.int64)
    costs = np.zeros((n_modes, n_chan * n_ctx))

    def evaluate(m, chans):
        rows = (chans[:, None] * n_ctx + np.arange(n_ctx)).ravel()
        t, bits, _ = _best_tables(counts[m][rows], n_valid)
        tables[m, rows], costs[m, rows] = t, bits
        c = counts[m][rows].reshape(chans.size, n_ctx, n_valid)
        side = 8 * (c.sum(axis=2) > 0).sum(axis=1) + c.sum(axis=1) @ tok_bits
        exact[m, chans] = bits.reshape(chans.size, n_ctx).sum(axis=1) + side

    promising = np.argmin(lower, axis=0)
    for m in range(n_modes):
        chans = np.flatnonzero(promising == m)
        if chans.size:
            evaluate(m, chans)
    best = exact.min(axis=0)
    for m in range(n_modes):
        chans = np.flatnonzero((promising != m) & (lower[m] <= best))
        if chans.size:
            evaluate(m, chans)
    modes = np.argmin(exact, axis=0)
    chan = np.arange(n_chan)
    chosen = np.empty_like(keys[0])
    for c, m in enumerate(modes.tolist()):
        chosen[c] = keys[m][c]
    pair = chosen // n_valid
    tok = chosen - pair * n_valid
    nbits = tok_bits[tok]
    extra = np.zeros_like(tok)
    big = np.nonzero(nbits)
    if big[0].size:  # the raw bits, where a token has any (rare for small K)
        zigzag = _luts(bound)[0]
        shrink = np.asarray(_e._SHRINK, dtype=np.int32)[modes][big[0]]
        mid = np.zeros(big[0].size, dtype=np.int32)
        inner = big[1] > 0
        if plan.joint is not None:
            mid[inner] = middle[big[0][inner], big[1][inner] - 1]
        pred = np.where(inner, (shrink * mid + 4) >> 3, 0)
        z = zigzag[target[big] - pred]
        extra[big] = z & ((1 << nbits[big]) - 1)
    tables = tables[modes[:, None], chan[:, None] * n_ctx + np.arange(n_ctx)].ravel()
    cost = costs[modes[:, None], chan[:, None] * n_ctx + np.arange(n_ctx)].ravel()
    used = np.zeros(n_chan * n_ctx, dtype=bool)
    used[pair.ravel()] = True
    return _Choice(modes, pair, tok, nbits, extra, tables, used, cost)


def ideal_bits(grid, bound):
    """Ideal code length of the format-3 stream of ``grid`` ``(C, H, W)``, in bits."""
    n_chan, height, width = grid.shape
    x = grid.reshape(n_chan, -1).astype(np.int32)
    choice = _choose(x, bound, _plan(height, width, True))
    return float(
        16 + 2 * n_chan + choice.cost.sum() + 8 * choice.used.sum()
        + choice.nbits.sum()
    )  # fmt: skip


def encode(grid, bound):
    """Code the int grid ``(C, H, W)`` in the format-3 order; returns uint32 words."""
    n_chan, height, width = grid.shape
    plan = _plan(height, width, True)
    choice = _choose(grid.reshape(n_chan, -1).astype(np.int32), bound, plan)
    n_valid = _e._n_valid_tokens(bound)
    n_ctx = _e._N_CONTEXTS
    models = _e._ModelCache(n_valid)
    tab = choice.tables[choice.pair]
    n_pass = plan.bounds.size - 1
    # The pass in which each (channel, context) pair first occurs.
    first = np.full(n_chan * n_ctx, n_pass, dtype=np.int64)
    for p in range(n_pass - 1, -1, -1):
        lo, hi = plan.bounds[p], plan.bounds[p + 1]
        seen = np.bincount(choice.pair[:, lo:hi].ravel(), minlength=first.size) > 0
        first[seen] = p
    # Every pass's symbols, channel by channel, then sorted by (pass, table):
    # one stable sort for the whole grid.
    blocks = [slice(plan.bounds[p], plan.bounds[p + 1]) for p in range(n_pass)]
    order_tok = np.concatenate([choice.tok[:, s].ravel() for s in blocks])
    order_tab = np.concatenate([tab[:, s].ravel() for s in blocks])
    nbits = np.concatenate([choice.nbits[:, s].ravel() for s in blocks])
    extra = np.concatenate([choice.extra[:, s].ravel() for s in blocks])
    sizes = [n_chan * (s.stop - s.start) for s in blocks]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pass_of = np.repeat(np.arange(n_pass), np.diff(starts))
    # 16-bit keys sort by radix (at most 63 passes of 256 tables)
    sort_key = (pass_of * _e._N_TABLES + order_tab).astype(np.int16)
    order = np.argsort(sort_key, kind="stable")
    sorted_tok = order_tok[order]
    sorted_key = sort_key[order]
    # Runs of one table within one pass: one constriction call each, except in
    # passes with few symbols per run, coded in one call with a row per symbol.
    cuts = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
    run_start = np.concatenate([[0], cuts])
    run_end = np.concatenate([cuts, [sorted_key.size]])
    run_key = sorted_key[run_start].astype(np.int64)
    run_pass = run_key // _e._N_TABLES
    run_table = (run_key % _e._N_TABLES).tolist()
    pass_runs = np.searchsorted(run_pass, np.arange(n_pass + 1)).tolist()
    run_start, run_end = run_start.tolist(), run_end.tolist()
    probs = _probabilities(n_valid)
    limit = _ROWS_PER_CALL["encode"]

    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(choice.modes.astype(np.int32), _MODE_MODEL)
    for p in range(n_pass):
        new = np.flatnonzero(first == p)
        if new.size:
            enc.encode(choice.tables[new].astype(np.int32), _TABLE_MODEL)
        r0, r1 = pass_runs[p], pass_runs[p + 1]
        lo, hi = int(starts[p]), int(starts[p + 1])
        if hi - lo < limit * (r1 - r0):
            rows = probs[(sorted_key[lo:hi] % _e._N_TABLES)]
            enc.encode(sorted_tok[lo:hi], _FAMILY, rows)
        else:
            for r in range(r0, r1):
                enc.encode(
                    sorted_tok[run_start[r] : run_end[r]], models[run_table[r]]
                )
        big = nbits[lo:hi] > 0
        if big.any():
            enc.encode(
                extra[lo:hi][big].astype(np.int32),
                _RAW_MODEL,
                (np.int32(1) << nbits[lo:hi][big]).astype(np.int32),
            )
    enc.encode(np.array([_e._SENTINEL], dtype=np.int32), _END_MODEL)
    return enc.get_compressed()


# --------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------


def decode(dec, dims, bound):
    """Decode a format-3 stream from ``dec`` (an ``_entropy._Replaying``)."""
    n_chan = dims[0]
    height, width = (1, dims[1]) if len(dims) == 2 else dims[1:]
    plan = _plan(height, width)
    zigzag, _, _, ctx_lut, tok_bits = _luts(bound)
    n_valid = tok_bits.size
    n_ctx = _e._N_CONTEXTS
    models = _e._ModelCache(n_valid)
    probs = _probabilities(n_valid)
    modulus = 2 * bound + 1
    x = np.zeros((n_chan, height * width), dtype=np.int32)
    tables = np.zeros(n_chan * n_ctx, dtype=np.int16)  # 16 bits: radix sorts
    seen = np.zeros(n_chan * n_ctx, dtype=bool)
    rows = np.arange(n_chan)[:, None] * n_ctx
    modes = dec.decode(_MODE_MODEL, n_chan)
    shrink = np.asarray(_e._SHRINK, dtype=np.int32)[modes][:, None]
    first = _e._Pass(np.zeros(1, dtype=np.int64), None, None, None)
    for step in (first, *plan.steps):
        n = step.pos.size
        if step.nbr is None:
            pred = np.zeros((n_chan, 1), dtype=np.int32)
            ctx = np.full((n_chan, 1), n_ctx - 1, dtype=np.int32)
        else:
            v, middle = _middle(x, step)
            pred, ctx = _predict(v, middle, shrink, ctx_lut)
        keys = (rows + ctx).ravel()
        new = (np.bincount(keys, minlength=n_chan * n_ctx) > 0) & ~seen
        if new.any():
            idx = np.flatnonzero(new)
            tables[idx] = dec.decode(_TABLE_MODEL, idx.size)
            seen |= new
        tab = tables[keys]
        order = np.argsort(tab, kind="stable")
        sorted_tab = tab[order]
        tok_sorted = np.empty(tab.size, dtype=np.int32)
        for sel, model, arg in _groups(sorted_tab, models, probs):
            tok_sorted[sel] = dec.decode(model, arg)
        if tok_sorted.min() < 0 or tok_sorted.max() >= n_valid:
            raise ValueError("corrupted latent payload: token out of range")
        tok = np.empty_like(tok_sorted)
        tok[order] = tok_sorted
        nbits = tok_bits[tok]
        z = tok
        big = np.flatnonzero(nbits)
        if big.size:
            raw = dec.decode(_RAW_MODEL, (np.int32(1) << nbits[big]).astype(np.int32))
            t = tok[big]
            top = 4 | ((t - _e._DIRECT) & 3)
            z = tok.copy()
            z[big] = (top << nbits[big]) | raw
            if z.max() > 2 * bound:
                raise ValueError("corrupted latent payload: residual out of range")
        r = (z >> 1) ^ -(z & 1)  # the inverse zigzag
        value = pred.ravel() + r
        value -= modulus * (value > bound)
        value += modulus * (value < -bound)
        x[:, step.pos] = value.reshape(n_chan, n)
    del zigzag
    end = dec.decode(_END_MODEL, 1)
    if int(end[0]) != _e._SENTINEL:
        raise ValueError("corrupted latent payload: end marker mismatch")
    return x.reshape(dims)
