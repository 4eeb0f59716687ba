"""CUDA paths: skipped cleanly without a GPU (see conftest.py); run on one by
``python benchmarks/gpu_check.py``, which also times them."""

import numpy as np
import pytest
import torch

from sklearn_walloc import _tiles
from sklearn_walloc._wavelets import WaveletPacket, separable_encoder
from sklearn_walloc.codec import WallocCodec

pytestmark = pytest.mark.cuda
TINY = dict(decoder_width=8, decoder_depth=1, random_state=0)


def test_cuda_blobs_decode_on_the_cpu(small_photos):
    codec = WallocCodec(latent_dim=6, levels=2, max_iter=3, device="cuda", **TINY)
    codec.fit(small_photos)
    blobs = codec.compress(small_photos)
    on_gpu = codec.decompress(blobs, restore=False)
    on_cpu = codec.set_params(device="cpu").decompress(blobs, restore=False)
    # Entropy decoding is integer-only: the same latents; the decoder's floats
    # differ by rounding only.
    for a, b in zip(on_gpu, on_cpu):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-3 * np.abs(b).max())


@pytest.mark.parametrize("shape", [(2, 3, 40, 296), (2, 3, 8, 8)])
def test_cuda_symmetric_encoder_is_exact_at_the_borders(shape):
    wpt = WaveletPacket(3, "bior4.4", 2).double().cuda()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64).cuda()
    weight = torch.randn(5, 3 * 64, generator=g, dtype=torch.float64)
    encoder = separable_encoder(wpt, weight, torch.zeros(5)).to("cuda")
    two_step = torch.einsum("ok,nk...->no...", weight.cuda(), wpt(x))
    torch.testing.assert_close(encoder(x), two_step, rtol=1e-10, atol=1e-10)


def test_cuda_tiles_equal_the_whole_decode(small_photos, monkeypatch):
    codec = WallocCodec(latent_dim=6, levels=2, max_iter=0, device="cuda", **TINY)
    codec.fit(small_photos)
    Z = codec.transform(small_photos)
    whole = codec.inverse_transform(Z)
    monkeypatch.setattr(_tiles, "TILE_VALUES", 3 * 16 * 16)
    codec._runtime = {}
    tiled = codec.inverse_transform(Z)
    for a, b in zip(tiled, whole):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


def test_cuda_edge_encoder_matches_the_cpu():
    # The end-of-axis least squares run on the device (grids of >= 16 positions).
    rng = np.random.default_rng(0)
    X = np.cumsum(np.cumsum(rng.normal(size=(3, 72, 80, 3)), 1), 2)
    X = ((X - X.min()) / np.ptp(X) * 255).round().astype(np.uint8)
    codec = WallocCodec(latent_dim=6, levels=2, max_iter=0, random_state=0).fit(X)
    on_cpu = codec.transform(X)
    on_gpu = codec.set_params(device="cuda").transform(X)
    assert np.abs(on_gpu - on_cpu).max() <= 1  # rounding ties may differ by one
    assert np.mean(on_gpu != on_cpu) < 1e-3
