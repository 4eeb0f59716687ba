"""Edge-optimised encoding: least-squares latents at the end of each axis."""

import numpy as np
import pytest
import torch

from sklearn_walloc import WallocCodec, WallocTransformer
from sklearn_walloc._edges import _PROBE, EdgeEncoder, _AxisSolver


def _smooth(rng, shape, channels):
    """A smooth random field with a slope: the case the end of an axis loses."""
    x = rng.normal(size=(*shape, channels))
    for axis in range(len(shape)):
        x = np.cumsum(x, axis=axis)
    x -= x.min()
    return (x / x.max()).astype(np.float32)


def _fit(X, signal_ndim=2, **kw):
    params = dict(latent_dim=3, levels=2, max_iter=0, random_state=0)
    params.update(kw)
    return WallocTransformer(signal_ndim=signal_ndim, **params).fit(X)


def test_1d_end_latents_are_the_least_squares_fit(rng):
    # In 1D the objective is the sample-domain error itself: compare with a
    # dense least-squares solve over the decoder's linear path.
    X = np.stack([_smooth(rng, (256,), 2) for _ in range(4)])
    w = _fit(X, signal_ndim=1)
    module = w.module_.double()
    x = torch.from_numpy(X[:1].transpose(0, 2, 1)).double()
    z0 = module.fused_encoder(torch.float64)(x)
    z = EdgeEncoder(module, module.fused_encoder(torch.float64))(x)
    assert z.shape == z0.shape
    assert torch.equal(z[..., :-1], z0[..., :-1])  # only the last position moves
    decode = module.fused_decoder(torch.float64)
    base = decode(torch.cat([z0[..., :-1], torch.zeros_like(z0[..., -1:])], -1))
    cols = []
    for k in range(z0.shape[1]):
        e = torch.zeros_like(z0)
        e[0, k, -1] = 1
        cols.append((decode(e) - decode(torch.zeros_like(z0))).flatten())
    B = torch.stack(cols, 1)
    best = torch.linalg.lstsq(B, (x - base).flatten()[:, None]).solution.flatten()
    np.testing.assert_allclose(z[0, :, -1], best, rtol=1e-7, atol=1e-9)
    # ... and it is better than the encoder's projection there.
    err = lambda t: float(((decode(t) - x)[..., -16:] ** 2).sum())  # noqa: E731
    assert err(z) < err(z0)


def test_2d_end_latents_are_stationary_for_the_objective(rng):
    # In 2D the end is fitted after analysis along the other axis; there the
    # gradient of the fit error with respect to the re-chosen latents vanishes.
    X = np.stack([_smooth(rng, (_PROBE * 4, _PROBE * 4 + 8), 3) for _ in range(3)])
    w = _fit(X, latent_dim=6)
    module = w.module_.double()
    x = torch.from_numpy(X[:1].transpose(0, 3, 1, 2)).double()
    edge = EdgeEncoder(module, module.fused_encoder(torch.float64))
    z = edge(x)
    decode = module.fused_decoder(torch.float64)
    for axis in (0, 1):
        solver = _AxisSolver(module, axis, 1)
        zz = z.clone().requires_grad_(True)
        r = solver._analyse(decode(zz) - x, axis)[:, :, -solver.n_samples :]
        (grad,) = torch.autograd.grad((r**2).sum(), zz)
        end = grad.narrow(2 + axis, z.shape[2 + axis] - 1, 1)
        if axis == 0:  # the corner was re-chosen by the column pass
            end = end[..., :-1]
        scale = float(grad.abs().max())
        assert float(end.abs().max()) < 1e-8 * scale


def test_edges_improve_the_last_row_and_column(rng):
    X = np.stack([_smooth(rng, (_PROBE * 4, _PROBE * 4), 3) for _ in range(6)])
    X = (X * 255).round().astype(np.uint8)
    w = _fit(X, latent_dim=3)
    module = w.module_
    x = torch.from_numpy(X[4:].transpose(0, 3, 1, 2)).float()
    fused = module.fused_encoder()
    decode = module.fused_decoder()
    plain = decode(module.bottleneck.expand(module.encode_fused(x, fused)))
    edged = decode(
        module.bottleneck.expand(module.encode_fused(x, w._runtime_model()[1]))
    )

    def mse(y, index):
        return float(((y - x)[index] ** 2).mean())

    for index in [(..., -1, slice(None)), (..., slice(None), -1)]:
        assert mse(edged, index) < 0.9 * mse(plain, index)
    # The interior keeps the encoder's latents.
    inner = (..., slice(16, -40), slice(16, -40))
    assert mse(edged, inner) == pytest.approx(mse(plain, inner), rel=1e-6)


def test_short_axes_and_periodic_models_keep_the_plain_encoder(rng):
    X = np.stack([_smooth(rng, (32, 40), 3) for _ in range(3)])
    w = _fit(X)
    module = w.module_
    x = torch.from_numpy(X.transpose(0, 3, 1, 2))
    assert torch.equal(module.inference_encoder()(x), module.fused_encoder()(x))
    assert isinstance(module.inference_encoder(), EdgeEncoder)
    module.wpt.boundary = "periodization"
    try:
        assert not isinstance(module.inference_encoder(), EdgeEncoder)
    finally:
        module.wpt.boundary = "symmetric"


def test_edge_encoding_is_batch_invariant(rng):
    X = (
        np.stack([_smooth(rng, (_PROBE * 4, _PROBE * 4 + 8), 3) for _ in range(4)])
        * 255
    )
    X = X.round().astype(np.uint8)
    codec = WallocCodec(latent_dim=3, levels=2, max_iter=0, random_state=0).fit(X)
    together = codec.compress(X)
    alone = [codec.compress(X[i : i + 1])[0] for i in range(len(X))]
    assert together == alone
    np.testing.assert_array_equal(
        codec.decompress(together, restore=False),
        codec.decompress(alone, restore=False),
    )
