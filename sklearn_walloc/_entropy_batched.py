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
import itertools
from typing import NamedTuple

import constriction
import numpy as np

from . import _entropy_model as _e

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


@_e.sized_cache(_e._CACHE_BYTES)
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
    return tok[zigzag].astype(np.intp), (ctx * n_valid).astype(np.intp)


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
    return pred, ctx_lut[spread.astype(np.intp)]  # intp: the fast gather


#: Positions per slice when the decoder predicts a pass: the neighbours and the
#: temporaries of a whole pass are ~20 values per latent, which for a large
#: photo's last pass is hundreds of MB; slices keep that to a few MB.
_PREDICT_SLICE = 1 << 15


def _slices(step, size):
    """``(a, b, part)``: the positions ``a .. b - 1`` of ``step`` as a step of
    their own, ``size`` at a time (one slice if it has no more)."""
    n = step.pos.size
    if n <= size:
        yield 0, n, step
        return
    starts = np.arange(0, n + size, size)
    cuts = np.searchsorted(step.border, starts)
    for k, a in enumerate(range(0, n, size)):
        b = min(a + size, n)
        lo, hi = cuts[k], cuts[k + 1]
        part = _Step(
            step.pos[a:b],
            step.nbr[:, a:b],
            step.border[lo:hi] - a,
            step.present[:, lo:hi],
            step.count[lo:hi],
        )
        yield a, b, part


@functools.cache
def _probabilities(n_valid):
    """The stored tables truncated to ``n_valid`` tokens, as exact float64 rows."""
    probs = _e._tables()[:, :n_valid].astype(np.float64)
    probs.setflags(write=False)
    return probs


_FAMILY = _models.Categorical(perfect=False)
# A group costs one constriction call and a model; a symbol coded with its own
# probability row costs a row of V floats. Below this many symbols per table in a
# pass, one call with a row per symbol is the faster of the two. Measured on the
# held-out photos' latents (2 shared cores): decode is flat from 8 to 24 and 12%
# slower at 64; encode is flat from 2 to 16. Either choice gives the same code.
_ROWS_PER_CALL = {"encode": 8, "decode": 16}


# --------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------


class _Choice(NamedTuple):
    modes: np.ndarray  # (C,) predictor mode per channel
    pair: np.ndarray  # (C, N) intp, 32 * channel + context per position, in pass order
    tok: np.ndarray  # (C, N) token per position
    n_raw: int  # raw bits after all the tokens
    big: tuple  # (channels, positions) of the tokens with raw bits, C-major
    nbits: np.ndarray  # how many raw bits each of them has
    extra: np.ndarray  # and those bits
    tables: np.ndarray  # (C * 32,) table index per (channel, context)
    used: np.ndarray  # (C * 32,) bool, the pair occurs
    cost: np.ndarray  # (C * 32,) ideal bits of its tokens under its table


@functools.cache
def _log2_probs_t(n_valid):
    """``-log2`` of the stored tables, float32, ``(n_valid, 256)`` (encoder only)."""
    return np.ascontiguousarray(_e._log2_probs(n_valid).T, dtype=np.float32)


# OpenBLAS (NumPy's wheels) runs a product of at most about 2**19 multiply-adds
# on the calling thread and hands larger ones to its thread pool, whose threads
# stall for milliseconds when the cores are busy: measured on 2 shared cores,
# (1536 x 40) @ (40 x 256) took 0.5 ms in chunks of this size, 2 ms with einsum
# and 2-24 ms in one call.
_PRODUCT_CHUNK = 1 << 19


def _small_products(a, b):
    """``a @ b``, row chunks small enough for BLAS to run on this thread."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    step = max(1, _PRODUCT_CHUNK // max(1, a.shape[1] * b.shape[1]))
    for lo in range(0, a.shape[0], step):
        np.matmul(a[lo : lo + step], b, out=out[lo : lo + step])
    return out


def _best_tables(counts, n_valid):
    """The cheapest stored table of each row of token counts, and its bits."""
    tables = np.zeros(counts.shape[0], dtype=np.int64)
    bits = np.zeros(counts.shape[0])
    used = np.flatnonzero(counts.sum(axis=1))
    if used.size:
        # Tokens no row uses add nothing: leave them out of the product.
        top = int(np.flatnonzero(counts[used].sum(axis=0))[-1]) + 1
        # float32 is exact for the counts and ample to choose a table (the
        # choice is transmitted, never recomputed).
        cost = _small_products(
            counts[used, :top].astype(np.float32), _log2_probs_t(n_valid)[:top]
        )
        tables[used] = np.argmin(cost, axis=1)
        bits[used] = cost[np.arange(used.size), tables[used]]
    return tables, bits, used


@functools.lru_cache(maxsize=8)
def _xlog2x(n):
    """``k * log2(k)`` for ``k`` in ``0..n`` (0 for 0 and 1), float64 (encoder only).

    The same elementwise values as computing it on the counts, gathered instead.
    """
    k = np.arange(n + 1, dtype=np.float64)
    out = k * np.log2(np.maximum(k, 1))
    out.setflags(write=False)
    return out


def _entropy_bits(counts, totals, xlog2x):
    """Order-0 entropy of each row of counts, in bits: a lower bound on the bits
    of those tokens under any table (Gibbs' inequality). ``totals`` are the row
    sums; ``xlog2x`` the table of ``k log2 k`` up to the largest of them."""
    return xlog2x[totals] - xlog2x[counts].sum(axis=-1)


def _key_dtype(bound):
    """The narrowest integer type for the encoder's predictions and spreads:
    ``shrink * middle + 4`` reaches ``8K + 4`` and a spread ``8K``."""
    return np.int16 if 8 * bound + 4 < 2**15 else np.int32


#: Positions per slice when the encoder counts its modes' keys (each slice
#: holds 4 * C int64 keys per position and a few narrow temporaries).
_CHOOSE_SLICE = 1 << 16


def _keys(x, step, shrink, luts, out):
    """Write the (channel, context, token) key of every position of ``step``
    under predictor ``shrink`` (a scalar, or one per channel ``(C, 1)``) into
    ``out`` ``(C, n)``, for the channels ``x`` in the narrow key type; returns
    the middle sums."""
    tok_of_d, ctx_key, offset, shift = luts
    v, middle = _middle(x, step)
    target = x[:, step.pos]
    target += shift  # offset into the zigzag table
    pred = np.empty_like(middle)
    spread = np.empty_like(middle)
    tmp = np.empty_like(middle)
    if np.ndim(shrink) == 0 and shrink == 0:
        pred.fill(0)
    else:
        np.multiply(middle, shrink, out=pred)
        pred += 4
        pred >>= 3
    np.subtract(v[:, 0], pred, out=spread)
    np.abs(spread, out=spread)
    for k in (1, 2, 3):
        np.subtract(v[:, k], pred, out=tmp)
        np.abs(tmp, out=tmp)
        spread += tmp
    np.subtract(target, pred, out=tmp)
    np.add(ctx_key[spread.astype(np.intp)], tok_of_d[tmp.astype(np.intp)], out=out)
    out += offset
    return middle


def _choose(x, bound, plan):
    """Pick mode and tables per channel for the flat channels ``x`` ``(C, H*W)``.

    A mode's exact cost is the bits of its tokens under the best stored table of
    each (channel, context), 8 bits per table index, and the raw bits. It is
    evaluated for each channel's most promising mode first, then only for the
    modes whose lower bound (entropy instead of the best table) can still beat
    it: the same choice as evaluating every mode, at a fraction of the cost.
    The four modes' (channel, context, token) histograms come from a
    ``bincount`` over ``(mode, channel, context, token)`` keys per slice of
    positions; then the chosen mode's keys are made again, slice by slice, so
    the memory is a few bytes per latent, not the 32 of every mode's keys.
    """
    n_chan = x.shape[0]
    _, _, _, _, tok_bits = _luts(bound)
    n_valid = tok_bits.size
    n_ctx = _e._N_CONTEXTS
    n_modes = len(_e._SHRINK)
    n_pos = 1 if plan.joint is None else 1 + plan.joint.pos.size
    dtype = _key_dtype(bound)
    tok_of_d, ctx_key = _key_luts(bound)
    n_keys = n_chan * n_ctx * n_valid
    offset = (np.arange(n_chan, dtype=np.int32)[:, None] * n_ctx) * n_valid
    # Keys (mode, channel, context, token), the mode's of each slice of
    # positions (see _keys). The arithmetic runs in the narrow type; the
    # gathers take intp indices (numpy converts any other index type element
    # by element, several times slower than one cast).
    # position 0: prediction 0, last context, in every mode
    first = offset[:, 0] + (n_ctx - 1) * n_valid + tok_of_d[x[:, 0] + 2 * bound]
    counts = np.zeros(n_modes * n_keys, dtype=np.intp)
    for m in range(n_modes):
        np.add.at(counts, first + n_keys * m, 1)
    luts = (tok_of_d, ctx_key, offset, 2 * bound)
    narrow = x.astype(dtype)
    keys = middle = None
    if plan.joint is not None:
        # The four modes' keys a slice of positions at a time: whole, they
        # were 4 * C * 8 bytes per position (1.5 GB for an 80 MP photo).
        for _, _, part in _slices(plan.joint, _CHOOSE_SLICE):
            keys = np.empty((n_modes, n_chan, part.pos.size), dtype=np.intp)
            for m, shrink in enumerate(_e._SHRINK):
                middle = _keys(narrow, part, shrink, luts, out=keys[m])
                keys[m] += n_keys * m
            counts += np.bincount(keys.ravel(), minlength=n_modes * n_keys)
        if part is not plan.joint:  # sliced: the chosen keys are made again
            keys = middle = None
    # Only the (mode, channel, context) rows that occur and the tokens up to the
    # largest in use: a small grid touches few of the 4 * C * 32 * V counts.
    flat = counts.reshape(-1, n_valid)
    totals = flat.sum(axis=1)
    used = np.flatnonzero(totals)
    top = int(np.flatnonzero(flat[used].any(axis=0))[-1]) + 1
    sub = flat[used, :top]
    group = used // n_ctx  # mode * C + channel
    n_groups = n_modes * n_chan
    raw = np.bincount(group, sub @ tok_bits[:top], n_groups).astype(np.int64)
    side = 8 * np.bincount(group, minlength=n_groups) + raw
    entropy = _entropy_bits(sub, totals[used], _xlog2x(n_pos))
    lower = np.bincount(group, entropy, n_groups) + side
    lower -= 1e-6 * np.abs(lower)  # float rounding: keep it a bound
    raw, side, lower = (a.reshape(n_modes, n_chan) for a in (raw, side, lower))
    counts = counts.reshape(n_modes, n_chan * n_ctx, n_valid)
    totals = totals.reshape(n_modes, n_chan * n_ctx)
    exact = np.full((n_modes, n_chan), np.inf)
    tables = np.zeros((n_modes, n_chan * n_ctx), dtype=np.int64)
    costs = np.zeros((n_modes, n_chan * n_ctx))

    def evaluate(ms, chans):
        """Exact cost of mode ``ms[i]`` for channel ``chans[i]``, all in one go."""
        rows = (chans[:, None] * n_ctx + np.arange(n_ctx)).ravel()
        of_mode = np.repeat(ms, n_ctx)
        t, bits, _ = _best_tables(counts[of_mode, rows], n_valid)
        tables[of_mode, rows], costs[of_mode, rows] = t, bits
        exact[ms, chans] = bits.reshape(chans.size, n_ctx).sum(axis=1) + side[ms, chans]

    promising = np.argmin(lower, axis=0)
    evaluate(promising, np.arange(n_chan))
    best = exact.min(axis=0)
    ms, chans = np.nonzero((np.arange(n_modes)[:, None] != promising) & (lower <= best))
    if chans.size:
        evaluate(ms, chans)
    modes = np.argmin(exact, axis=0)
    chan = np.arange(n_chan)
    n_raw = int(raw[modes, chan].sum())
    pair = np.empty((n_chan, n_pos), dtype=np.intp)
    tok = np.empty((n_chan, n_pos), dtype=np.int32)
    pair[:, 0] = first // n_valid
    tok[:, 0] = first - pair[:, 0] * n_valid
    if keys is not None:  # one slice: its keys are at hand
        chosen = keys[modes, chan] - (n_keys * modes)[:, None]
        pair[:, 1:] = chosen // n_valid
        tok[:, 1:] = chosen - pair[:, 1:] * n_valid
        del keys, chosen
    elif plan.joint is not None:  # the chosen mode's keys, a slice at a time
        middle = np.empty((n_chan, n_pos - 1), dtype=dtype) if n_raw else None
        shrink = np.asarray(_e._SHRINK, dtype=dtype)[modes][:, None]
        for a, b, part in _slices(plan.joint, _CHOOSE_SLICE):
            chosen = np.empty((n_chan, b - a), dtype=np.intp)
            mid = _keys(narrow, part, shrink, luts, out=chosen)
            if middle is not None:
                middle[:, a:b] = mid
            p = chosen // n_valid
            pair[:, 1 + a : 1 + b] = p
            tok[:, 1 + a : 1 + b] = chosen - p * n_valid
            del chosen, p
    big = (np.zeros(0, dtype=np.intp),) * 2
    nbits = extra = np.zeros(0, dtype=np.int32)
    if n_raw:  # the raw bits, where a token has any (rare for small K)
        big = np.nonzero(tok >= _e._DIRECT)  # the tokens with raw bits
        nbits = tok_bits[tok[big]]
        zigzag = _luts(bound)[0]
        shrink = np.asarray(_e._SHRINK, dtype=np.int32)[modes][big[0]]
        mid = np.zeros(big[0].size, dtype=np.int32)
        inner = big[1] > 0
        if plan.joint is not None:
            mid[inner] = middle[big[0][inner], big[1][inner] - 1]
        pred = np.where(inner, (shrink * mid + 4) >> 3, 0)
        pos = np.concatenate([[0], plan.joint.pos]) if plan.joint is not None else [0]
        z = zigzag[x[big[0], np.asarray(pos)[big[1]]] + 2 * bound - pred]
        extra = z & ((1 << nbits) - 1)
    mine = (modes[:, None], chan[:, None] * n_ctx + np.arange(n_ctx))
    tables, cost, used = tables[mine].ravel(), costs[mine].ravel(), totals[mine] > 0
    used = used.ravel()
    return _Choice(modes, pair, tok, n_raw, big, nbits, extra, tables, used, cost)


def ideal_bits(grid, bound):
    """Ideal code length of the format-3 stream of ``grid`` ``(C, H, W)``, in bits."""
    n_chan, height, width = grid.shape
    x = grid.reshape(n_chan, -1).astype(np.int32)
    choice = _choose(x, bound, _plan(height, width, True))
    return float(
        16 + 2 * n_chan + choice.cost.sum() + 8 * choice.used.sum()
        + choice.n_raw
    )  # fmt: skip


@_e.sized_cache(_e._CACHE_BYTES)
def _pass_of(height, width):
    """The pass of each position in pass order, int16 (at most 63 passes)."""
    bounds = _plan(height, width).bounds
    out = np.repeat(np.arange(bounds.size - 1, dtype=np.int16), np.diff(bounds))
    out.setflags(write=False)
    return out


@functools.cache
def _shared_models(n_valid):
    """One model cache per token count, kept across calls (models are immutable)."""
    return _e._ModelCache(n_valid)


def encode(grid, bound):
    """Code the int grid ``(C, H, W)`` in the format-3 order; returns uint32 words."""
    n_chan, height, width = grid.shape
    plan = _plan(height, width, True)
    flat = grid.reshape(n_chan, -1).astype(np.int32, copy=False)
    choice = _choose(flat, bound, plan)
    del flat
    n_valid = _e._n_valid_tokens(bound)
    n_ctx = _e._N_CONTEXTS
    n_tab = _e._N_TABLES
    models = _shared_models(n_valid)
    n_pass = plan.bounds.size - 1
    pass_of = _pass_of(height, width)
    # The pass in which each (channel, context) pair first occurs (a channel
    # at a time: the keys are 8 bytes per latent).
    seen = np.zeros((n_chan * n_ctx, n_pass), dtype=bool)
    for pair in choice.pair:
        seen |= (
            np.bincount(pair * n_pass + pass_of, minlength=seen.size)
            .reshape(seen.shape)
            .astype(bool)
        )
    first = np.where(choice.used, np.argmax(seen, axis=1), n_pass)
    # Every pass's symbols, channel by channel, then sorted by (pass, table):
    # one stable sort of the channels-first grid gives that order directly,
    # since within one (pass, table) it keeps channel, then position, order.
    # 16-bit keys sort by radix (at most 63 passes of 256 tables).
    sort_key = (pass_of * n_tab) + choice.tables.astype(np.int16)[choice.pair]
    sort_key = sort_key.ravel()
    choice = choice._replace(pair=None)  # 8 bytes per latent, no longer needed
    order = np.argsort(sort_key, kind="stable")
    sorted_tok = choice.tok.ravel()[order]
    sorted_key = sort_key[order]
    sizes = n_chan * np.diff(plan.bounds)
    starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    # Runs of one table within one pass: one constriction call each, except in
    # passes with few symbols per run, coded in one call with a row per symbol.
    cuts = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
    run_start = np.concatenate([[0], cuts])
    run_end = np.concatenate([cuts, [sorted_key.size]])
    run_key = sorted_key[run_start].astype(np.int64)
    run_pass = run_key // n_tab
    pass_runs = np.searchsorted(run_pass, np.arange(n_pass + 1)).tolist()
    runs = list(zip(run_start.tolist(), run_end.tolist(), (run_key % n_tab).tolist()))
    # The raw bits, pass by pass, channel by channel, in position order.
    big_i = choice.big[1]
    raw_order = np.argsort(pass_of[big_i], kind="stable")
    raw_val = choice.extra[raw_order].astype(np.int32)
    raw_size = (np.int32(1) << choice.nbits[raw_order]).astype(np.int32)
    raw_cut = np.searchsorted(pass_of[big_i][raw_order], np.arange(n_pass + 1)).tolist()
    new_by_pass = np.argsort(first, kind="stable")
    new_cut = np.searchsorted(first[new_by_pass], np.arange(n_pass + 1)).tolist()
    new_tables = choice.tables[new_by_pass].astype(np.int32)
    probs = _probabilities(n_valid)
    limit = _ROWS_PER_CALL["encode"]

    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(choice.modes.astype(np.int32), _MODE_MODEL)
    for p in range(n_pass):
        if new_cut[p + 1] > new_cut[p]:
            enc.encode(new_tables[new_cut[p] : new_cut[p + 1]], _TABLE_MODEL)
        r0, r1 = pass_runs[p], pass_runs[p + 1]
        lo, hi = starts[p], starts[p + 1]
        if hi - lo < limit * (r1 - r0):
            rows = probs[sorted_key[lo:hi] % n_tab]
            enc.encode(sorted_tok[lo:hi], _FAMILY, rows)
        else:
            for a, b, t in runs[r0:r1]:
                enc.encode(sorted_tok[a:b], models[t])
        a, b = raw_cut[p], raw_cut[p + 1]
        if b > a:
            enc.encode(raw_val[a:b], _RAW_MODEL, raw_size[a:b])
    enc.encode(np.array([_e._SENTINEL], dtype=np.int32), _END_MODEL)
    return enc.get_compressed()


# --------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------


class _DecodeStep(NamedTuple):
    """One pass after the first, for the decoder's layout (see :func:`_decode_plan`)."""

    lo: int  # the pass's rows lo .. hi - 1 of the layout
    hi: int
    nbr: np.ndarray  # (4, n) int32, the neighbours' rows (the zero row where missing)
    border: np.ndarray  # (nb,) indices into the pass of positions missing neighbours
    nbr_border: np.ndarray  # (4, nb) int32, their neighbours' rows
    missing: np.ndarray  # (4, nb, 1) int16, 1 where a neighbour is missing
    count: np.ndarray  # (nb, 1) int16, how many exist (>= 1)


class _DecodePlan(NamedTuple):
    steps: tuple  # _DecodeStep per pass after the first
    raster: np.ndarray  # (H*W,) int32, the layout row of each raster position


@_e.sized_cache(_e._CACHE_BYTES)
def _decode_plan(height, width):
    """The passes of :func:`_plan` for a decoder that keeps the channels of a
    position in one row, and the rows in *pass order* (pass 0's position, then
    pass 1's, ...), then one row of zeros: a pass's neighbours are one ``take``
    of whole rows, a decoded pass one contiguous slice, and the grid is put
    back in raster order once, at the end.

    Built from a schedule that is not cached (the decoder keeps only this
    plan, about 20 bytes a position with int32 rows, not also the schedule's
    52): a blob declaring a huge grid leaves less behind.
    """
    passes = _e._schedule.__wrapped__(height, width)
    bounds = np.cumsum([0] + [p.pos.size for p in passes]).tolist()
    zero = height * width  # < 2**31 (MAX_LATENT_VALUES): int32 rows
    row = np.empty(zero + 1, dtype=np.int32)
    row[0] = 0
    row[zero] = zero  # a missing neighbour reads the zero row
    steps = []
    for p, lo, hi in zip(passes[1:], bounds[1:], bounds[2:]):
        row[p.pos] = np.arange(lo, hi)
        border = np.flatnonzero(p.count < 4)
        present = p.present[:, border]
        # nbr holds position 0 for a missing neighbour: make it the zero row.
        nbr = row[p.nbr]
        nbr_border = np.where(present, nbr[:, border], zero).astype(np.int32)
        nbr[:, border] = nbr_border
        missing = (~present).astype(np.int16)[:, :, None]
        count = p.count[border].astype(np.int16)[:, None]
        steps.append(_DecodeStep(lo, hi, nbr, border, nbr_border, missing, count))
    return _DecodePlan(tuple(steps), row[:zero])


@functools.lru_cache(maxsize=16)
def _ctx_of_spread(bound):
    """:func:`_luts`' context of each spread, as ``intp`` (the fast index type)."""
    out = _luts(bound)[3].astype(np.intp)
    out.setflags(write=False)
    return out


def _decode_keys(x, nbr, border, nbr_border, missing, count, shrink, ctx_lut, rows):
    """Prediction and ``32 * channel + context`` ``(n, C)`` of the positions
    whose neighbours are ``nbr`` ``(4, n)``, channels last ``x`` ``(N, C)`` in
    the work type: the integers of :func:`_middle` and :func:`_predict`, in
    fewer passes over the data."""
    v = x.take(nbr, axis=0)  # (4, n, C): rows of C values, a fast gather
    if border.size:  # a missing neighbour is the mean of the present ones
        vb = x.take(nbr_border, axis=0)  # 0 where missing
        total = np.add(vb[0], vb[1])
        total += vb[2]
        total += vb[3]
        total += total
        total += count
        total //= 2 * count
        vb += missing * total
        v[:, border] = vb
    a, b, c, d = v
    # The two middle values of four: the larger of the pairs' minima and the
    # smaller of their maxima.
    low = np.minimum(a, b)
    high = np.maximum(a, b)
    tmp = np.minimum(c, d)
    np.maximum(low, tmp, out=low)
    np.maximum(c, d, out=tmp)
    np.minimum(high, tmp, out=high)
    pred = np.add(low, high, out=low)
    pred *= shrink
    pred += 4
    pred >>= 3
    np.subtract(v, pred, out=v)
    np.abs(v, out=v)
    spread = np.add(a, b, out=tmp)
    spread += c
    spread += d
    keys = ctx_lut.take(spread)
    keys += rows
    return pred, keys


def _decode_step_keys(x, step, shrink, ctx_of_spread, rows):
    """:func:`_decode_keys` of a pass, in slices of ``_PREDICT_SLICE`` positions
    (the neighbours and temporaries of a large photo's last pass whole would be
    hundreds of MB); the values are those of the whole pass."""
    n = step.hi - step.lo
    args = (shrink, ctx_of_spread, rows)
    if n <= _PREDICT_SLICE:
        return _decode_keys(x, *step[2:], *args)
    pred = np.empty((n, x.shape[1]), dtype=x.dtype)
    keys = np.empty((n, x.shape[1]), dtype=np.intp)
    size = _PREDICT_SLICE
    cuts = np.searchsorted(step.border, np.arange(0, n + size, size))
    for k, a in enumerate(range(0, n, size)):
        b = min(a + size, n)
        lo, hi = cuts[k], cuts[k + 1]
        border = (
            step.border[lo:hi] - a,
            step.nbr_border[:, lo:hi],
            step.missing[:, lo:hi],
            step.count[lo:hi],
        )
        pred[a:b], keys[a:b] = _decode_keys(x, step.nbr[:, a:b], *border, *args)
    return pred, keys


def _decode_tokens(dec, tab, models, probs):
    """The tokens of one pass whose symbols have tables ``tab`` (uint8, in
    channel-major order): read in the stream's order, that of ``tab`` stably
    sorted, and returned in the order of ``tab``, int32."""
    counts = np.bincount(tab, minlength=_e._N_TABLES)
    used = np.flatnonzero(counts)
    n = tab.size
    if used.size == 1:  # one table: the sorted order is the order
        return dec.decode(models[int(used[0])], n)
    order = np.argsort(tab, kind="stable")  # 8-bit keys: one radix pass
    if n < _ROWS_PER_CALL["decode"] * used.size:
        tok_sorted = dec.decode(_FAMILY, probs[tab[order]])
    else:
        runs = [(models[t], c) for t, c in zip(used.tolist(), counts[used].tolist())]
        tok_sorted = dec.decode_runs(runs)
    tok = np.empty_like(tok_sorted)
    tok[order] = tok_sorted
    return tok


#: The largest table of :func:`_value_lut`, in entries (256 KiB as int16).
_VALUE_LUT_SIZE = 1 << 17


@functools.lru_cache(maxsize=16)
def _value_lut(bound):
    """The decoded value of each (prediction, zigzag residual), or None.

    Entry ``(p + K) * (2K + 1) + z`` is ``p`` plus the residual of zigzag
    ``z``, wrapped into ``[-K, K]``: the inverse zigzag, the sum and the wrap
    as one gather. Only for bounds whose table has at most
    ``_VALUE_LUT_SIZE`` entries (up to 8-bit latents); None above.
    """
    m = 2 * bound + 1
    if m * m > _VALUE_LUT_SIZE:
        return None
    z = np.arange(m, dtype=np.int64)
    r = np.where(z % 2 == 0, z // 2, -(z + 1) // 2)
    p = np.arange(-bound, bound + 1, dtype=np.int64)[:, None]
    out = _e._wrap(p + r, bound).astype(_key_dtype(bound)).ravel()
    out.setflags(write=False)
    return out


def _reconstruct(pred, z, bound):
    """The values ``wrap(pred + residual(z))`` of a pass, flat; overwrites ``z``
    (int32)."""
    m = 2 * bound + 1
    lut = _value_lut(bound)
    if lut is not None:
        index = np.multiply(pred.T, m, dtype=np.int32, order="C").ravel()
        z += bound * m
        index += z
        return lut.take(index)
    value = np.bitwise_and(z, 1)
    np.negative(value, out=value)
    z >>= 1
    value ^= z  # the inverse zigzag
    value += pred.T.ravel()
    value -= m * (value > bound)
    value += m * (value < -bound)
    return value


def decode(dec, dims, bound):
    """Decode a format-3 stream from ``dec`` (an ``_entropy._Replaying``).

    The channels are kept in the pass order of :func:`_decode_plan` and in the
    narrow work type of :func:`_key_dtype` while decoding; returns int32 in
    raster order.
    """
    n_chan = dims[0]
    height, width = (1, dims[1]) if len(dims) == 2 else dims[1:]
    plan = _decode_plan(height, width)
    tok_bits = _luts(bound)[4]
    ctx_of_spread = _ctx_of_spread(bound)
    n_valid = tok_bits.size
    n_ctx = _e._N_CONTEXTS
    models = _shared_models(n_valid)
    probs = _probabilities(n_valid)
    dtype = _key_dtype(bound)
    x = np.empty((height * width + 1, n_chan), dtype=dtype)  # see _decode_plan
    x[-1] = 0
    tables = np.zeros(n_chan * n_ctx, dtype=np.uint8)
    unseen = np.ones(n_chan * n_ctx, dtype=bool)
    rows = np.arange(n_chan, dtype=np.intp) * n_ctx
    modes = dec.decode(_MODE_MODEL, n_chan)
    shrink = np.asarray(_e._SHRINK, dtype=dtype)[modes]  # (C,): a row
    # Pass 0, position 0 of every channel: prediction 0, the last context.
    first = (0, 1, np.zeros((1, n_chan), dtype=dtype), rows[None] + (n_ctx - 1))
    passes = itertools.chain([first], _steps(x, plan, shrink, ctx_of_spread, rows))
    for lo, hi, pred, keys in passes:
        keys = keys.T.ravel()  # the stream's order: channel by channel
        fresh = unseen.take(keys)
        if fresh.any():  # (channel, context) pairs met for the first time
            idx = np.unique(keys[fresh])
            tables[idx] = dec.decode(_TABLE_MODEL, idx.size)
            unseen[idx] = False
        del fresh
        tab = tables.take(keys)
        # Each array is dropped as soon as it has served: a large photo's last
        # pass holds millions of symbols, and these are bytes per symbol.
        del keys
        z = _decode_tokens(dec, tab, models, probs)
        del tab
        top = int(z.max())
        if top >= n_valid:
            raise ValueError("corrupted latent payload: token out of range")
        if top >= _e._DIRECT:  # the raw low bits of the large tokens
            big = np.flatnonzero(z >= _e._DIRECT)
            t = z[big]
            nbits = tok_bits[t]
            raw = dec.decode(_RAW_MODEL, (np.int32(1) << nbits).astype(np.int32))
            zb = ((4 | ((t - _e._DIRECT) & 3)) << nbits) | raw
            if zb.max() > 2 * bound:
                raise ValueError("corrupted latent payload: residual out of range")
            z[big] = zb
        x[lo:hi] = _reconstruct(pred, z, bound).reshape(n_chan, hi - lo).T
        del pred, z
    end = dec.decode(_END_MODEL, 1)
    if int(end[0]) != _e._SENTINEL:
        raise ValueError("corrupted latent payload: end marker mismatch")
    out = np.empty((n_chan, height * width), dtype=np.int32)
    out[...] = x.take(plan.raster, axis=0).T
    return out.reshape(dims)


def _steps(x, plan, shrink, ctx_of_spread, rows):
    """``(lo, hi, pred, keys)`` of each pass after the first, predicted from
    ``x`` as it stands when the pass is reached (the caller fills it in)."""
    for step in plan.steps:
        pred, keys = _decode_step_keys(x, step, shrink, ctx_of_spread, rows)
        yield step.lo, step.hi, pred, keys
