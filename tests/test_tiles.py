"""Tiled decoding: equal to decoding whole, bounded in memory, batch-invariant."""

import numpy as np
import pytest
import torch

from sklearn_walloc import _tiles
from sklearn_walloc._networks import WallocAutoencoder
from sklearn_walloc._signal import run_in_chunks
from sklearn_walloc.codec import WallocCodec

CPU = torch.device("cpu")


def _random_model(channels, levels, ndim, width, depth, seed=0):
    module = WallocAutoencoder(channels, 5, levels, "bior4.4", ndim, 8, width, depth)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module.eval()


@pytest.mark.parametrize(
    "ndim,channels,grid,levels,width,depth",
    [
        (2, 3, (21, 34), 3, 16, 2),
        (2, 1, (1, 300), 3, 0, 0),
        (2, 2, (17, 9), 2, 8, 1),
        (1, 2, (900,), 5, 16, 2),
    ],
)
def test_tiles_equal_the_whole_decode(
    ndim, channels, grid, levels, width, depth, monkeypatch
):
    module = _random_model(channels, levels, ndim, width, depth)
    z = np.random.default_rng(0).integers(-20, 21, (2, 5, *grid)).astype(np.float32)
    whole = run_in_chunks(module.decode, z, CPU)
    crop = tuple(g * 2**levels - 3 for g in grid)
    # Tiles of a few latent positions: every tile edge is inside the signal.
    monkeypatch.setattr(_tiles, "TILE_VALUES", 512)
    calls = []
    decode = module.decode
    monkeypatch.setattr(module, "decode", lambda t: calls.append(t.shape) or decode(t))
    tiled = _tiles.decode_grids(module, z, CPU, crop)
    assert tiled.shape == (2, channels, *crop)
    assert len(calls) > 2 * ndim  # it did tile
    scale = np.abs(whole).max()
    inner = (slice(None), slice(None), *[slice(0, c) for c in crop])
    np.testing.assert_allclose(tiled, whole[inner], rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize(
    "ndim,channels,grid,levels",
    [(2, 3, (21, 34), 3), (2, 1, (1, 300), 3), (1, 2, (900,), 5)],
)
def test_centred_crop_in_tiles(ndim, channels, grid, levels, monkeypatch):
    """``centred``: the window ``(grid * stride - crop) // 2`` from the start
    (the reference's padding), whole or in tiles."""
    module = _random_model(channels, levels, ndim, 8, 1)
    z = np.random.default_rng(1).integers(-20, 21, (2, 5, *grid)).astype(np.float32)
    whole = run_in_chunks(module.decode, z, CPU)
    # Short of the padded size by more than a stride: the window's last
    # latent position is not the grid's last but one.
    crop = tuple(max(1, (g - 1) * 2**levels - 3) for g in grid)
    starts = [(g * 2**levels - c) // 2 for g, c in zip(grid, crop)]
    inner = (slice(None), slice(None))
    inner += tuple(slice(a, a + c) for a, c in zip(starts, crop))
    one = _tiles.decode_grids(module, z, CPU, crop, centred=True)
    np.testing.assert_array_equal(one, whole[inner])
    monkeypatch.setattr(_tiles, "TILE_VALUES", 512)
    tiled = _tiles.decode_grids(module, z, CPU, crop, centred=True)
    assert tiled.shape == (2, channels, *crop)
    scale = np.abs(whole).max()
    np.testing.assert_allclose(tiled, whole[inner], rtol=0, atol=1e-6 * scale)


def test_tiles_bound_the_work_per_call(monkeypatch):
    # A 1-row image 40,000 pixels wide: decoding pads it to 2**levels rows, so
    # whole it would cost 8x its output; in tiles, each call stays small.
    module = _random_model(3, 3, 2, 0, 0)
    z = np.zeros((1, 5, 1, 5000), np.float32)
    monkeypatch.setattr(_tiles, "TILE_VALUES", 2**16)
    sizes = []
    decode = module.decode
    monkeypatch.setattr(
        module, "decode", lambda t: sizes.append(t[0].numel()) or decode(t)
    )
    out = _tiles.decode_grids(module, z, CPU, (1, 40_000))
    assert out.shape == (1, 3, 1, 40_000)
    halo = _tiles.receptive_radius(module)
    sides = _tiles._tile_sides((1, 5000), 3, 8)
    # Tiles one latent row high and as long as the budget allows (not square).
    assert sides[0] == 1 and sides[1] == 2**16 // (3 * 8 * 8)
    assert max(sizes) <= 5 * (sides[1] + 2 * halo)
    assert len(sizes) == -(-5000 // sides[1])


def test_codec_decodes_big_signals_in_tiles_batch_invariantly(monkeypatch):
    rng = np.random.default_rng(0)
    codec = WallocCodec(
        latent_dim=4, levels=2, decoder_width=8, decoder_depth=1, max_iter=0,
        random_state=0,
    ).fit(rng.random((3, 32, 32, 3)))  # fmt: skip
    with torch.no_grad():
        for p in codec.module_.decoder.refine.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    monkeypatch.setattr(_tiles, "TILE_VALUES", 3 * 24 * 24)
    X = [rng.random((61, 75, 3)), rng.random((20, 20, 3)), rng.random((61, 75, 3))]
    blobs = codec.compress(X)
    together = codec.decompress(blobs, restore=False)
    alone = [codec.decompress([b], restore=False)[0] for b in blobs]
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a, b)
    # The same tiles serve inverse_transform: the two paths agree bit for bit.
    R = codec.inverse_transform(codec.transform(X))
    np.testing.assert_array_equal(together[0], R[0][:61, :75])
