"""Fitting WaLLoC: the closed-form start and the optimisation loop.

The closed-form start is a PCA of the wavelet packet coefficient vectors: the
encoder rows are the principal axes, the linear decoder path their transpose, and
a latent scale puts the projections in the companding range. Training
(``optimise``, built from the layers of ``_trainer``) then minimises the MSE
of the noisy round trip on random crops, by default in the wavelet packet
domain (coefficients computed once), validating the rounded round trip on
held-out signals and keeping the best state.
"""

import math
import time

import numpy as np
import torch

from . import _trainer

__all__ = [
    "TRAINING_OPTIONS",
    "closed_form_start",
    "optimise",
    "pca_start",
    "validation_split",
]

# Optimiser steps between validations; n_iter_no_change counts validations.
VALIDATION_INTERVAL = 10
DOMAINS = ("wavelet", "pixel")
# What the estimators' fit passes to ``optimise`` beyond their parameters.
TRAINING_OPTIONS = {"domain": "wavelet", "least_squares_start": True, "flips": True}
_MAX_PCA_VECTORS = 400_000
_MAX_VAL_SCALARS = 2**22


def _data_moments(arrays):
    total = sum(a.size for a in arrays)
    mean = sum(float(a.sum(dtype=np.float64)) for a in arrays) / total
    var = sum(float(((a - mean) ** 2).sum(dtype=np.float64)) for a in arrays) / total
    return mean, math.sqrt(var)


def _coefficient_vectors(model, arrays, rng):
    """WPT coefficient vectors ``(n, bands)`` in float64, subsampled if many."""
    vectors = []
    with torch.no_grad():
        for a in arrays:
            for start in range(0, len(a), 64):
                # float32 filtering is accurate to ~1e-7 here; PCA runs in float64.
                y = model.analysis(torch.from_numpy(a[start : start + 64])).double()
                vectors.append(y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1]))
    Y = torch.cat(vectors)
    if len(Y) > _MAX_PCA_VECTORS:
        keep = np.sort(rng.choice(len(Y), _MAX_PCA_VECTORS, replace=False))
        Y = Y[torch.from_numpy(keep)]
    return Y


def _quantisation_mse(model, proj, alpha):
    """Mean squared latent error of companding + rounding at scale ``alpha``."""
    bn = model.bottleneck
    q = bn.quantize(proj * alpha, "symbols")
    return float(((bn.expand(q) / alpha - proj) ** 2).sum(dim=1).mean())


@torch.no_grad()
def closed_form_start(model, arrays, rng):
    """Set ``model`` to the PCA solution for the padded signals ``arrays``.

    The latent scale is chosen between two rules by the distortion they give on
    the training vectors: a first-component standard deviation of 0.75 s (best
    on photos), or the 1e-5 tail quantile at 2 s (heavy-tailed signals such as
    music, where the first rule saturates the companding).
    """
    mean, std = _data_moments(arrays)
    model.data_offset.fill_(mean)
    model.data_scale.fill_(std if std > 0 else 1.0)
    Y = _coefficient_vectors(model, arrays, rng)
    center = Y.mean(dim=0)
    Yc = Y - center
    pca_start(model, center, Yc.T @ Yc / max(len(Y) - 1, 1), Y)


@torch.no_grad()
def pca_start(model, center, cov, Y):
    """Set ``model``'s encoder and linear decoder to the principal axes of the
    coefficient covariance ``cov`` around ``center`` (float64); the vectors
    ``Y`` (all, or a sample) choose the latent scale."""
    Yc = Y - center
    evals, evecs = torch.linalg.eigh(cov)
    latent_dim = model.encoder.out_channels
    comps = evecs[:, torch.argsort(evals, descending=True)[:latent_dim]].T
    if model.signal_ndim == 2:  # images: the lowpass band is the mean colour
        comps = _keep_lowpass_colours(comps, cov, model.wpt.n_bands)
    # Deterministic signs, as sklearn's svd_flip does.
    signs = torch.sign(comps[torch.arange(latent_dim), comps.abs().argmax(dim=1)])
    comps = comps * torch.where(signs == 0, 1.0, signs)[:, None]
    proj = Yc @ comps.T
    s = model.bottleneck.scale
    first = proj[:, 0].abs()
    candidates = []
    if float(proj[:, 0].std()) > 0:
        candidates.append(0.75 * s / float(proj[:, 0].std()))
        candidates.append(2.0 * s / float(torch.quantile(first, 1 - 1e-5)))
    alpha = min(
        candidates, key=lambda a: _quantisation_mse(model, proj, a), default=1.0
    )
    enc, dec = model.encoder, model.decoder.linear
    enc.weight.copy_(comps.reshape(enc.weight.shape).float())
    enc.bias.copy_((-comps @ center).float())
    dec.weight.copy_(comps.T.reshape(dec.weight.shape).float())
    dec.bias.copy_(center.float())
    model.latent_scale.fill_(alpha)


def _keep_lowpass_colours(comps, cov, n_bands, captured=0.5):
    """Principal axes ``comps`` ``(d, C * n_bands)`` that span the local mean
    colour of ``C >= 2`` channels where ``d >= C``.

    The lowpass band of each channel holds a photo's local mean colour. When
    the fitting photos barely vary along one of its colour axes, plain PCA
    ranks that axis below ``d`` and the model cannot reproduce such colours
    at all (held-out photos with strong greens at ``latent_dim`` 3 and 4 fell
    to 12-15 dB). So where the principal subspace keeps less than
    ``captured`` of a lowpass colour axis, the axes become the C lowpass
    colour axes plus the top ``d - C`` principal axes orthogonal to them,
    ordered by variance; otherwise ``comps`` is returned unchanged.
    """
    d, width = comps.shape
    channels = width // n_bands
    if channels < 2 or d < channels:
        return comps
    idx = torch.arange(channels) * n_bands  # the lowpass coefficient of each
    _, v = torch.linalg.eigh(cov[idx][:, idx])
    lowpass = torch.zeros((width, channels), dtype=cov.dtype)
    lowpass[idx] = v
    if float(((comps @ lowpass) ** 2).sum(0).min()) >= captured:
        return comps
    other = torch.eye(width, dtype=cov.dtype) - lowpass @ lowpass.T
    evals, evecs = torch.linalg.eigh(other @ cov @ other)
    rest = evecs[:, torch.argsort(evals, descending=True)[: d - channels]]
    basis = torch.cat([lowpass, rest], dim=1)
    variance = ((basis.T @ cov) * basis.T).sum(1)
    return basis[:, torch.argsort(variance, descending=True)].T


def _validation_set(arrays, max_side, device):
    """Crop validation signals to a bounded size so validating stays cheap."""
    out, budget = [], _MAX_VAL_SCALARS
    for a in arrays:
        a = a[(slice(None), slice(None), *[slice(0, max_side)] * (a.ndim - 2))]
        n = max(1, min(len(a), budget // max(1, a[0].size)))
        out.append(torch.from_numpy(np.ascontiguousarray(a[:n])).to(device))
        budget -= n * a[0].size
        if budget <= 0:
            break
    return out


def optimise(
    model,
    train_arrays,
    val_arrays,
    *,
    max_iter,
    batch_size,
    crop_size,
    learning_rate,
    n_iter_no_change,
    tol,
    device,
    seed,
    verbose=0,
    data_range=1.0,
    rate_weight=0.0,
    domain="wavelet",
    weight_decay=0.0,
    flips=False,
    warmup=0,
    round_from=1.0,
    validation_interval=VALIDATION_INTERVAL,
    validation_side=None,
    least_squares_start=False,
    train_encoder=True,
    callbacks=(),
    parallel=None,
):
    """Train ``model`` in place; return the history as a dict.

    The objective is the MSE divided by the data variance, plus ``rate_weight``
    times the estimated bits per input value (:class:`LaplaceRate`).
    ``domain="wavelet"`` computes the packet coefficients of the training and
    validation signals once and trains encoder, bottleneck and decoder on
    them with the band-weighted coefficient MSE; ``"pixel"`` runs the whole
    round trip on signal crops at every step. ``val_arrays`` (a list,
    possibly empty) selects the state kept at the end: the one with the best
    rounded round trip on them, the start included. With no validation data
    the last state is kept and training stops when the mean training loss
    over ``validation_interval`` steps stops improving. Scores are
    ``-10 log10(objective)`` shifted to dB of ``data_range``: the PSNR when
    ``rate_weight`` is 0.

    ``weight_decay`` (AdamW), ``flips`` (train on mirrored copies too),
    ``warmup`` (linear warm-up steps before the cosine decay), ``round_from``
    (fraction of ``max_iter`` after which rounding with a straight-through
    gradient replaces the noise proxy) and ``callbacks`` (``f(trainer,
    record)`` after each validation) tune the layers of ``_trainer``.
    ``train_encoder=False`` freezes the encoder (and so the latents): only
    the decoder (and a rate model) learns.
    ``parallel`` (``_distributed.DataParallel``) makes this one replica of a
    DDP job; its round trip is the pixel-domain one, so it trains in the
    pixel domain.

    Returns
    -------
    history : dict
        ``n_iter`` (steps run), ``best_iter`` (step of the kept state, 0 for
        the start), ``loss_curve`` (per step, squared data units),
        ``validation_scores`` (dB, the start first), ``validation_steps``,
        ``validation_seconds``, ``start_validation_score`` and
        ``best_validation_score`` (with validation data), ``seconds``.
    """
    history = {
        "loss_curve": [],
        "validation_scores": [],
        "validation_steps": [],
        "validation_seconds": [],
        "n_iter": 0,
        "best_iter": 0,
        "seconds": 0.0,
    }
    if max_iter <= 0:
        return history
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}; got {domain!r}.")
    if parallel:
        # DDP averages gradients over one module's forward: the pixel-domain
        # round trip of ``_distributed``; a wavelet-domain DDP run would wrap
        # Objective's coefficient path instead.
        domain = "pixel"
        seed = parallel.seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    model.to(device).train().requires_grad_(True)
    model.encoder.requires_grad_(train_encoder)
    crops_cls = (
        _trainer.CoefficientCrops if domain == "wavelet" else _trainer.PixelCrops
    )
    data = crops_cls(model, train_arrays, crop_size, device, cpu_gen, flips=flips)
    if validation_side is None:
        validation_side = 256 if model.signal_ndim == 2 else 2**16
    val = _validation_set(val_arrays, validation_side, device)
    if domain == "wavelet" and val:
        with torch.no_grad():
            val = [model.analysis(v) for v in val]
    params = [p for p in model.parameters() if p.requires_grad]
    rate = _trainer.make_rate(model, data, batch_size, rate_weight)
    if rate is not None:
        params += list(rate.parameters())
    objective = _trainer.Objective(model, domain, rate, rate_weight)
    step = _trainer.TrainingStep(
        objective,
        params,
        max_iter=max_iter,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup=warmup,
        round_from=round_from,
        noise_generator=noise_gen,
    )
    # Report scores in dB of the caller's data range.
    db_shift = 20 * math.log10(data_range / float(model.data_scale))
    validation = _trainer.Validation(
        objective, val, db_shift, parallel.mean if parallel else None
    )
    stopping = _trainer.EarlyStopping(model, n_iter_no_change, tol)
    log = _trainer.History(max_iter, float(model.data_scale) ** 2, verbose, callbacks)
    start_label = None
    if least_squares_start and model.decoder.refine is not None:
        if validation:
            score = validation()
            stopping.update(0, score)
            log.validation(None, 0, score)
        grids = data.tensors
        if domain == "pixel":
            with torch.no_grad():
                grids = [model.analysis(torch.from_numpy(a)) for a in train_arrays]
        channels = model.encoder.in_channels // model.wpt.n_bands
        weights = _trainer.band_weights(model.wpt, channels, device)
        _trainer.least_squares_decoder(model, grids, weights, generator=cpu_gen)
        start_label = "least-squares decoder start"
    if parallel:
        # After the least-squares start: DDP broadcasts rank 0's state.
        objective.round_trip = parallel.wrap(model, rate)
        step.reduce = parallel.mean
    n = _trainer.train(
        model,
        data,
        validation,
        step,
        stopping,
        log,
        max_iter=max_iter,
        batch_size=batch_size,
        validation_interval=validation_interval,
        start_label=start_label,
    )
    model.eval()
    history["n_iter"] = n
    history["loss_curve"] = log.loss_curve
    history["seconds"] = time.perf_counter() - log.start
    if validation:
        history["validation_scores"] = [r["score"] for r in log.records]
        history["validation_steps"] = [r["step"] for r in log.records]
        history["validation_seconds"] = [r["seconds"] for r in log.records]
        history["start_validation_score"] = log.records[0]["score"]
        history["best_validation_score"] = stopping.best
        history["best_iter"] = stopping.best_step
    else:
        history["best_iter"] = n
    return history


def validation_split(arrays, validate, fraction, rng):
    """Hold out whole signals for validation; with one signal, validate on it."""
    if not validate:
        return arrays, []
    sizes = [len(a) for a in arrays]
    total = sum(sizes)
    if total < 2:
        return arrays, arrays
    # Two held-out signals at least, where there are enough: one photo is a
    # noisy judge of what a model does to others.
    least = 2 if total >= 4 else 1
    n_val = min(total - 1, max(least, round(fraction * total)))
    is_val = np.zeros(total, dtype=bool)
    is_val[rng.permutation(total)[:n_val]] = True
    train, val, start = [], [], 0
    for a, n in zip(arrays, sizes):
        mask = is_val[start : start + n]
        start += n
        if (~mask).any():
            train.append(a[~mask])
        if mask.any():
            val.append(a[mask])
    return train, val
