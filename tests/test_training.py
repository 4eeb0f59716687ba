"""The layered trainer: data, objective, step, validation, history."""

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from sklearn_walloc import WallocTransformer
from sklearn_walloc._networks import WallocAutoencoder
from sklearn_walloc._signal import pad_to_multiple
from sklearn_walloc._trainer import (
    CoefficientCrops,
    EarlyStopping,
    History,
    Objective,
    PixelCrops,
    TrainingStep,
    band_weights,
    least_squares_decoder,
)
from sklearn_walloc._training import closed_form_start, optimise
from sklearn_walloc._wavelets import WaveletPacket

TINY = dict(decoder_width=8, decoder_depth=1, device="cpu", random_state=0)


def _arrays(photos):
    return [
        pad_to_multiple(np.moveaxis(p, -1, 0)[None].astype(np.float32), 4)
        for p in photos
    ]


def _model(arrays, latent_dim=12, levels=2, width=8, depth=1):
    m = WallocAutoencoder(3, latent_dim, levels, "bior4.4", 2, 8, width, depth)
    m.reset_parameters(torch.Generator().manual_seed(0))
    closed_form_start(m, arrays, np.random.RandomState(0))
    return m


def test_band_weights_are_one_for_an_orthogonal_transform_only():
    haar = band_weights(WaveletPacket(2, "haar", 2), channels=3)
    assert haar.shape == (48,)
    assert torch.allclose(haar, torch.ones(48), atol=1e-6)
    bior = band_weights(WaveletPacket(2, "bior4.4", 2), channels=1)
    assert not torch.allclose(bior, torch.ones(16), atol=1e-2)
    # Near-orthogonal: every band's atom energy within 40% of one.
    assert float((bior - 1).abs().max()) < 0.4


def test_weighted_coefficient_mse_tracks_pixel_mse(small_photos):
    arrays = _arrays(small_photos)
    m = _model(arrays)
    x = torch.from_numpy(np.concatenate([a[:, :, :64, :64] for a in arrays]))
    with torch.no_grad():
        pixel = float(Objective(m, "pixel")(x, "symbols"))
        coef = float(Objective(m, "wavelet")(m.analysis(x), "symbols"))
    noisy = Objective(m, "wavelet")(m.analysis(x), "noise")
    # Not equal (the transform is not orthogonal), but within 0.5 dB.
    assert coef != pixel
    assert abs(10 * math.log10(pixel / coef)) < 0.5
    assert noisy.requires_grad


def test_coefficient_crops_are_windows_of_the_whole_signal_coefficients(
    small_photos,
):
    arrays = _arrays(small_photos[:2])
    m = _model(arrays)
    g = torch.Generator().manual_seed(0)
    crops = CoefficientCrops(m, arrays, 32, "cpu", g)
    batch = crops.sample(5)
    assert batch.shape == (5, 48, 8, 8)
    with torch.no_grad():
        whole = [m.analysis(torch.from_numpy(a))[0] for a in arrays]
    # Each crop is a window of one signal's coefficient grid.
    for b in batch:
        found = any(
            torch.equal(w[:, i : i + 8, j : j + 8], b)
            for w in whole
            for i in range(w.shape[1] - 7)
            for j in range(w.shape[2] - 7)
        )
        assert found
    flipped = CoefficientCrops(m, arrays, 32, "cpu", g, flips=True)
    assert len(flipped.tensors) == 4 * len(arrays)
    assert PixelCrops(m, arrays, 30, "cpu", g).sample(3).shape == (3, 3, 28, 28)


def test_straight_through_rounding_rounds_forward_and_passes_gradients(
    small_photos,
):
    arrays = _arrays(small_photos[:1])
    m = _model(arrays)
    obj = Objective(m, "wavelet")
    y = m.analysis(torch.from_numpy(arrays[0][:, :, :32, :32]))
    q = obj.latents(y, "round")
    assert torch.equal(q, torch.round(q))
    obj(y, "round").backward()
    assert m.encoder.weight.grad is not None
    assert float(m.encoder.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="mode"):
        obj.latents(y, "bogus")


def test_training_step_warms_up_then_decays():
    p = torch.nn.Parameter(torch.ones(3))

    def objective(batch, mode, generator):
        return (p * batch).pow(2).sum()

    step = TrainingStep(objective, [p], max_iter=10, learning_rate=1.0, warmup=4)
    lrs = []
    for n in range(1, 11):
        lrs.append(step.optimiser.param_groups[0]["lr"])
        step(n, torch.ones(3))
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] < 0.1
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))


def test_early_stopping_keeps_the_best_state_and_counts_patience():
    model = torch.nn.Linear(2, 1)
    stop = EarlyStopping(model, patience=2, tol=0.1)
    assert not stop.update(0, 1.0)
    best = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not stop.update(10, 1.05)  # better, but by less than tol: stale 1
    assert stop.best_step == 10
    best = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    assert stop.update(20, 0.5)  # stale 2: stop
    stop.restore()
    assert torch.equal(model.weight, best["weight"])


def test_history_reports_the_start_and_runs_callbacks(capsys):
    seen = []
    h = History(5, loss_scale=2.0, verbose=1, callbacks=[lambda t, r: seen.append(r)])
    h.validation(None, 0, 30.0)
    h.step(0.5)
    h.validation(None, 1, 30.5)
    h.close()
    assert h.loss_curve == [1.0]
    assert [r["step"] for r in seen] == [0, 1]
    assert "start (closed form): validation 30.000 dB" in capsys.readouterr().err


@pytest.mark.parametrize("domain", ["wavelet", "pixel"])
def test_optimise_never_ends_worse_than_its_start(small_photos, domain):
    arrays = _arrays(small_photos)
    m = _model(arrays)
    h = optimise(
        m,
        arrays[:3],
        arrays[3:],
        max_iter=20,
        batch_size=4,
        crop_size=32,
        learning_rate=3e-3,
        n_iter_no_change=100,
        tol=0.0,
        device=torch.device("cpu"),
        seed=0,
        data_range=255.0,
        domain=domain,
        flips=True,
        round_from=0.5,
    )
    assert h["n_iter"] == 20 and len(h["loss_curve"]) == 20
    assert h["validation_steps"] == [0, 10, 20]
    assert h["best_validation_score"] == max(h["validation_scores"])
    assert h["start_validation_score"] == h["validation_scores"][0]
    kept = h["validation_steps"][
        h["validation_scores"].index(max(h["validation_scores"]))
    ]
    assert h["best_iter"] == kept
    # The kept state is the one validated best: re-validating it agrees.
    with torch.no_grad():
        v = torch.from_numpy(arrays[3][:, :, :256, :256])
        obj = Objective(m, domain)
        batch = m.analysis(v) if domain == "wavelet" else v
        mse = float(obj(batch, "symbols"))
    shift = 20 * math.log10(255.0 / float(m.data_scale))
    assert -10 * math.log10(mse) + shift == pytest.approx(
        h["best_validation_score"], abs=1e-4
    )


def test_optimise_rejects_an_unknown_domain(small_photos):
    arrays = _arrays(small_photos[:2])
    with pytest.raises(ValueError, match="domain"):
        optimise(
            _model(arrays),
            arrays,
            [],
            max_iter=1,
            batch_size=1,
            crop_size=32,
            learning_rate=1e-3,
            n_iter_no_change=1,
            tol=0.0,
            device=torch.device("cpu"),
            seed=0,
            domain="fourier",
        )


def test_fit_reports_steps_run_kept_and_gain(small_photos, tmp_path):
    X = np.stack(small_photos)
    w = WallocTransformer(
        latent_dim=12, levels=2, max_iter=20, batch_size=4, crop_size=32, **TINY
    ).fit(X)
    assert w.n_iter_ == 20
    assert w.n_iter_kept_ in range(0, 21, 10)
    kept = w.validation_scores_[w.n_iter_kept_ // 10]
    assert kept == w.best_validation_score_
    assert w.validation_gain_ == pytest.approx(
        w.best_validation_score_ - w.validation_scores_[0]
    )
    assert w.validation_gain_ >= 0
    w.save(tmp_path / "m.npz")
    back = WallocTransformer.load(tmp_path / "m.npz")
    assert back.n_iter_kept_ == w.n_iter_kept_
    assert back.validation_gain_ == w.validation_gain_
    closed = WallocTransformer(latent_dim=12, levels=2, max_iter=0, **TINY).fit(X)
    assert closed.n_iter_ == 0 and closed.n_iter_kept_ == 0
    assert closed.validation_gain_ is None


def test_least_squares_start_is_a_linear_map_that_lowers_the_training_error(
    small_photos,
):
    arrays = _arrays(small_photos)
    m = _model(arrays, width=16, depth=2)
    with torch.no_grad():
        grids = [m.analysis(torch.from_numpy(a)) for a in arrays]
    obj = Objective(m, "wavelet")
    with torch.no_grad():
        before = sum(float(obj(g, "symbols")) for g in grids)
    removed = least_squares_decoder(m, grids, band_weights(m.wpt, 3))
    with torch.no_grad():
        after = sum(float(obj(g, "symbols")) for g in grids)
        # The refinement computes a linear map of the latents (GELU kept in
        # its linear regime, residual blocks identities).
        z1 = torch.randn(2, 12, 6, 6) * 0.5
        z2 = torch.randn(2, 12, 6, 6) * 0.5
        r = m.decoder.refine
        lhs = r(0.3 * z1 + 0.7 * z2)
        rhs = 0.3 * r(z1) + 0.7 * r(z2)
    assert 0 < removed < 1
    assert after < before
    assert torch.allclose(lhs, rhs, atol=1e-4 * float(rhs.abs().max()) + 1e-5)


@pytest.mark.parametrize("cap", [None, 50])
def test_least_squares_samples_are_the_draw_from_all_rows(
    small_photos, monkeypatch, cap
):
    # The rows are gathered one grid at a time (memory), yet they must be the
    # rows that concatenating every grid's rows and drawing gave, in order.
    from sklearn_walloc import _trainer

    arrays = _arrays(small_photos)
    m = _model(arrays, width=16, depth=2)
    with torch.no_grad():
        grids = [m.analysis(torch.from_numpy(a)) for a in arrays]
        grids = [grids[0], grids[1][:, :, :5], grids[0][:, :, 1:, 2:]]
        rows = [_trainer._lsq_features(m, y) for y in grids]
    F = torch.cat([f for f, _ in rows]).double()
    R = torch.cat([r for _, r in rows]).double()
    if cap is not None:
        monkeypatch.setattr(_trainer, "_LSQ_MAX_POSITIONS", cap)
        keep = torch.randperm(len(F), generator=torch.Generator().manual_seed(3))
        F, R = F[keep[:cap]], R[keep[:cap]]
    with torch.no_grad():
        got = _trainer._lsq_samples(m, grids, torch.Generator().manual_seed(3))
    assert len(F) == (cap or sum(len(f) for f, _ in rows))
    assert torch.equal(got[0], F) and torch.equal(got[1], R)


def test_only_a_fresh_fit_gets_the_least_squares_start(small_photos, monkeypatch):
    from sklearn_walloc import _trainer

    calls = []
    real = _trainer.least_squares_decoder

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_trainer, "least_squares_decoder", spy)
    X = np.stack(small_photos)
    kw = dict(latent_dim=12, levels=2, batch_size=2, crop_size=32, **TINY)
    w = WallocTransformer(max_iter=3, warm_start=True, **kw).fit(X)
    assert calls == [1]
    refine = copy.deepcopy(w.module_.decoder.refine.state_dict())
    w.fit(X)  # warm start: continues, no new least-squares start
    w.partial_fit(X)
    assert calls == [1]
    changed = any(
        not torch.equal(v, w.module_.decoder.refine.state_dict()[k])
        for k, v in refine.items()
    )
    assert changed


def test_train_encoder_false_trains_the_decoder_alone(small_photos):
    X = np.stack(small_photos)
    kw = dict(latent_dim=12, levels=2, batch_size=4, crop_size=32, **TINY)
    closed = WallocTransformer(max_iter=0, **kw).fit(X)
    frozen = WallocTransformer(
        max_iter=10, train_encoder=False, early_stopping=False, **kw
    ).fit(X)
    joint = WallocTransformer(max_iter=10, early_stopping=False, **kw).fit(X)
    # The encoder is the closed form's: the same latents, but for the last
    # row and column, which the encoder chooses for the decoder ...
    assert frozen.n_iter_ == 10
    inner = (slice(None), slice(0, -1), slice(0, -1))
    assert np.array_equal(frozen.transform(X)[inner], closed.transform(X)[inner])
    assert not np.array_equal(joint.transform(X)[inner], closed.transform(X)[inner])
    # ... while the decoder learned.
    Z = closed.transform(X)
    assert not np.allclose(frozen.inverse_transform(Z), closed.inverse_transform(Z))
    assert frozen.get_params()["train_encoder"] is False


def test_pickles_made_before_a_parameter_existed_get_its_default(small_photos):
    import pickle

    from sklearn_walloc import WallocCodec

    codec = WallocCodec(latent_dim=12, levels=2, max_iter=0, **TINY)
    codec.fit(np.stack(small_photos))
    state = codec.__getstate__()
    for name in ("train_encoder", "adaptive_gain"):
        state.pop(name)
    old = WallocCodec.__new__(WallocCodec)
    old.__setstate__(state)
    assert old.get_params()["train_encoder"] is True
    assert old.get_params()["adaptive_gain"] is True
    back = pickle.loads(pickle.dumps(old))
    assert back.compress(small_photos[:1]) == codec.compress(small_photos[:1])


def test_closed_form_keeps_the_lowpass_colour_axes(small_photos, monkeypatch):
    # Fitted on near-grey photos, plain PCA ranks the local mean colour's
    # chroma axes below latent_dim=3: a saturated colour came back grey. The
    # closed form keeps every lowpass colour axis where d >= channels.
    from sklearn_walloc import WallocCodec, _training

    rng = np.random.default_rng(0)
    grey = [
        np.repeat(p.mean(axis=2, keepdims=True), 3, axis=2) + rng.normal(0, 2, p.shape)
        for p in small_photos
    ]
    grey = [np.clip(g, 0, 255).astype(np.uint8) for g in grey]
    green = np.zeros((32, 48, 3), np.uint8)
    green[..., 1], green[..., 2] = 200, 40

    def error(**kw):
        codec = WallocCodec(latent_dim=3, levels=2, max_iter=0, random_state=0, **kw)
        (y,) = codec.fit(grey).decompress(codec.compress([green]))
        return np.abs(y[4:-4, 4:-4].astype(float) - green[4:-4, 4:-4]).max()

    assert error() <= 6
    monkeypatch.setattr(_training, "_keep_lowpass_colours", lambda c, *a, **k: c)
    assert error() > 40  # what plain PCA gave


def test_lowpass_colours_leave_colour_photos_models_alone(small_photos, monkeypatch):
    # Fitted on colour photos with latent_dim >= 5, the principal axes already
    # span the mean colour: the closed form is plain PCA, as before.
    from sklearn_walloc import _training

    def latents():
        model = WallocTransformer(latent_dim=6, levels=2, max_iter=0, random_state=0)
        return model.fit(small_photos).transform(small_photos)

    kept = latents()
    monkeypatch.setattr(_training, "_keep_lowpass_colours", lambda c, *a, **k: c)
    assert all(np.array_equal(a, b) for a, b in zip(kept, latents()))
