"""The training loop of WaLLoC in layers, as skorch separates them.

Each layer changes alone:

- **data** (:class:`CoefficientCrops`, :class:`PixelCrops`): where training
  batches come from. The wavelet packet transform is fixed, so the default
  computes the training signals' coefficients once (optionally for flipped
  copies too) and samples crops of that coefficient grid: no analysis or
  synthesis runs in the loop.
- **objective** (:class:`Objective`): the loss of one batch. In the coefficient
  domain it is the squared error of each band weighted by the energy of that
  band's synthesis atom, which is the pixel MSE for an orthogonal wavelet and
  within 0.35 dB of it on held-out photos for ``bior4.4``
  (``benchmarks/training.py`` measures it).
- **step** (:class:`TrainingStep`): optimiser, schedule, gradient clipping;
  the place a GPU or DDP run changes.
- **validation** (:class:`Validation`, :class:`EarlyStopping`): the score of
  the *rounded* round trip on held-out data and the state kept.
- **history and progress** (:class:`History`): what is recorded and shown, and
  callbacks ``callback(trainer, record)`` run after every validation.

:func:`train` wires them; ``_training.optimise`` is its stable entry point.
"""

import copy
import math
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ._bottleneck import LaplaceRate

__all__ = [
    "CoefficientCrops",
    "EarlyStopping",
    "History",
    "Objective",
    "PixelCrops",
    "TrainingStep",
    "Validation",
    "band_weights",
    "least_squares_decoder",
    "make_rate",
    "train",
]


# -------------------------------------------------------------------- data
def _flips(a, signal_ndim):
    """The signal and its mirror images along each spatial axis (and both)."""
    axes = list(range(2, 2 + signal_ndim))
    out = [a]
    for k in range(1, 2**signal_ndim):
        flip = [ax for i, ax in enumerate(axes) if k >> i & 1]
        out.append(np.ascontiguousarray(np.flip(a, flip)))
    return out


class _RandomWindows:
    """Random equal-sized windows from groups of arrays ``(n, C, *S)``."""

    def __init__(self, tensors, side, generator):
        self.tensors = tensors
        smallest = np.min([t.shape[2:] for t in tensors], axis=0)
        self.size = tuple(int(s) for s in np.maximum(np.minimum(side, smallest), 1))
        weights = torch.tensor([float(t[:, :1].numel()) for t in tensors])
        self.weights = weights / weights.sum()
        self.generator = generator

    def sample(self, batch_size):
        g = self.generator
        groups = torch.multinomial(self.weights, batch_size, True, generator=g)
        crops = []
        for gi in groups.tolist():
            t = self.tensors[gi]
            i = int(torch.randint(len(t), (1,), generator=g))
            window = [slice(None)]
            for axis, size in enumerate(self.size):
                hi = t.shape[2 + axis] - size
                lo = int(torch.randint(hi + 1, (1,), generator=g)) if hi > 0 else 0
                window.append(slice(lo, lo + size))
            crops.append(t[i][tuple(window)])
        return torch.stack(crops)


class PixelCrops(_RandomWindows):
    """Random crops of the signals themselves (the pixel-domain path).

    ``crop_size`` is in samples, rounded down to a multiple of the model's
    stride and capped by the smallest signal.
    """

    domain = "pixel"

    def __init__(self, model, arrays, crop_size, device, generator, flips=False):
        stride = model.stride
        if flips:
            arrays = [f for a in arrays for f in _flips(a, model.signal_ndim)]
        tensors = [torch.from_numpy(a).to(device) for a in arrays]
        smallest = np.min([a.shape[2:] for a in arrays], axis=0)
        side = np.maximum(np.minimum(crop_size, smallest) // stride * stride, stride)
        super().__init__(tensors, side, generator)


class CoefficientCrops(_RandomWindows):
    """Random crops of the packet coefficient grid, computed once.

    Each padded signal is analysed whole (so crops carry the coefficients of
    the full signal, borders as inference sees them), optionally with its
    flipped copies; a crop of ``crop_size`` samples is a window of
    ``crop_size // stride`` latent positions.
    """

    domain = "wavelet"

    def __init__(self, model, arrays, crop_size, device, generator, flips=False):
        tensors = []
        with torch.no_grad():
            for a in arrays:
                for f in _flips(a, model.signal_ndim) if flips else [a]:
                    parts = [
                        model.analysis(torch.from_numpy(f[i : i + 16]).to(device))
                        for i in range(0, len(f), 16)
                    ]
                    tensors.append(torch.cat(parts))
        super().__init__(tensors, max(1, crop_size // model.stride), generator)


# ------------------------------------------------- least-squares decoder start
# The refinement's hidden units are kept in GELU's linear regime: h = W1 z + B
# with |W1 z| <= _LSQ_SPAN and B = _LSQ_OFFSET, where GELU(h) = h to ~1e-6.
_LSQ_OFFSET = 10.0
_LSQ_SPAN = 4.0
_LSQ_MAX_POSITIONS = 200_000


@torch.no_grad()
def least_squares_decoder(model, grids, weights, ridge=1e-3, generator=None):
    """Set the residual decoder path to the least-squares linear map from the
    3x3 neighbourhoods of the rounded latents to what the linear path misses.

    ``grids`` are coefficient grids ``(n, bands, *S)`` of normalised signals.
    The map ``M`` (``latent_dim * 3**d`` inputs to ``bands`` outputs, fitted
    with the band ``weights`` and a ridge of ``ridge`` times the mean feature
    energy) is factorised by SVD to the path's width and written into its
    first and last layers, with the hidden units kept in GELU's linear regime
    and the residual blocks set to identities, so the network computes ``M``
    (to about 1e-6) and gradient training can start from it. Returns the
    fraction of the weighted residual energy the map removes on ``grids``.
    """
    refine = model.decoder.refine
    if refine is None:
        return 0.0
    first, last = refine[0], refine[-1]
    width = first.out_channels
    F, R = _lsq_samples(model, grids, generator)
    sw = weights.double().sqrt()
    A = F.T @ F
    A += ridge * A.diagonal().mean() * torch.eye(len(A), dtype=A.dtype, device=A.device)
    M = torch.linalg.solve(A, F.T @ (R * sw))  # (inputs, bands), weighted
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)  # M = U S Vh
    k = min(width, len(S))
    proj = F @ U[:, :k]  # hidden activations before scaling
    c = _LSQ_SPAN / proj.abs().amax(dim=0).clamp_min(1e-12)
    w1 = F.new_zeros(width, F.shape[1])
    w1[:k] = (U[:, :k] * c).T
    w_out = F.new_zeros(R.shape[1], width)
    w_out[:, :k] = (Vh[:k].T * (S[:k] / c)) / sw[:, None]
    first.weight.copy_(w1.reshape(first.weight.shape).float())
    first.bias.fill_(_LSQ_OFFSET)
    for block in refine[1:-2]:
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    last.weight.copy_(w_out.reshape(last.weight.shape).float())
    last.bias.copy_((-w_out.sum(dim=1) * _LSQ_OFFSET).float())
    before = float((R**2 * weights.double()).sum())
    after = float(((R - F @ M / sw) ** 2 * weights.double()).sum())
    return 1.0 - after / max(before, 1e-30)


def _lsq_features(model, y):
    """The 3x3 latent neighbourhoods ``(P, latent_dim * 3**d)`` of grid ``y``'s
    positions and what the linear path misses there ``(P, bands)``, float32."""
    q = torch.round(model.bottleneck.compand(model.encoder(y) * model.latent_scale))
    z = model.bottleneck.expand(q) / model.latent_scale
    r = y - model.decoder.linear(z)
    if model.signal_ndim == 2:
        f = torch.nn.functional.unfold(z, 3, padding=1)  # (n, L*9, P)
    else:
        f = torch.nn.functional.unfold(z[..., None], (3, 1), padding=(1, 0))
    f = f.transpose(1, 2).reshape(-1, f.shape[1])
    return f, r.flatten(2).transpose(1, 2).reshape(-1, r.shape[1])


def _lsq_samples(model, grids, generator):
    """:func:`_lsq_features` of every grid's positions, or of
    ``_LSQ_MAX_POSITIONS`` of them drawn at random, in float64: the rows that
    concatenating all of them and drawing would give, in the same order, but
    one grid's float32 rows at a time, so memory is bounded by the draw and the
    largest grid (all the rows in float64 took 2.6 GB per 10 MP of photos)."""
    counts = [math.prod(y.shape[:1] + y.shape[2:]) for y in grids]  # 1x1 encoder
    total = sum(counts)
    keep = None
    if total > _LSQ_MAX_POSITIONS:
        keep = torch.randperm(total, generator=generator)[:_LSQ_MAX_POSITIONS]
    F = R = None
    start = 0
    for y, n in zip(grids, counts):
        f, r = _lsq_features(model, y)
        if keep is None:
            rows, at = slice(None), slice(start, start + n)
        else:
            hit = torch.nonzero((keep >= start) & (keep < start + n)).flatten()
            rows, at = (keep[hit] - start).to(f.device), hit.to(f.device)
        if F is None:
            size = total if keep is None else len(keep)
            F = f.new_empty((size, f.shape[1]), dtype=torch.float64)
            R = r.new_empty((size, r.shape[1]), dtype=torch.float64)
        F[at] = f[rows].double()
        R[at] = r[rows].double()
        start += n
    return F, R


# --------------------------------------------------------------- objective
@torch.no_grad()
def band_weights(wpt, channels, device=None):
    """Energy of each band's synthesis atom, ``(channels * n_bands,)``.

    A coefficient error ``e`` in band ``b`` becomes a signal error of energy
    ``w_b * e**2`` away from the borders; for an orthogonal wavelet every
    ``w_b`` is 1. Weighting the coefficient MSE by ``w`` approximates the
    signal MSE when errors are uncorrelated across bands and positions.
    """
    n, nd = wpt.n_bands, wpt.signal_ndim
    grid = 16
    y = torch.zeros((n, n) + (grid,) * nd, dtype=torch.float64)
    centre = (grid // 2,) * nd
    y[(torch.arange(n), torch.arange(n), *centre)] = 1.0
    # The tap loops take the input's dtype: float64 without touching ``wpt``.
    w = wpt.inverse(y.to(wpt.analysis.device)).pow(2).flatten(1).sum(1)
    return w.float().repeat(channels).to(device)


class Objective:
    """Loss of one batch: normalised MSE (+ ``rate_weight`` x bits/value).

    In the pixel domain the batch is signals and the loss is the MSE of the
    round trip divided by the data variance. In the wavelet domain the batch
    is coefficients of normalised signals and the loss is the band-weighted
    coefficient MSE (:func:`band_weights`), the same quantity up to the
    transform's departure from orthogonality.

    ``mode`` is the bottleneck's training proxy: ``"noise"`` (additive uniform
    noise) or ``"round"`` (rounding with a straight-through gradient).
    """

    def __init__(self, model, domain, rate=None, rate_weight=0.0):
        self.model = model
        # A DDP-wrapped pixel round trip ``f(x, generator) -> (q, x_hat)``
        # (``_distributed.DataParallel.wrap``), used for noisy training batches.
        self.round_trip = None
        self.domain = domain
        self.rate = rate
        self.rate_weight = rate_weight
        self.weights = None
        if domain == "wavelet":
            channels = model.encoder.in_channels // model.wpt.n_bands
            device = model.encoder.weight.device
            w = band_weights(model.wpt, channels, device)
            self.weights = w.view(1, -1, *[1] * model.signal_ndim)

    def latents(self, y, mode, generator=None):
        """Quantised latents of coefficients ``y`` (normalised signals)."""
        m = self.model
        z = m.encoder(y) * m.latent_scale
        if mode == "noise":
            return m.bottleneck.quantize(z, "noise", generator)
        u = m.bottleneck.compand(z)
        if mode == "round":
            return u + (torch.round(u) - u).detach()
        if mode == "symbols":
            return torch.round(u)
        raise ValueError(f"unknown bottleneck mode {mode!r}")

    def __call__(self, batch, mode, generator=None):
        m = self.model
        if self.domain == "wavelet":
            q = self.latents(batch, mode, generator)
            y = m.decoder(m.bottleneck.expand(q) / m.latent_scale)
            loss = (self.weights * (y - batch) ** 2).mean()
        else:
            if self.round_trip is not None and mode == "noise":
                q, x = self.round_trip(batch, generator)
            else:
                q = self.latents(m.analysis(batch), mode, generator)
                x = m.decode(q)
            loss = (((x - batch) / m.data_scale) ** 2).mean()
        if self.rate is not None:
            loss = loss + self.rate_weight * self.rate.bits(q) / batch.numel()
        return loss


# -------------------------------------------------------------------- step
class TrainingStep:
    """One optimiser step: AdamW, warm-up + cosine schedule, clipping at 1.

    ``round_from`` (a fraction of ``max_iter``) switches the bottleneck proxy
    from noise to straight-through rounding for the last part of training.
    """

    def __init__(
        self,
        objective,
        params,
        *,
        max_iter,
        learning_rate,
        weight_decay=0.0,
        warmup=0,
        round_from=1.0,
        noise_generator=None,
    ):
        self.objective = objective
        self.params = params
        self.max_iter = max_iter
        self.optimiser = torch.optim.AdamW(
            params, lr=learning_rate, weight_decay=weight_decay
        )

        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(1, max_iter - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimiser, factor)
        self.round_from = round_from
        self.generator = noise_generator
        # Averages the reported loss over replicas in a DDP run.
        self.reduce = None

    def __call__(self, step, batch):
        mode = "round" if step > self.round_from * self.max_iter else "noise"
        self.optimiser.zero_grad(set_to_none=True)
        loss = self.objective(batch, mode, self.generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimiser.step()
        self.schedule.step()
        value = float(loss.detach())
        return self.reduce(value) if self.reduce else value


# -------------------------------------------------------------- validation
class Validation:
    """Score of the rounded round trip on held-out data, in dB.

    ``data`` is what the objective takes: coefficient grids (wavelet domain,
    computed once) or signals. The score is ``-10 log10(loss) + db_shift``,
    the PSNR in the caller's data range when there is no rate term.
    """

    def __init__(self, objective, data, db_shift, reduce=None):
        self.objective = objective
        self.data = data
        self.db_shift = db_shift
        # Averages the score over replicas in a DDP run.
        self.reduce = reduce

    def __bool__(self):
        return bool(self.data)

    @torch.no_grad()
    def __call__(self):
        total = sum(float(self.objective(d, "symbols")) * len(d) for d in self.data)
        mse = total / sum(len(d) for d in self.data)
        score = -10.0 * math.log10(max(mse, 1e-30)) + self.db_shift
        return self.reduce(score) if self.reduce else score


class EarlyStopping:
    """Keep the best validated state; stop after ``patience`` stale checks."""

    def __init__(self, model, patience, tol):
        self.model = model
        self.patience = patience
        self.tol = tol
        self.best = -math.inf
        self.best_step = 0
        self.state = None
        self.stale = 0

    def update(self, step, score, keep=True):
        """Record ``score`` at ``step``; return True when training should stop."""
        self.stale = 0 if score > self.best + self.tol else self.stale + 1
        if score > self.best:
            self.best, self.best_step = score, step
            if keep:
                self.state = copy.deepcopy(self.model.state_dict())
        return self.stale >= self.patience

    def restore(self):
        if self.state is not None:
            self.model.load_state_dict(self.state)


# ----------------------------------------------------------------- history
class History:
    """Loss per step, validation records, progress bar and callbacks.

    ``records`` holds one dict per validation: ``step``, ``seconds`` since the
    start, ``score`` (dB); ``as_dict`` gives the form the estimator stores.
    """

    def __init__(self, max_iter, loss_scale, verbose=0, callbacks=()):
        self.loss_curve = []
        self.records = []
        self.loss_scale = loss_scale
        self.verbose = verbose
        self.callbacks = list(callbacks)
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=max_iter, disable=verbose <= 0, desc="WaLLoC fit", leave=False
        )

    def step(self, value):
        self.loss_curve.append(value * self.loss_scale)
        self.bar.update(1)

    def validation(self, trainer, step, score, label=None):
        record = {
            "step": step,
            "seconds": time.perf_counter() - self.start,
            "score": score,
        }
        self.records.append(record)
        start = self.records[0]["score"]
        self.bar.set_postfix(
            score=f"{score:.3f} dB", gain=f"{score - start:+.3f} dB", refresh=False
        )
        if self.verbose > 1 or (self.verbose > 0 and step == 0):
            what = label or ("start (closed form)" if step == 0 else f"step {step}")
            self.bar.write(
                f"WaLLoC fit: {what}: validation {score:.3f} dB", file=sys.stderr
            )
        for callback in self.callbacks:
            callback(trainer, record)

    def close(self):
        self.bar.close()


# ------------------------------------------------------------------- train
def train(
    model,
    data,
    validation,
    step,
    stopping,
    history,
    *,
    max_iter,
    batch_size,
    validation_interval,
    start_label=None,
):
    """Run ``step`` on batches of ``data`` for up to ``max_iter`` steps.

    With ``validation`` (non-empty), validate at the start and every
    ``validation_interval`` steps and keep the best state (the start
    included); without, stop when the mean training loss over an interval
    stops improving and keep the last state. ``start_label`` names the
    starting state in the progress lines. Returns the number of steps run.
    """
    n = 0
    if validation:
        score = validation()
        stopping.update(0, score)
        history.validation(None, 0, score, start_label)
    window = []
    for n in range(1, max_iter + 1):
        value = step(n, data.sample(batch_size))
        history.step(value)
        window.append(value)
        if n % validation_interval and n != max_iter:
            continue
        if validation:
            score = validation()
            history.validation(None, n, score)
            stop = stopping.update(n, score)
        else:
            stop = stopping.update(
                n, -10 * math.log10(max(np.mean(window), 1e-30)), False
            )
        window = []
        if stop:
            break
    history.close()
    if validation:
        stopping.restore()
    return n


def make_rate(model, data, batch_size, rate_weight):
    """The Laplace rate model of the ``rate_weight`` term, or None."""
    if rate_weight <= 0:
        return None
    rate = LaplaceRate(model.encoder.out_channels, model.signal_ndim)
    rate = rate.to(model.encoder.weight.device)
    batch = data.sample(batch_size)
    with torch.no_grad():
        if data.domain == "pixel":
            batch = model.analysis(batch)
        z = model.encoder(batch) * model.latent_scale
        rate.initialise(model.bottleneck.quantize(z, "symbols"))
    return rate
