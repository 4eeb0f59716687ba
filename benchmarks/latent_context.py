"""What better entropy contexts would save on the shipped models' latents (issue #21).

"Measure first" for "fewer bytes for the same latents": no library change. For
``WallocCodec.from_pretrained("rgb-16x")`` and ``("rgb-4x")`` and two held-out
photo sets (the bundled holdout ``load_photos(split="holdout")``: astronaut,
coffee, china; and the ``mate-backgrounds`` nature photos of
``_common.load_mate_photos``, 512x768; neither is in the models' training list,
``sklearn_walloc/data/pretrained/TRAINING.md``), it takes the integer latents
exactly as ``compress`` codes them (it compresses each photo, then decodes the
blob's payload with the library's decoder, and checks them against
``transform``'s integers, which are the same for blobs without a gain), and
reports, per latent channel:

- the coded bits: the blob's payload split per channel in proportion to the
  coder's own ideal code length per channel (the coder codes all channels in
  one range-coder stream, whose total is within a few words of the sum of
  those ideal lengths: both are reported);
- the order-0 entropy of the latents, and of the coder's residual tokens;
- conditional code lengths of the coder's residual tokens (its predictor mode
  per channel, its token map; the raw low bits of large residuals are added
  unchanged) given contexts: (a) spatial, from the coder's already-coded
  neighbours (its own 32 activity contexts, and coarse buckets of them),
  (b) cross-channel, from the already-coded channels at the same position,
  (c) both. Estimators: the plug-in conditional entropy (a lower bound that
  ignores what a decoder must learn); two adaptive count-based codes
  (Krichevsky-Trofimov, a sequential Dirichlet(1/2) mixture per context over
  the coder's token alphabet, whose length does not depend on the order of
  the symbols; and counts started from the best stored table with
  ``PRIOR_MASS`` pseudo-counts); and the coder's own two-part code (the best
  of its 256 stored integer tables per (channel, context) plus 8 bits to send
  each index: what format 3 would cost with that context function in place
  of its own). "Or today": per channel the shorter of that and today's code,
  plus one bit (the encoder's choice);
- a blend of today's half-octave context with the coded channels' (one
  weight per channel, still 32 contexts), and a fitted *scale context*
  (:func:`fit_scale_context`: integer coefficients of a log-linear scale
  model in today's context and each coded channel's magnitudes, bucketed
  into 32 half-octave contexts with today's stored tables);
- linear cross-channel prediction of the residuals (:func:`cross_prediction`);
- "scale mixtures": each residual coded with a discretised Laplacian whose
  log-scale per position is linear in the log of the coder's spread and of
  the coded channels' residual magnitudes (:func:`scale_mixture`; parameters
  fitted on the channel itself and charged ``0.5*log2(n)`` bits each).

Then, as a prototype in this script only (not the library), the integer-exact
context that pays most, the scale context, coded for real
(:func:`proto_encode`, :func:`proto_decode`): ``constriction``'s categorical
models over the stored tables, in channel-major order so that a channel's
contexts can read the coded channels, with its coded bits against today's
payload and its encode/decode time, interleaved with today's coder.

Run: ``PYTHONPATH=. python benchmarks/latent_context.py [--quick]`` from the
repository root (about 100 s of CPU, 4 minutes on 2 shared cores at load
7-12; writes ``latent_context.{md,json,csv}`` into ``--out``).
"""

import math
import time

import numpy as np
from _common import (
    BenchmarkRun,
    benchmark_parser,
    load_mate_photos,
    markdown_table,
)
from _machine import machine_line
from scipy.special import gammaln
from threadpoolctl import threadpool_limits

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos

MODELS = ("rgb-16x", "rgb-4x")
LN2 = math.log(2.0)
KT_ALPHA = 0.5
CCP_SCHEMES = ("order 0", "coder (today, 32)", "S8 x Xb8", "coder x Xb4")
PRIOR_MASS = 64.0  # pseudo-counts of the stored-table prior (fixed, not per photo)


def _coder():
    """The coder's internals: this benchmark measures the entropy model itself
    (its tokens, contexts, modes and stored tables), which no public API shows."""
    from sklearn_walloc import _entropy_batched, _entropy_model
    from sklearn_walloc._container import unpack_blob
    from sklearn_walloc._entropy import decode_latents, latent_bound

    return _entropy_batched, _entropy_model, unpack_blob, decode_latents, latent_bound


# ------------------------------------------------------------------ latents
def coded_latents(codec, photo):
    """``(q, blob bytes, payload bytes)``: the integers the blob codes."""
    _, _, unpack_blob, decode_latents, _ = _coder()
    blob = codec.compress([photo])[0]
    b = unpack_blob(blob)
    if b.gain_steps:
        raise RuntimeError("an image blob with a gain: not today's default")
    q = decode_latents(b.payload, b.latent_shape, b.latent_bits, version=b.version)
    t = np.moveaxis(codec.transform(photo[None])[0], -1, 0).astype(np.int32)
    if not np.array_equal(q, t[:, : q.shape[1], : q.shape[2]]):
        raise RuntimeError("the blob's latents differ from transform's")
    return q, len(blob), len(b.payload), b.latent_bits


# ------------------------------------------------------------------ features
def _bucket8(v):
    """Octave buckets ``min(7, floor(log2(v + 1)))`` of non-negative integers."""
    _, em, _, _, _ = _coder()
    return np.minimum(7, em._floor_log2(np.asarray(v, np.int64) + 1, 30))


def _box_mean(a, height, width):
    """Rounded 3x3 box mean of each ``(C, H*W)`` channel (edge-replicated)."""
    g = a.reshape(-1, height, width)
    p = np.pad(g, ((0, 0), (1, 1), (1, 1)), mode="edge").astype(np.int64)
    s = sum(p[:, i : i + height, j : j + width] for i in range(3) for j in range(3))
    return ((s + 4) // 9).reshape(a.shape)


def analyse(q, bits):
    """The coder's view of one grid ``(C, H, W)``: tokens, contexts, features."""
    eb, em, _, _, latent_bound = _coder()
    bound = latent_bound(bits)
    n_chan, height, width = q.shape
    x = q.reshape(n_chan, -1).astype(np.int32)
    plan = eb._plan(height, width, True)
    ch = eb._choose(x, bound, plan)
    n_valid = em._n_valid_tokens(bound)
    n_ctx = em._N_CONTEXTS
    raw = np.bincount(ch.big[0], weights=ch.nbits, minlength=n_chan)
    coder = (
        ch.cost.reshape(n_chan, n_ctx).sum(1)
        + 8 * ch.used.reshape(n_chan, n_ctx).sum(1)
        + raw
        + 2  # the predictor mode, U(4)
    )
    pos = np.concatenate([[0], plan.joint.pos])
    v, middle = eb._middle(x.astype(np.int64), plan.joint)
    shrink = np.asarray(em._SHRINK, np.int64)[ch.modes][:, None]
    pred = np.zeros((n_chan, pos.size), np.int64)
    pred[:, 1:] = (shrink * middle + 4) >> 3
    spread = np.zeros((n_chan, pos.size), np.int64)
    spread[:, 1:] = np.abs(v - pred[:, None, 1:]).sum(axis=1)
    r = em._wrap(x[:, pos].astype(np.int64) - pred, bound)
    z = np.where(r >= 0, 2 * r, -2 * r - 1)
    tok, _, _ = em._tokenize(z)
    if not np.array_equal(tok, ch.tok):
        raise RuntimeError("residual tokens differ from the coder's")
    # Cross-channel features at the same position, from channels < c only.
    mag = np.abs(r)
    csum = np.cumsum(mag, axis=0)
    prev_mean = np.zeros_like(mag)
    cnt = np.arange(1, n_chan)[:, None]
    prev_mean[1:] = (csum[:-1] + cnt // 2) // cnt
    prev_one = np.zeros_like(mag)
    prev_one[1:] = mag[:-1]
    qmag = np.abs(x[:, pos]).astype(np.int64)
    prev_q = np.zeros_like(mag)
    prev_q[1:] = qmag[:-1]
    grid_mag = np.zeros((n_chan, height * width), np.int64)
    grid_mag[:, pos] = mag
    box = _box_mean(grid_mag, height, width)[:, pos]
    bsum = np.cumsum(box, axis=0)
    prev_box = np.zeros_like(mag)
    prev_box[1:] = (bsum[:-1] + cnt // 2) // cnt
    nbr_mean = np.zeros_like(mag)
    nbr_mean[:, 1:] = (np.abs(v).sum(axis=1) + 2) // 4
    return {
        "bound": bound,
        "n_valid": n_valid,
        "tok": tok,
        "r": r,
        "raw": raw,
        "coder": coder,
        "coder_ctx": ch.pair % n_ctx,
        "spread": spread,
        "prev_mean": prev_mean,
        "prev_box": prev_box,
        "prev_one": prev_one,
        "prev_q": prev_q,
        "box": box,
        "nbr_mean": nbr_mean,
        "q": x,
    }


CCP_SHIFT = 6  # cross-channel coefficients in 1/64 steps
CCP_COEF_BITS = 10  # bits charged per sent coefficient


def cross_prediction(a):
    """The residuals after a linear cross-channel prediction (HEVC-style CCP).

    Channel ``c`` predicts its spatial residual from the spatial residuals of
    channels ``< c`` at the same position: ``(sum_j B_j r_j + 32) >> 6``, integer
    coefficients ``B`` fitted by least squares on the channel itself and sent
    (``CCP_COEF_BITS`` each). A decoder that has decoded channels ``< c`` of a
    pass can form it exactly. Returns tokens, raw bits and side bits per channel.
    """
    _, em, _, _, _ = _coder()
    r = a["r"]
    n_chan = r.shape[0]
    out = r.copy()
    side = np.zeros(n_chan)
    for c in range(1, n_chan):
        prev = r[:c].T
        beta, *_ = np.linalg.lstsq(prev.astype(np.float64), r[c].astype(np.float64))
        coef = np.clip(np.rint(beta * (1 << CCP_SHIFT)), -511, 511).astype(np.int64)
        if not coef.any():
            continue
        pred = (prev @ coef + (1 << (CCP_SHIFT - 1))) >> CCP_SHIFT
        out[c] = em._wrap(r[c] - pred, a["bound"])
        side[c] = CCP_COEF_BITS * c
    z = np.where(out >= 0, 2 * out, -2 * out - 1)
    tok, nbits, _ = em._tokenize(z)
    raw = nbits.sum(1).astype(np.float64)
    return {"tok": tok, "raw": raw, "side": side + 1, "r": out}  # +1: CCP on/off


def contexts(a):
    """Context schemes: name -> ((C, N) context ids, number of contexts)."""
    s8 = _bucket8((a["spread"] + 2) // 4)  # the coder's spread, octaves
    s4 = s8 // 2
    x8 = _bucket8(a["prev_mean"])
    x4 = x8 // 2
    b8 = _bucket8(a["prev_box"])
    b4 = b8 // 2
    coder = a["coder_ctx"]
    zero = np.zeros_like(coder)
    return {
        "order 0": (zero, 1),
        "coder (today, 32)": (coder, 32),
        "S8: spread octaves": (s8, 8),
        "N8: neighbour abs q": (_bucket8(a["nbr_mean"]), 8),
        "X1: abs r of c-1": (_bucket8(a["prev_one"]), 8),
        "Xq: abs q of c-1": (_bucket8(a["prev_q"]), 8),
        "Xm: mean abs r of <c": (x8, 8),
        "Xb: 3x3 mean abs r of <c": (b8, 8),
        "S8 x Xm8": (s8 * 8 + x8, 64),
        "S4 x Xm4": (s4 * 4 + x4, 16),
        "S8 x Xb8": (s8 * 8 + b8, 64),
        "S4 x Xb4": (s4 * 4 + b4, 16),
        "coder x Xb4": (coder * 4 + b4, 128),
    }


W_STEPS = 8  # blend weights w / 8, w = 0..8
BLEND = "blend: today's and Xb's half-octaves"
SCALE_CTX = "scale context: fitted half-octaves"
SCALE_ORDERS = {
    "channel": SCALE_CTX,
    "pass": "scale context, pass-major order",
    "batched": "scale context, format 3's batched order",
}


def _blend(coder_ctx, cross_ctx, w):
    """``min(31, round((w * today + (8 - w) * cross) / 8))``, integers."""
    return np.minimum(31, (w * coder_ctx + (W_STEPS - w) * cross_ctx + 4) >> 3)


def blend_context(a):
    """Today's 32 contexts blended with the coded channels' magnitude.

    The context is a weighted mean of two half-octave buckets: today's (of the
    coder's spread) and that of ``Xb`` (the 3x3 mean residual magnitude of the
    coded channels), with one weight ``w / 8`` per channel chosen by the
    encoder (the shortest two-part code; sent in ``log2(9)`` bits). So it
    keeps 32 contexts and today's tables: only the context function changes.
    """
    _, em, _, _, _ = _coder()
    cross = em._context(a["prev_box"])
    best = None
    for w in range(W_STEPS + 1):
        ctx = _blend(a["coder_ctx"], cross, w)
        b = code_lengths(a["tok"], ctx, 32, a["n_valid"])["two_part"]
        if best is None:
            best, out = b, ctx
        else:
            better = b < best
            best = np.where(better, b, best)
            out = np.where(better[:, None], ctx, out)
    return out


Q_SHIFT = 6  # scale-context coefficients in 1/64 of a half-octave
Q_BITS = 10  # each sent as U(1024)
LO_BITS = 24  # the bucket offset, U(2**24)


def fit_scale_context(tok, today, absr, prev, n_valid):
    """The scale context of one channel: its integer parameters and contexts.

    A log-linear model of the residual's Laplacian scale (:func:`_newton`) on
    integer half-octave features, ``today`` (the coder's context of each
    position) and ``prev`` ``(2c, N)`` (the half-octave buckets of each coded
    channel's ``|r|`` at the position and of its 3x3 mean), is rounded to
    integer coefficients ``Q`` in 1/64 half-octave; the context is then
    ``clip((Q @ [today, prev] - lo + 32) >> 6, 0, 31)``, ``lo`` the smallest
    value, and every context gets its best stored table, as today. The
    encoder keeps today's contexts (``Q = (64, 0, ...)``, ``lo = 0``) where
    they code shorter. Returns ``(Q, lo, ctx, two-part bits)``; the side
    bits (``Q_BITS`` per coefficient, ``LO_BITS``) are included.
    """
    feats = np.concatenate([today[None], prev], 0)
    _, theta = _newton(absr.astype(np.float64), feats.T.astype(np.float64))
    half = theta[1:] * 2 / LN2  # half-octaves of scale per unit of feature
    side = Q_BITS * feats.shape[0] + LO_BITS
    keep = np.zeros(feats.shape[0], np.int64)
    keep[0] = 1 << Q_SHIFT
    candidates = [(keep, 0)]
    lim = (1 << (Q_BITS - 1)) - 1
    q = np.clip(np.rint(half * (1 << Q_SHIFT)), -lim, lim).astype(np.int64)
    eta = q @ feats.astype(np.int64)
    candidates.append((q, int(eta.min())))
    best = None
    for q, lo in candidates:
        eta = q @ feats.astype(np.int64)
        ctx = np.clip((eta - lo + (1 << (Q_SHIFT - 1))) >> Q_SHIFT, 0, 31)
        bits = code_lengths(tok[None], ctx[None], 32, n_valid)["two_part"][0]
        if best is None or bits < best[3]:
            best = (q, lo, ctx, bits)
    q, lo, ctx, bits = best
    return q, lo, ctx, bits + side


def scale_context(a, order="channel"):
    """Bits per channel of the scale context (see :func:`fit_scale_context`).

    ``order`` says which features a decoder has when it needs the context:
    ``"channel"`` (channel-major order, the prototype's): each coded channel's
    ``|r|`` at the position and its 3x3 mean; ``"pass"`` (format 3's
    pass-major order, the channels of a pass decoded one after another): the
    coded channels' ``|r|`` at the position and every other channel's
    context from the earlier passes; ``"batched"`` (format 3 as it is, one
    step per pass for all channels): every other channel's context only.
    """
    _, em, _, _, _ = _coder()
    absr = np.abs(a["r"])
    pt = em._context(absr)
    bx = em._context(a["box"])
    today = a["coder_ctx"]
    n_chan = absr.shape[0]
    out = np.zeros(n_chan)
    for c in range(n_chan):
        others = np.delete(today, c, axis=0)
        prev = {
            "channel": lambda c=c: np.concatenate([pt[:c], bx[:c]], 0),
            "pass": lambda c=c, o=others: np.concatenate([pt[:c], o], 0),
            "batched": lambda o=others: o,
        }[order]()
        out[c] = fit_scale_context(a["tok"][c], today[c], absr[c], prev, a["n_valid"])[
            3
        ]
    return out


# ------------------------------------------------------------------ estimators
def code_lengths(tok, ctx, n_ctx, n_valid):
    """Bits per channel of the tokens given contexts: plug-in, KT, two-part."""
    eb, _, _, _, _ = _coder()
    n_chan = tok.shape[0]
    keys = (np.arange(n_chan)[:, None] * n_ctx + ctx) * n_valid + tok
    counts = np.bincount(keys.ravel(), minlength=n_chan * n_ctx * n_valid)
    counts = counts.reshape(n_chan * n_ctx, n_valid).astype(np.float64)
    totals = counts.sum(1)
    xlx = counts * np.log2(np.maximum(counts, 1))
    plug = totals * np.log2(np.maximum(totals, 1)) - xlx.sum(1)
    a = KT_ALPHA
    kt = (
        gammaln(totals + n_valid * a)
        - gammaln(n_valid * a)
        - (gammaln(counts + a) - gammaln(a)).sum(1)
    ) / LN2
    tables, table_bits, _ = eb._best_tables(counts.astype(np.int64), n_valid)
    two = table_bits + 8.0 * (totals > 0)
    # Adaptive counts started from the chosen stored table: a Dirichlet prior of
    # mass PRIOR_MASS shaped like the table (the table index sent as above).
    probs = eb._probabilities(n_valid)[tables]
    alpha = PRIOR_MASS * probs / probs.sum(1, keepdims=True)
    prior = (
        gammaln(totals + PRIOR_MASS)
        - gammaln(PRIOR_MASS)
        - (gammaln(counts + alpha) - gammaln(alpha)).sum(1)
    ) / LN2 + 8.0 * (totals > 0)
    per = lambda b: b.reshape(n_chan, n_ctx).sum(1)  # noqa: E731
    return {
        "plugin": per(plug),
        "kt": per(kt),
        "two_part": per(two),
        "table_prior": per(prior),
    }


_ETA = (-7.0, 12.0)  # log-scale range: 1e-3 to 1.6e5 latent units


def _laplace_terms(eta, absr):
    """Nats of each residual under a discretised Laplacian of scale ``exp(eta)``,
    and their first and second derivatives in ``eta``."""
    u = np.exp(-np.clip(eta, *_ETA))  # 1 / scale
    zero = absr == 0
    # log P(0) = log(1 - e^{-u/2}); log P(+-k) = -(k - 1/2) u + log((1 - e^{-u}) / 2)
    t = np.where(zero, 0.5 * u, u)
    em1 = np.expm1(np.minimum(t, 700.0))
    ratio = np.where(t > 700.0, 0.0, t / np.where(em1 > 0, em1, 1.0))
    ratio = np.where(t < 1e-8, 1.0, ratio)  # t / (e^t - 1)
    # d(ratio)/dt = ratio (1 - ratio) / t - ratio (-1/2 at t = 0)
    tt = np.maximum(t, 1e-300)
    dratio = np.where(t < 1e-8, -0.5, ratio * (1.0 - ratio) / tt - ratio)
    kk = np.maximum(absr - 0.5, 0.0)
    nll = np.where(zero, 0.0, kk * u + math.log(2.0)) - np.log(-np.expm1(-t))
    grad = ratio - kk * u
    # d(ratio)/d(eta) = d(ratio)/dt * (-t); the code length is convex in eta
    hess = kk * u - dratio * t
    return nll, grad, hess


def _fit_mixture(absr, feats, iters=30):
    """Bits of the fitted scale-mixture code, parameters charged.

    Damped Newton steps on the exact discretised code length of a log-linear
    scale model ``eta = X @ theta`` (``X`` = ones and ``feats``).
    """
    nats, theta = _newton(absr, feats, iters)
    return nats / LN2 + 0.5 * math.log2(absr.size) * theta.size


def _newton(absr, feats, iters=30):
    """Fitted ``theta`` of the scale model and its code length in nats."""
    # One BLAS thread: OpenBLAS hands these (n x 24) products to its pool,
    # whose threads stall for milliseconds on busy shared cores.
    with threadpool_limits(1, user_api="blas"):
        return _newton_steps(absr, feats, iters)


def _newton_steps(absr, feats, iters):
    x = np.concatenate([np.ones((absr.size, 1)), feats], 1)
    theta = np.zeros(x.shape[1])
    theta[0] = math.log(max(absr.mean(), 0.05))
    nll, g, h = _laplace_terms(x @ theta, absr)
    best = nll.sum()
    for _ in range(iters):
        grad = x.T @ g
        hess = (x * np.maximum(h, 1e-9)[:, None]).T @ x
        hess += 1e-6 * np.trace(hess) / hess.shape[0] * np.eye(hess.shape[0])
        step = np.linalg.solve(hess, grad)
        lr = 1.0
        while lr > 1e-4:
            cand = theta - lr * step
            nll, g2, h2 = _laplace_terms(x @ cand, absr)
            if nll.sum() <= best:
                break
            lr *= 0.5
        else:
            break
        gain = best - nll.sum()
        theta, best, g, h = cand, nll.sum(), g2, h2
        if gain < 1e-3:
            break
    return best, theta


MIXTURES = ("mix_spatial", "mix_cross", "mix_both", "mix_rich")


def scale_mixture(a, which=MIXTURES):
    """Bits per channel of the scale-mixture codes named in ``which``.

    ``mix_spatial``: the scale from the coder's spread alone; ``mix_cross``:
    from the 3x3 mean residual magnitude of the coded channels alone;
    ``mix_both``: both; ``mix_rich``: the spread and, for each coded channel
    separately, its residual magnitude at the position and its 3x3 mean (a
    linear log-scale model with ``2c + 2`` parameters: an upper bound of what a
    small prior driven by the coded channels could get). Channel 0, which has
    no coded channel, gets its spatial code in every variant.
    """
    absr = np.abs(a["r"]).astype(np.float64)
    fs = np.log1p(a["spread"] / 4.0)
    fx = np.log1p(a["prev_box"].astype(np.float64))
    pt = np.log1p(absr)
    bx = np.log1p(a["box"].astype(np.float64))
    out = {k: np.zeros(absr.shape[0]) for k in which}
    for c in range(absr.shape[0]):
        feats = {
            "mix_spatial": lambda c=c: fs[c][:, None],
            "mix_cross": lambda c=c: fx[c][:, None],
            "mix_both": lambda c=c: np.stack([fs[c], fx[c]], 1),
            "mix_rich": lambda c=c: np.concatenate(
                [fs[c][:, None], pt[:c].T, bx[:c].T], 1
            ),
        }
        if not c:
            spatial = _fit_mixture(absr[c], feats["mix_spatial"]())
        for k in which:
            out[k][c] = spatial if not c else _fit_mixture(absr[c], feats[k]())
    for k in which:
        out[k] += 2  # the predictor mode, as the coder sends it
    return out


def order0(q, bits):
    """Plug-in order-0 entropy of each channel's latents, bits."""
    n_chan = q.shape[0]
    x = q.reshape(n_chan, -1).astype(np.int64) + 2 ** (bits - 1)
    out = np.zeros(n_chan)
    for c in range(n_chan):
        k = np.bincount(x[c]).astype(np.float64)
        k = k[k > 0]
        out[c] = k.sum() * math.log2(k.sum()) - (k * np.log2(k)).sum()
    return out


# ------------------------------------------------------------------ prototype
def _replaying():
    """The library's canonical-checking range decoder, so that the prototype's
    decode does the same work per symbol as today's."""
    from sklearn_walloc._entropy import _Replaying

    return _Replaying


class _Proto:
    """What encoder and decoder share: the plan, lookup tables and models."""

    def __init__(self, shape, bits):
        import constriction

        eb, em, _, _, latent_bound = _coder()
        self.eb, self.em = eb, em
        self.bound = latent_bound(bits)
        self.n_chan, self.height, self.width = shape
        self.plan = eb._plan(self.height, self.width)
        first = em._Pass(np.zeros(1, dtype=np.int64), None, None, None)
        self.steps = (first, *self.plan.steps)
        self.zigzag, _, _, self.ctx_lut, self.tok_bits = eb._luts(self.bound)
        self.n_valid = self.tok_bits.size
        self.models = eb._shared_models(self.n_valid)
        self.probs = eb._probabilities(self.n_valid)
        m = constriction.stream.model
        self.mode_model = m.Uniform(4)
        self.coef_model, self.lo_model = m.Uniform(1 << Q_BITS), m.Uniform(1 << LO_BITS)
        self.table_model, self.raw_model = m.Uniform(256), m.Uniform()
        self.end_model = m.Uniform(1 << 16)

    def predict(self, x, k, shrink):
        """Prediction and today's context of pass ``k`` of channels ``(C, HW)``."""
        step = self.steps[k]
        if step.nbr is None:
            rows = x.shape[0]
            return np.zeros((rows, 1), np.int32), np.full((rows, 1), 31, np.int32)
        # The raster-order form of the decoder's prediction (decode runs the
        # same integers in its own layout), in slices of positions.
        eb, n = self.eb, step.pos.size
        pred = np.empty((x.shape[0], n), dtype=np.int32)
        ctx = np.empty((x.shape[0], n), dtype=np.int32)
        for a, b, part in eb._slices(step, eb._PREDICT_SLICE):
            v, middle = eb._middle(x, part)
            pred[:, a:b], ctx[:, a:b] = eb._predict(v, middle, shrink, self.ctx_lut)
        return pred, ctx

    def box(self, absr):
        return _box_mean(absr[None], self.height, self.width)[0]

    def groups(self, sorted_tab):
        """The decoder's constriction calls for a pass's table-sorted tokens:
        ``(slice, model, count or rows)``, one call per table, or one with a
        row per symbol where the tables have few symbols each (the same code)."""
        eb, n = self.eb, sorted_tab.size
        cuts = np.flatnonzero(sorted_tab[1:] != sorted_tab[:-1]) + 1
        if n < eb._ROWS_PER_CALL["decode"] * (cuts.size + 1):
            yield slice(0, n), eb._FAMILY, self.probs[sorted_tab]
            return
        bounds = np.concatenate([[0], cuts, [n]])
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            yield slice(lo, hi), self.models[int(sorted_tab[lo])], hi - lo


def _scale_ctx(q, lo, today, cross):
    """The decoder's context of a pass: ``clip((Q0 today + cross - lo + 32) >> 6)``."""
    eta = int(q[0]) * today.astype(np.int64) + cross - lo + (1 << (Q_SHIFT - 1))
    return np.clip(eta >> Q_SHIFT, 0, 31)


def _cross_eta(q, pt, bx, c, size):
    """``Q[1:] @ prev`` over the whole channel, from the coded channels' buckets."""
    out = np.zeros(size, np.int64)
    for j in range(c):
        out += int(q[1 + j]) * pt[j] + int(q[1 + c + j]) * bx[j]
    return out


def proto_encode(q, bits):
    """Code ``q`` channel by channel with the scale contexts; uint32 words.

    The stream: per channel its predictor mode U(4), its ``1 + 2c`` scale
    coefficients U(1024) (offset 512) and bucket offset U(2**24) (offset
    2**23), then per pass the table indices of its new contexts U(256), the
    pass's tokens sorted stably by table (each with its stored table, one call
    per run or one row per symbol as format 3 does), and the raw bits; at the
    end the 16-bit marker. The predictor modes are today's choice.
    """
    import constriction

    t = _Proto(q.shape, bits)
    eb, em = t.eb, t.em
    size = t.height * t.width
    x = q.reshape(t.n_chan, -1).astype(np.int32)
    modes = eb._choose(x, t.bound, eb._plan(t.height, t.width, True)).modes
    shrinks = np.asarray(em._SHRINK, np.int32)[modes]
    enc = constriction.stream.queue.RangeEncoder()
    pt, bx = [], []
    for c in range(t.n_chan):
        xc = x[c : c + 1]
        passes = []
        for k, step in enumerate(t.steps):
            pred, today = t.predict(xc, k, shrinks[c])
            z = t.zigzag[(xc[0, step.pos] - pred[0] + 2 * t.bound).astype(np.intp)]
            passes.append((step.pos, today[0], z.astype(np.int64)))
        pos_all = np.concatenate([p[0] for p in passes])
        z_all = np.concatenate([p[2] for p in passes])
        tok_all = em._tokenize(z_all)[0]
        today_all = np.concatenate([p[1] for p in passes])
        absr_all = (z_all + 1) >> 1
        prev = np.zeros((2 * c, pos_all.size), np.int64)
        for j, a in enumerate(pt + bx):
            prev[j] = a[pos_all]
        coef, lo, _, _ = fit_scale_context(
            tok_all, today_all, absr_all, prev, t.n_valid
        )
        cross = _cross_eta(coef, pt, bx, c, size)
        ctx_all = _scale_ctx(coef, lo, today_all, cross[pos_all])
        counts = np.bincount(ctx_all * t.n_valid + tok_all, minlength=32 * t.n_valid)
        tabs, _, _ = eb._best_tables(counts.reshape(32, t.n_valid), t.n_valid)
        enc.encode(np.array([modes[c]], np.int32), t.mode_model)
        enc.encode((coef + 512).astype(np.int32), t.coef_model)
        enc.encode(np.array([lo + (1 << 23)], np.int32), t.lo_model)
        seen = np.zeros(32, bool)
        absr = np.zeros(size, np.int64)
        for pos, today, z in passes:
            ctx = _scale_ctx(coef, lo, today, cross[pos])
            present = np.unique(ctx)
            new = present[~seen[present]]
            if new.size:
                enc.encode(tabs[new].astype(np.int32), t.table_model)
                seen[new] = True
            tok, nbits, extra = em._tokenize(z)
            tab = tabs[ctx]
            order = np.argsort(tab, kind="stable")
            sorted_tok = tok[order].astype(np.int32)
            for sel, model, arg in t.groups(tab[order]):
                if isinstance(arg, np.ndarray):
                    enc.encode(sorted_tok[sel], model, arg)
                else:
                    enc.encode(sorted_tok[sel], model)
            big = nbits > 0
            if big.any():
                enc.encode(
                    extra[big].astype(np.int32),
                    t.raw_model,
                    (np.int64(1) << nbits[big]).astype(np.int32),
                )
            absr[pos] = (z + 1) >> 1
        pt.append(t.ctx_lut[absr.astype(np.intp)].astype(np.int64))
        bx.append(t.ctx_lut[t.box(absr).astype(np.intp)].astype(np.int64))
    enc.encode(np.array([em._SENTINEL], np.int32), t.end_model)
    return enc.get_compressed()


def proto_decode(words, shape, bits):
    """Inverse of :func:`proto_encode`, integer-only, checking canonical words."""
    t = _Proto(shape, bits)
    em = t.em
    size = t.height * t.width
    dec = _replaying()(words)
    x = np.zeros((t.n_chan, size), np.int32)
    modulus = 2 * t.bound + 1
    pt, bx = [], []
    for c in range(t.n_chan):
        shrink = em._SHRINK[int(dec.decode(t.mode_model, 1)[0])]
        coef = dec.decode(t.coef_model, 1 + 2 * c).astype(np.int64) - 512
        lo = int(dec.decode(t.lo_model, 1)[0]) - (1 << 23)
        cross = _cross_eta(coef, pt, bx, c, size)
        tables = np.zeros(32, np.int64)
        seen = np.zeros(32, bool)
        absr = np.zeros(size, np.int64)
        xc = x[c : c + 1]
        for k, step in enumerate(t.steps):
            pred, today = t.predict(xc, k, shrink)
            ctx = _scale_ctx(coef, lo, today[0], cross[step.pos])
            present = np.unique(ctx)
            new = present[~seen[present]]
            if new.size:
                tables[new] = dec.decode(t.table_model, new.size)
                seen[new] = True
            tab = tables[ctx]
            r = _decode_residuals(dec, t, tab)
            value = pred[0].astype(np.int64) + r
            value -= modulus * (value > t.bound)
            value += modulus * (value < -t.bound)
            xc[0, step.pos] = value
            absr[step.pos] = np.abs(r)
        pt.append(t.ctx_lut[absr.astype(np.intp)].astype(np.int64))
        bx.append(t.ctx_lut[t.box(absr).astype(np.intp)].astype(np.int64))
    if int(dec.decode(t.end_model, 1)[0]) != em._SENTINEL:
        raise ValueError("corrupt: end marker")
    if not dec.canonical():
        raise ValueError("corrupt: not canonical")
    return x.reshape(shape)


def _pass_coefs(coef, c, n_chan):
    """Split channel ``c``'s coefficients (pass-major features: today's
    context, the coded channels' ``|r|`` buckets, the other channels' contexts)
    into a row over all channels' contexts and a row over the coded ``|r|``."""
    on_today = np.zeros(n_chan, np.int64)
    on_today[c] = coef[0]
    on_today[np.arange(n_chan) != c] = coef[1 + c :]
    return on_today, coef[1 : 1 + c]


def proto_encode_pass(q, bits):
    """The scale context in format 3's pass-major order; uint32 words.

    Features: each channel's own context, the other channels' contexts (from
    earlier passes) and the coded channels' ``|r|`` at the position (decoded
    earlier in the same pass). The stream: every channel's mode U(4), then
    per channel its ``C + c`` coefficients U(1024) and offset U(2**24); then
    per pass, channel after channel, the table indices of that channel's new
    contexts U(256), its tokens sorted stably by table and its raw bits; the
    end marker.
    """
    import constriction

    t = _Proto(q.shape, bits)
    eb, em = t.eb, t.em
    n_chan = t.n_chan
    x = q.reshape(n_chan, -1).astype(np.int32)
    modes = eb._choose(x, t.bound, eb._plan(t.height, t.width, True)).modes
    shrinks = np.asarray(em._SHRINK, np.int32)[modes][:, None]
    passes = []
    for k, step in enumerate(t.steps):
        pred, today = t.predict(x, k, shrinks)
        z = t.zigzag[(x[:, step.pos] - pred + 2 * t.bound).astype(np.intp)]
        z = z.astype(np.int64)
        passes.append((today.astype(np.int64), z, t.ctx_lut[(z + 1) >> 1]))
    today_all = np.concatenate([p[0] for p in passes], 1)
    z_all = np.concatenate([p[1] for p in passes], 1)
    pt_all = np.concatenate([p[2] for p in passes], 1).astype(np.int64)
    tok_all = em._tokenize(z_all)[0]
    coefs, los, tabs = [], [], []
    for c in range(n_chan):
        prev = np.concatenate([pt_all[:c], np.delete(today_all, c, axis=0)], 0)
        coef, lo, ctx, _ = fit_scale_context(
            tok_all[c], today_all[c], (z_all[c] + 1) >> 1, prev, t.n_valid
        )
        counts = np.bincount(ctx * t.n_valid + tok_all[c], minlength=32 * t.n_valid)
        tabs.append(eb._best_tables(counts.reshape(32, t.n_valid), t.n_valid)[0])
        coefs.append(coef)
        los.append(lo)
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(modes.astype(np.int32), t.mode_model)
    split = []
    for c in range(n_chan):
        enc.encode((coefs[c] + 512).astype(np.int32), t.coef_model)
        enc.encode(np.array([los[c] + (1 << 23)], np.int32), t.lo_model)
        split.append(_pass_coefs(coefs[c], c, n_chan))
    on_today = np.array([s[0] for s in split])
    seen = np.zeros((n_chan, 32), bool)
    for today, z, pt in passes:
        base = on_today @ today
        tok, nbits, extra = em._tokenize(z)
        for c in range(n_chan):
            eta = base[c] + split[c][1] @ pt[:c].astype(np.int64)
            ctx = np.clip((eta - los[c] + (1 << (Q_SHIFT - 1))) >> Q_SHIFT, 0, 31)
            present = np.unique(ctx)
            new = present[~seen[c, present]]
            if new.size:
                enc.encode(tabs[c][new].astype(np.int32), t.table_model)
                seen[c, new] = True
            tab = tabs[c][ctx]
            order = np.argsort(tab, kind="stable")
            sorted_tok = tok[c, order].astype(np.int32)
            for sel, model, arg in t.groups(tab[order]):
                if isinstance(arg, np.ndarray):
                    enc.encode(sorted_tok[sel], model, arg)
                else:
                    enc.encode(sorted_tok[sel], model)
            big = nbits[c] > 0
            if big.any():
                enc.encode(
                    extra[c, big].astype(np.int32),
                    t.raw_model,
                    (np.int64(1) << nbits[c, big]).astype(np.int32),
                )
    enc.encode(np.array([em._SENTINEL], np.int32), t.end_model)
    return enc.get_compressed()


def proto_decode_pass(words, shape, bits):
    """Inverse of :func:`proto_encode_pass`: each pass predicted for all
    channels at once, its tokens decoded channel after channel."""
    t = _Proto(shape, bits)
    em = t.em
    n_chan = t.n_chan
    dec = _replaying()(words)
    x = np.zeros((n_chan, t.height * t.width), np.int32)
    modulus = 2 * t.bound + 1
    modes = dec.decode(t.mode_model, n_chan)
    shrinks = np.asarray(em._SHRINK, np.int32)[modes][:, None]
    split, los = [], []
    for c in range(n_chan):
        coef = dec.decode(t.coef_model, n_chan + c).astype(np.int64) - 512
        los.append(int(dec.decode(t.lo_model, 1)[0]) - (1 << 23))
        split.append(_pass_coefs(coef, c, n_chan))
    on_today = np.array([s[0] for s in split])
    tables = np.zeros((n_chan, 32), np.int64)
    seen = np.zeros((n_chan, 32), bool)
    for k, step in enumerate(t.steps):
        pred, today = t.predict(x, k, shrinks)
        base = on_today @ today.astype(np.int64)
        pt = np.zeros((n_chan, step.pos.size), np.int64)
        for c in range(n_chan):
            eta = base[c] + split[c][1] @ pt[:c]
            ctx = np.clip((eta - los[c] + (1 << (Q_SHIFT - 1))) >> Q_SHIFT, 0, 31)
            present = np.unique(ctx)
            new = present[~seen[c, present]]
            if new.size:
                tables[c, new] = dec.decode(t.table_model, new.size)
                seen[c, new] = True
            tab = tables[c, ctx]
            r = _decode_residuals(dec, t, tab)
            value = pred[c].astype(np.int64) + r
            value -= modulus * (value > t.bound)
            value += modulus * (value < -t.bound)
            x[c, step.pos] = value
            pt[c] = t.ctx_lut[np.abs(r)]
    if int(dec.decode(t.end_model, 1)[0]) != em._SENTINEL:
        raise ValueError("corrupt: end marker")
    if not dec.canonical():
        raise ValueError("corrupt: not canonical")
    return x.reshape(shape)


def _decode_residuals(dec, t, tab):
    """The signed residuals of one channel's pass whose positions use the
    tables ``tab`` (its tokens sorted by table, as the coder writes them)."""
    order = np.argsort(tab, kind="stable")
    tok_sorted = np.empty(tab.size, np.int32)
    for sel, model, arg in t.groups(tab[order]):
        tok_sorted[sel] = dec.decode(model, arg)
    if tok_sorted.min() < 0 or tok_sorted.max() >= t.n_valid:
        raise ValueError("corrupt: token out of range")
    tok = np.empty_like(tok_sorted)
    tok[order] = tok_sorted
    nbits = t.tok_bits[tok]
    z = tok.astype(np.int64)
    big = np.flatnonzero(nbits)
    if big.size:
        sizes = (np.int32(1) << nbits[big]).astype(np.int32)
        raw = dec.decode(t.raw_model, sizes)
        top = 4 | ((tok[big] - t.em._DIRECT) & 3)
        z[big] = (top.astype(np.int64) << nbits[big]) | raw
    if z.max() > 2 * t.bound:
        raise ValueError("corrupt: residual out of range")
    return (z >> 1) ^ -(z & 1)


PROTOTYPES = {
    "channel": (proto_encode, proto_decode),
    "pass": (proto_encode_pass, proto_decode_pass),
}


def prototype(grids, repeats=3):
    """Real coded bits and times of the prototypes against today's coder.

    Times are medians of ``repeats`` runs, the coders interleaved per grid.
    """
    from sklearn_walloc._entropy import decode_latents, encode_latents

    coders = {"today": (encode_latents, decode_latents), **PROTOTYPES}
    out = {"latents": 0}
    for name in coders:
        out[f"{name}_bits"] = 0
        out[f"{name}_enc"] = out[f"{name}_dec"] = 0.0
    for q, bits in grids:
        runs = {name: [] for name in coders}
        sizes = {}
        for _ in range(repeats):
            for name, (encode, decode) in coders.items():
                t0 = time.perf_counter()
                words = encode(q, bits)
                t1 = time.perf_counter()
                back = decode(words, q.shape, bits)
                t2 = time.perf_counter()
                runs[name].append((t1 - t0, t2 - t1))
                if not np.array_equal(back, q):
                    raise RuntimeError(f"{name} does not round-trip")
                sizes[name] = len(words) if isinstance(words, bytes) else 4 * words.size
        for name in coders:
            enc_t, dec_t = np.median(np.array(runs[name]), axis=0)
            out[f"{name}_enc"] += float(enc_t)
            out[f"{name}_dec"] += float(dec_t)
            out[f"{name}_bits"] += 8 * sizes[name]
        out["latents"] += q.size
    return out


# ------------------------------------------------------------------ run
TODAY = "coder (today, 32) | two_part"


def per_channel_switch(rows):
    """Each new code, or today's, per channel, whichever is shorter: the
    encoder's choice, sent in one more bit per channel."""
    out = {}
    for k, b in rows.items():
        if k.endswith(("| two_part", "| table_prior")) or k.startswith(
            ("mix_", "CCP + mix_")
        ):
            if k != TODAY:
                out[f"{k} (or today)"] = np.minimum(b, rows[TODAY]) + 1
    return out


def measure(codec, photos, names, repeats=3):
    """Per-photo per-channel bits of every estimate, summed over the set."""
    acc = {}
    per_photo = []
    pixels = payload = blob_bytes = 0
    grids = []
    for photo, name in zip(photos, names):
        q, nblob, npay, bits = coded_latents(codec, photo)
        grids.append((q, bits))
        a = analyse(q, bits)
        rows = {"coder_ideal": a["coder"]}
        rows["order0_q"] = order0(q, bits)
        for scheme, (ctx, n_ctx) in contexts(a).items():
            for est, b in code_lengths(a["tok"], ctx, n_ctx, a["n_valid"]).items():
                rows[f"{scheme} | {est}"] = b + a["raw"] + 2
        blend = blend_context(a)
        for est, b in code_lengths(a["tok"], blend, 32, a["n_valid"]).items():
            rows[f"{BLEND} | {est}"] = b + a["raw"] + 2 + math.log2(W_STEPS + 1)
        for order, key in SCALE_ORDERS.items():
            rows[f"{key} | two_part"] = scale_context(a, order) + a["raw"] + 2
        rows.update(scale_mixture(a))
        ccp = cross_prediction(a)
        for scheme, (ctx, n_ctx) in contexts(a).items():
            if scheme not in CCP_SCHEMES:
                continue
            for est, b in code_lengths(ccp["tok"], ctx, n_ctx, a["n_valid"]).items():
                rows[f"CCP + {scheme} | {est}"] = b + ccp["raw"] + ccp["side"] + 2
        mix = scale_mixture({**a, "r": ccp["r"]}, ("mix_rich",))
        rows["CCP + mix_rich"] = mix["mix_rich"] + ccp["side"]
        rows.update(per_channel_switch(rows))
        n_pix = photo.shape[0] * photo.shape[1]
        split = a["coder"] / a["coder"].sum() * (8 * npay)
        rows["coded"] = split
        for k, b in rows.items():
            acc[k] = acc.get(k, 0) + b
        pixels += n_pix
        payload += npay
        blob_bytes += nblob
        per_photo.append(
            {
                "photo": name,
                "pixels": n_pix,
                "latent_shape": list(q.shape),
                "blob_bytes": nblob,
                "payload_bytes": npay,
                "coder_ideal_bits": float(a["coder"].sum() + 16),
                "best_bits": {k: float(v.sum()) for k, v in rows.items()},
            }
        )
    proto = prototype(grids, repeats=repeats)
    proto["photos"] = len(grids)
    proto["repeats"] = repeats
    return {
        "prototype": proto,
        "pixels": pixels,
        "payload_bytes": payload,
        "blob_bytes": blob_bytes,
        "per_channel_bits": {k: v.tolist() for k, v in acc.items()},
        "photos": per_photo,
    }


def photo_sets(quick):
    sets = {}
    photos, names = load_photos(split="holdout", return_names=True)
    sets["bundled holdout"] = (list(photos), list(names))
    mate, mnames = load_mate_photos(limit=2 if quick else None)
    if mate:
        sets["mate nature"] = (mate, mnames)
    if quick:
        sets = {k: (p[:1], n[:1]) for k, (p, n) in sets.items()}
    return sets


def _totals(r):
    return {k: float(sum(v)) for k, v in r["per_channel_bits"].items()}


def _best(bits, keep):
    """The shortest achievable code among the keys ``keep`` accepts (never a
    plug-in entropy, which no decoder can use)."""
    ends = ("| kt", "| two_part", "| table_prior", "(or today)")
    keys = [
        k
        for k in bits
        if keep(k)
        and "plugin" not in k
        and (k.endswith(ends) or k.startswith(("mix_", "CCP + mix_")))
    ]
    return min(keys, key=bits.get)


def _is_cross_scale(k):
    """A code whose context or scale reads the coded channels' magnitudes."""
    return not k.startswith("CCP") and (
        k.startswith(("X", "S8 x X", "S4 x X", "coder x X"))
        or k.startswith(("mix_cross", "mix_both", "mix_rich"))
    )


def summary_rows(report):
    rows = []
    for model, sets in report["results"].items():
        for set_name, r in sets.items():
            bits = _totals(r)
            px = r["pixels"]
            coded = 8 * r["payload_bytes"]
            picks = {
                "best": _best(bits, lambda k: True),
                "spatial_best": _best(
                    bits, lambda k: k.startswith(("S8:", "N8:", "mix_spatial"))
                ),
                "cross_scale_best": _best(bits, _is_cross_scale),
                "ccp_best": _best(bits, lambda k: k.startswith("CCP")),
                "mixture_shared_scale": "mix_both (or today)",
                "mixture_rich": "mix_rich (or today)",
            }
            row = {
                "model": model,
                "set": set_name,
                "photos": len(r["photos"]),
                "blob_bpp": 8 * r["blob_bytes"] / px,
                "payload_bpp": coded / px,
                "coder_ideal_bpp": bits["coder_ideal"] / px,
                "today_plugin_bpp": bits["coder (today, 32) | plugin"] / px,
            }
            for name, key in picks.items():
                row[name] = key
                row[f"{name}_bpp"] = bits[key] / px
                row[f"{name}_saving"] = 1 - bits[key] / coded
            for order, key in SCALE_ORDERS.items():
                row[f"scale_context_{order}_saving"] = (
                    1 - bits[f"{key} | two_part"] / coded
                )
            pr = r["prototype"]
            row["scale_context_estimate_saving"] = (
                1 - bits[f"{SCALE_CTX} | two_part"] / coded
            )
            for o in PROTOTYPES:
                row[f"prototype_{o}_saving"] = 1 - pr[f"{o}_bits"] / pr["today_bits"]
                row[f"prototype_{o}_decode_slowdown"] = pr[f"{o}_dec"] / pr["today_dec"]
            rows.append(row)
    return rows


def prototype_table(report):
    rows = []
    for model, sets in report["results"].items():
        for set_name, r in sets.items():
            pr = r["prototype"]
            ml = pr["latents"] / 1e6
            today = pr["today_bits"]
            row = [model, set_name, str(pr["photos"]), str(today)]
            for order in PROTOTYPES:
                key = SCALE_ORDERS[order]
                est = sum(r["per_channel_bits"][f"{key} | two_part"])
                got = pr[f"{order}_bits"]
                row += [f"{est:.0f} / {got}", f"{100 * (1 - got / today):.2f}%"]
            for name in ("today", *PROTOTYPES):
                row.append(
                    f"{ml / pr[f'{name}_enc']:.2f} / {ml / pr[f'{name}_dec']:.2f}"
                )
            row += [f"{pr[f'{o}_dec'] / pr['today_dec']:.1f}x" for o in PROTOTYPES]
            row.append(str(pr["repeats"]))
            rows.append(row)
    return markdown_table(
        [
            "model",
            "set",
            "photos",
            "today's bits",
            "channel-major: estimate / real bits",
            "saving",
            "pass-major: estimate / real bits",
            "saving",
            "today enc / dec M latents/s",
            "channel-major enc / dec",
            "pass-major enc / dec",
            "decode time, channel-major",
            "pass-major",
            "repeats (median)",
        ],
        rows,
    )


def _pct(b, coded):
    return f"{100 * (1 - b / coded):+.1f}%"


def markdown(report):
    lines = [
        "# Latent contexts: what better entropy contexts would save",
        "",
        f"Machine: {report['machine']}. Runtime {report.get('runtime_s', 0):.0f} s.",
        "",
        "Bits per pixel of the payload (header and CRC excluded) under each context",
        "and estimator. `plug-in`: the empirical conditional entropy (a bound no",
        "decoder reaches); `KT`: adaptive counts per context from zero",
        "(Krichevsky-Trofimov); `table prior`: adaptive counts started from the",
        f"best stored table (prior mass {PRIOR_MASS:g}) plus its 8-bit index;",
        "`two-part`: the best stored table per (channel, context) plus its 8-bit",
        "index, as the coder does today; `or today`: per channel the shorter of",
        "that and today's code, plus one bit. Savings are against the payload.",
        "Raw low bits, predictor modes and CCP coefficients are included.",
        "",
    ]
    ests = ("plugin", "kt", "table_prior", "two_part")
    for model, sets in report["results"].items():
        for set_name, r in sets.items():
            px = r["pixels"]
            bits = _totals(r)
            coded = bits["coded"]
            lines += [f"## {model}, {set_name} ({len(r['photos'])} photos)", ""]
            lines.append(
                f"Payload {coded / px:.4f} bpp (blobs "
                f"{8 * r['blob_bytes'] / px:.4f} bpp); the coder's ideal "
                f"{bits['coder_ideal'] / px:.4f} bpp; order-0 entropy of the "
                f"latents {bits['order0_q'] / px:.4f} bpp."
            )
            lines.append("")
            schemes = [k[: -len(" | kt")] for k in bits if k.endswith(" | kt")]
            rows = []
            for s in schemes:
                alt = bits.get(f"{s} | two_part (or today)", bits[f"{s} | two_part"])
                rows.append(
                    [s]
                    + [f"{bits[f'{s} | {e}'] / px:.4f}" for e in ests]
                    + [f"{alt / px:.4f}", _pct(alt, coded)]
                )
            for key in SCALE_ORDERS.values():
                sc = bits[f"{key} | two_part"]
                rows.append(
                    [
                        key,
                        "",
                        "",
                        "",
                        f"{sc / px:.4f}",
                        f"{sc / px:.4f}",
                        _pct(sc, coded),
                    ]
                )
            for m in (
                "mix_spatial",
                "mix_cross",
                "mix_both",
                "mix_rich",
                "CCP + mix_rich",
            ):
                alt = bits[f"{m} (or today)"]
                rows.append(
                    [
                        f"scale mixture: {m.replace('mix_', '')}",
                        "",
                        "",
                        "",
                        f"{bits[m] / px:.4f}",
                        f"{alt / px:.4f}",
                        _pct(alt, coded),
                    ]
                )
            lines.append(
                markdown_table(
                    [
                        "context",
                        "plug-in",
                        "KT",
                        "table prior",
                        "two-part",
                        "two-part or today",
                        "saving",
                    ],
                    rows,
                )
            )
            lines.append("")
            pc = r["per_channel_bits"]
            cols = [
                ("coded", "coded"),
                ("order0_q", "H0(q)"),
                ("order 0 | plugin", "H0(tok)+raw"),
                ("coder (today, 32) | plugin", "today plug-in"),
                ("S8 x Xb8 | two_part", "S8xXb8"),
                ("coder x Xb4 | two_part", "today x Xb4"),
                ("CCP + coder (today, 32) | two_part", "CCP + today"),
                ("mix_both", "mix both"),
                ("mix_rich", "mix rich"),
            ]
            n_chan = len(pc["coded"])
            rows = [
                [str(c)] + [f"{pc[k][c] / px:.4f}" for k, _ in cols]
                for c in range(n_chan)
            ]
            lines.append("Per channel, bits per pixel (two-part unless named):")
            lines.append("")
            lines.append(markdown_table(["ch"] + [h for _, h in cols], rows))
            lines.append("")
    lines += ["## Summary", ""]
    lines.append(summary_table(report["summary"]))
    lines += [
        "",
        "## Prototype: the scale context, coded for real",
        "",
        "Integer-exact, in this script only: per channel the integer",
        "coefficients and offset of the scale context, then today's tokens,",
        "stored tables and raw bits with that context; decoded with the",
        "library's canonical-word check, round trip verified on every grid.",
        "Channel-major: all of a channel before the next (features: the coded",
        "channels' |r| at the position and their 3x3 mean). Pass-major:",
        "format 3's passes, each predicted for all channels at once, its tokens",
        "decoded channel after channel (features: the coded channels' |r| at the",
        "position, the other channels' contexts).",
        "Times: today's `encode_latents` / `decode_latents` and the prototype,",
        "interleaved per grid, summed over the set.",
        "",
        prototype_table(report),
    ]
    return "\n".join(lines) + "\n"


def summary_table(summary):
    rows = []
    for r in summary:
        rows.append(
            [
                r["model"],
                r["set"],
                f"{r['payload_bpp']:.4f}",
                f"{r['today_plugin_bpp']:.4f}",
                f"{r['best_bpp']:.4f} ({100 * r['best_saving']:.1f}%)",
                r["best"].replace(" | ", ", "),
                f"{100 * r['spatial_best_saving']:.1f}%",
                f"{100 * r['cross_scale_best_saving']:.1f}%",
                f"{100 * r['ccp_best_saving']:.1f}%",
                f"{100 * r['mixture_shared_scale_saving']:.1f}%",
                f"{100 * r['mixture_rich_saving']:.1f}%",
                f"{100 * r['scale_context_estimate_saving']:.1f}%",
                f"{100 * r['prototype_channel_saving']:.1f}%",
                f"{100 * r['scale_context_pass_saving']:.1f}%",
                f"{100 * r['prototype_pass_saving']:.1f}%",
                f"{100 * r['scale_context_batched_saving']:.1f}%",
            ]
        )
    return markdown_table(
        [
            "model",
            "set",
            "payload bpp",
            "today's contexts, plug-in",
            "best code",
            "which",
            "spatial only",
            "cross-channel scale",
            "with CCP",
            "mixture, shared scale",
            "mixture, rich",
            "scale context",
            "its prototype",
            "scale context, pass-major",
            "its prototype",
            "scale context, batched",
        ],
        rows,
    )


def main():
    parser = benchmark_parser(__doc__, threads=2)
    args = parser.parse_args()
    run = BenchmarkRun("latent_context", args)
    sets = photo_sets(args.quick)
    import sklearn_walloc

    report = {
        "machine": machine_line(run.machine),
        "library": sklearn_walloc.__file__,
        "results": {},
        "sets": {},
    }
    for set_name, (photos, names) in sets.items():
        report["sets"][set_name] = names
    for model in MODELS:
        # The model's own rate (gain 0): the latents transform gives.
        codec = WallocCodec.from_pretrained(model).set_params(gain=0)
        report["results"][model] = {}
        for set_name, (photos, names) in sets.items():
            t0 = time.perf_counter()
            # Timings: median of 3 on the small set, one run on the large one.
            repeats = 3 if len(photos) <= 3 else 1
            report["results"][model][set_name] = measure(codec, photos, names, repeats)
            print(f"{model} {set_name}: {time.perf_counter() - t0:.1f} s")
    report["summary"] = summary_rows(report)
    run.finish(report, markdown, report["summary"])


if __name__ == "__main__":
    main()
