"""Fitting WaLLoC: the closed-form start and the optimisation loop.

The closed-form start is a PCA of the wavelet packet coefficient vectors: the
encoder rows are the principal axes, the linear decoder path their transpose, and
a latent scale puts the projections in the companding range. Training then
minimises the pixel MSE of the noisy round trip on random crops with Adam,
validating the rounded round trip on held-out signals and keeping the best state.
"""

import copy
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ._bottleneck import LaplaceRate

__all__ = ["closed_form_start", "optimise", "pca_start"]

# Optimiser steps between validations; n_iter_no_change counts validations.
VALIDATION_INTERVAL = 10
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


def _psnr_db(mse):
    """PSNR-like score of a normalised MSE; only differences are used."""
    return -10.0 * math.log10(max(mse, 1e-30))


class _Crops:
    """Random equal-sized crops from groups of signals of different sizes."""

    def __init__(self, arrays, crop_size, stride, device, generator):
        self.arrays = [torch.from_numpy(a).to(device) for a in arrays]
        ndim = arrays[0].ndim - 2
        smallest = np.min([a.shape[2:] for a in arrays], axis=0)
        side = np.minimum(crop_size, smallest) // stride * stride
        self.size = tuple(int(s) for s in np.maximum(side, stride)[:ndim])
        weights = torch.tensor([float(a[:, :1].numel()) for a in self.arrays])
        self.weights = weights / weights.sum()
        self.generator = generator

    def sample(self, batch_size):
        g = self.generator
        groups = torch.multinomial(self.weights, batch_size, True, generator=g)
        crops = []
        for gi in groups.tolist():
            a = self.arrays[gi]
            i = int(torch.randint(len(a), (1,), generator=g))
            window = [slice(None)]
            for axis, size in enumerate(self.size):
                hi = a.shape[2 + axis] - size
                lo = int(torch.randint(hi + 1, (1,), generator=g)) if hi > 0 else 0
                window.append(slice(lo, lo + size))
            crops.append(a[i][tuple(window)])
        return torch.stack(crops)


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
    parallel=None,
):
    """Train ``model`` in place; return the history as a dict.

    The objective is the MSE divided by the data variance, plus ``rate_weight``
    times the estimated bits per input value (:class:`LaplaceRate`).
    ``val_arrays`` (a list, possibly empty) selects the state kept at the end:
    the one with the best rounded round trip on them, the start included. With
    no validation data the last state is kept and training stops when the mean
    training loss over ``VALIDATION_INTERVAL`` steps stops improving. Scores are
    ``-10 log10(objective)`` shifted to dB of ``data_range``: the PSNR when
    ``rate_weight`` is 0. ``parallel`` (``_distributed.DataParallel``) makes
    this one replica of a DDP job.
    """
    history = {"loss_curve": [], "validation_scores": [], "n_iter": 0}
    if max_iter <= 0:
        return history
    seed = parallel.seed(seed) if parallel else seed
    cpu_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    model.to(device).train().requires_grad_(True)
    crops = _Crops(train_arrays, crop_size, model.stride, device, cpu_gen)
    val = _validation_set(val_arrays, 256 if model.signal_ndim == 2 else 2**16, device)
    params = list(model.parameters())
    rate = None
    if rate_weight > 0:
        rate = LaplaceRate(model.encoder.out_channels, model.signal_ndim).to(device)
        rate.initialise(model.encode(crops.sample(batch_size), "symbols"))
        params += list(rate.parameters())
    round_trip = parallel.wrap(model, rate) if parallel else None
    optimiser = torch.optim.Adam(params, lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / max_iter))
    )
    scale2 = float(model.data_scale) ** 2
    # Report scores in dB of the caller's data range.
    db_shift = 20 * math.log10(data_range / float(model.data_scale))

    def objective(x, q, y):
        loss = (((y - x) / model.data_scale) ** 2).mean()
        if rate is not None:
            loss = loss + rate_weight * rate.bits(q) / x.numel()
        return loss

    def validate():
        with torch.no_grad():
            total = sum(
                float(objective(v, q, model.decode(q))) * len(v)
                for v in val
                for q in [model.encode(v, "symbols")]
            )
        score = _psnr_db(total / sum(len(v) for v in val)) + db_shift
        return parallel.mean(score) if parallel else score

    best_state, best, stale = None, -math.inf, 0
    if val:
        best = validate()
        best_state = copy.deepcopy(model.state_dict())
        history["validation_scores"].append(best)
    window = []
    bar = tqdm(total=max_iter, disable=verbose <= 0, desc="WaLLoC fit", leave=False)
    for step in range(1, max_iter + 1):
        x = crops.sample(batch_size)
        optimiser.zero_grad(set_to_none=True)
        if round_trip is None:
            q = model.encode(x, "noise", noise_gen)
            loss = objective(x, q, model.decode(q))
        else:
            loss = objective(x, *round_trip(x, noise_gen))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        value = float(loss.detach())
        value = parallel.mean(value) if parallel else value
        history["loss_curve"].append(value * scale2)
        history["n_iter"] = step
        window.append(value)
        bar.update(1)
        if step % VALIDATION_INTERVAL and step != max_iter:
            continue
        if val:
            score = validate()
            history["validation_scores"].append(score)
        else:
            score = _psnr_db(float(np.mean(window)))
        window = []
        bar.set_postfix(loss=f"{value * scale2:.4g}", score=f"{score:.3f} dB")
        if verbose > 1:
            bar.write(f"step {step}: loss {value * scale2:.5g}, score {score:.3f} dB")
        stale = 0 if score > best + tol else stale + 1
        if score > best:
            best = score
            if val:
                best_state = copy.deepcopy(model.state_dict())
        if stale >= n_iter_no_change:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
        history["best_validation_score"] = best
    model.eval()
    return history
