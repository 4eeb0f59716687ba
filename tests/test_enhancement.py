"""Enhancement channels (``WallocCodec(enhancement_dim=...)``, format 5): rate
targets code linear channels beyond ``latent_dim``; nothing else changes."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _blob_helpers import repack

from sklearn_walloc import _tiles
from sklearn_walloc._container import ENHANCED_VERSION, unpack_blob
from sklearn_walloc._enhancement import EnhancedDecoder, trim
from sklearn_walloc._entropy import decode_latents, encode_latents
from sklearn_walloc.codec import WallocCodec
from sklearn_walloc.metrics import psnr

DATA = Path(__file__).parent / "data"
TINY = dict(decoder_width=8, decoder_depth=1, max_iter=0, random_state=0)
K = 6


def _perturb(codec, seed=0):
    """A nonlinear decoder without training: random residual weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in codec.module_.decoder.refine.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    codec._runtime = {}
    return codec


@pytest.fixture(scope="module")
def plain(small_photos):
    return WallocCodec(latent_dim=3, levels=2, **TINY).fit(small_photos)


@pytest.fixture(scope="module")
def enhanced(small_photos):
    return WallocCodec(latent_dim=3, levels=2, enhancement_dim=K, **TINY).fit(
        small_photos
    )


def _bpp(blob, x):
    return 8 * len(blob) / (x.shape[0] * x.shape[1])


def test_channels_are_orthonormal_and_outside_the_linear_path(enhanced):
    m = enhanced.module_
    e = m.enhancement.double()
    assert e.shape == (K, m.encoder.in_channels)
    eye = torch.eye(K, dtype=torch.float64)
    torch.testing.assert_close(e @ e.T, eye, rtol=0, atol=1e-6)
    lin = m.decoder.linear.weight.flatten(1).double()
    assert float((e @ lin).abs().max()) < 1e-5 * float(lin.abs().max())
    assert float(m.enhancement_scale) > 0


def test_without_a_target_nothing_changes(plain, enhanced, small_photos):
    """Same base model, fingerprint, transform and default blobs (format 4)."""
    x = small_photos[:2]
    assert enhanced.fingerprint() == plain.fingerprint()
    assert np.array_equal(enhanced.transform(np.stack(x)), plain.transform(np.stack(x)))
    blobs = enhanced.compress(x)
    assert blobs == plain.compress(x)
    assert {unpack_blob(b).version for b in blobs} == {4}
    assert np.array_equal(enhanced.decompress(blobs), plain.decompress(blobs))
    # A fixed gain keeps the model's channels too.
    gained = enhanced.set_params(gain=-2).compress(x)
    enhanced.set_params(gain=0)
    assert {unpack_blob(b).latent_shape[0] for b in gained} == {3}


def test_targets_code_enhancement_channels_and_pay(plain, enhanced, small_photos):
    for target in (2.0, 4.0):
        blobs = enhanced.compress(small_photos, target_bpp=target)
        base = plain.compress(small_photos, target_bpp=target)
        for b, b0, x in zip(blobs, base, small_photos):
            p = unpack_blob(b)
            assert _bpp(b, x) <= target
            assert p.version == ENHANCED_VERSION and 3 < p.latent_shape[0] <= 3 + K
            # The last channel kept is not all zeros.
            q = decode_latents(p.payload, p.latent_shape, p.latent_bits, version=5)
            assert q[-1].any()
            (y,) = enhanced.decompress([b])
            (y0,) = plain.decompress([b0])
            assert psnr(x, y) > psnr(x, y0)


def test_target_psnr_reaches_what_the_base_cannot(plain, enhanced, small_photos):
    x = small_photos[1]
    with pytest.warns(UserWarning, match="above what this model reaches"):
        (b0,) = plain.compress([x], target_psnr=60.0)
    best = psnr(x, plain.decompress([b0])[0])
    (b,) = enhanced.compress([x], target_psnr=best + 1.0)
    assert psnr(x, enhanced.decompress([b])[0]) >= best + 1.0


def test_enhanced_decoder_replaces_the_enhancement_component(small_photos):
    """The fused decoder equals the definition, through the module's own
    (training) decoder: the bands' E_k component replaced by the coded one."""
    codec = WallocCodec(latent_dim=3, levels=2, enhancement_dim=K, **TINY)
    codec = _perturb(codec.fit(small_photos))
    m = codec.module_
    g = torch.Generator().manual_seed(1)
    z = torch.randn((2, 3 + 4, 5, 6), generator=g) * 30
    z[:, 3 + 1] = 0  # a channel coded 0
    e = m.enhancement[:4]
    scale = m.enhancement_scale
    with torch.no_grad():
        y = m.decoder(z[:, :3] / m.latent_scale)  # bands (n, nb, 5, 6)
        coded = torch.einsum("kb,nbhw->nkhw", e, y) * scale
        for bound in (None, 0.7):
            ze = z[:, 3:]
            if bound is not None:
                ze = torch.where(ze == 0, coded.clamp(-bound, bound), ze)
            bands = y + torch.einsum("kb,nkhw->nbhw", e, ze / scale - coded / scale)
            want = m.wpt.inverse(bands) * m.data_scale + m.data_offset
            got = EnhancedDecoder(m, 4)(z, bound)
            torch.testing.assert_close(got, want, rtol=0, atol=2e-4 * want.abs().max())
    assert not torch.equal(EnhancedDecoder(m, 4)(z, 0.7), EnhancedDecoder(m, 4)(z))


def test_model_without_enhancement_refuses_format_5(plain, enhanced, small_photos):
    (blob,) = enhanced.compress(small_photos[:1], target_bpp=4.0)
    with pytest.raises(ValueError, match="format version 5"):
        plain.decompress([blob])
    # A forged grid with more channels than the model has.
    p = unpack_blob(blob)
    q = np.zeros((3 + K + 1, *p.latent_shape[1:]), np.int32)
    payload = encode_latents(q, p.latent_bits, version=5)
    forged = repack(blob, payload, latent_shape=q.shape)
    with pytest.raises(ValueError, match="latent channels"):
        enhanced.decompress([forged])
    # Format 5 records the enhanced model's fingerprint, not the base one.
    relabelled = repack(blob, fingerprint=enhanced.fingerprint())
    with pytest.raises(ValueError, match="another model"):
        enhanced.decompress([relabelled])


def test_persistence_and_params(enhanced, small_photos, tmp_path):
    from sklearn.base import clone

    blobs = enhanced.compress(small_photos[:2], target_bpp=4.0)
    want = enhanced.decompress(blobs)
    enhanced.save(tmp_path / "m.npz")
    loaded = WallocCodec.load(tmp_path / "m.npz")
    assert loaded.enhancement_dim == K and loaded.spec_.enhancement_dim == K
    assert np.array_equal(loaded.decompress(blobs), want)
    assert np.array_equal(pickle.loads(pickle.dumps(enhanced)).decompress(blobs), want)
    assert clone(enhanced).get_params()["enhancement_dim"] == K
    assert loaded.compress(small_photos[:2], target_bpp=4.0) == blobs


def test_tiled_decoding_equals_whole(enhanced, small_photos, monkeypatch):
    blobs = enhanced.compress(small_photos[:1], target_bpp=4.0)
    whole = enhanced.decompress(blobs, restore=False)
    monkeypatch.setattr(_tiles, "TILE_VALUES", 3 * 24 * 24)
    enhanced._runtime = {}
    tiled = enhanced.decompress(blobs, restore=False)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4 * np.abs(whole).max())


def test_bad_enhancement_dims_are_refused(small_photos):
    with pytest.raises(ValueError, match="enhancement_dim"):
        WallocCodec(latent_dim=3, levels=1, enhancement_dim=10, **TINY).fit(
            small_photos
        )
    audio = np.random.default_rng(0).integers(-3000, 3000, (2, 256, 2)).astype("int16")
    with pytest.raises(ValueError, match="enhancement_dim"):
        WallocCodec(
            signal_ndim=1, latent_dim=2, levels=2, enhancement_dim=1, **TINY
        ).fit(audio)
    with pytest.raises(ValueError, match="enhancement_dim"):
        WallocCodec(enhancement_dim=-1).fit(small_photos)


def test_trim_drops_trailing_zero_channels():
    q = np.zeros((4, 2, 2), np.int32)
    assert trim(q).shape == (0, 2, 2)
    q[1, 0, 0] = -1
    assert trim(q).shape == (2, 2, 2)


def test_shipped_rgb_16x_has_enhancement_channels():
    codec = WallocCodec.from_pretrained("rgb-16x")
    assert codec.enhancement_dim == codec.spec_.enhancement_dim == 36
    from sklearn_walloc.datasets import load_photos

    x = load_photos(["astronaut"])[0][:96, :128]
    (blob,) = codec.compress([x], target_bpp=1.5)
    assert unpack_blob(blob).version == ENHANCED_VERSION
    # Above the ceiling of its 12 channels: their finest gain, at any size.
    (finest,) = codec.set_params(gain=24).compress([x])
    ceiling = psnr(x, codec.decompress([finest])[0])
    assert psnr(x, codec.decompress([blob])[0]) > ceiling + 1.0


# A format 5 blob of the golden format-3 model given 4 enhancement channels.
GOLDEN_V5 = "golden_codec_v5_2d"


def _write_golden_v5():  # pragma: no cover - run once by hand, never in the tests
    import dataclasses

    from sklearn_walloc._enhancement import fit_enhancement
    from sklearn_walloc.datasets import load_photos

    codec = WallocCodec.load(DATA / "golden_codec_v3_model.npz")
    spec = dataclasses.replace(codec.spec_, enhancement_dim=4)
    module = spec.build()
    module.load_state_dict(codec.module_.state_dict(), strict=False)
    fit = [p[:64, :64] for p in load_photos(split="fit")]
    arrays, _ = codec._read(fit)
    fit_enhancement(module, arrays, 4)
    codec.spec_, codec.module_ = spec, module.eval().requires_grad_(False)
    codec.enhancement_dim, codec._runtime = 4, {}
    codec.save(DATA / "golden_codec_v5_model.npz")
    codec = WallocCodec.load(DATA / "golden_codec_v5_model.npz")
    x = load_photos(["astronaut"])[0][200:230, 240:267]
    (blob,) = codec.compress([x], target_bpp=12.0)
    p = unpack_blob(blob)
    assert p.version == 5 and p.latent_shape[0] > 6
    (DATA / f"{GOLDEN_V5}.bin").write_bytes(blob)
    q = decode_latents(p.payload, p.latent_shape, p.latent_bits, version=5)
    np.save(DATA / f"{GOLDEN_V5}_latents.npy", q.astype(np.int16))
    np.save(DATA / f"{GOLDEN_V5}.npy", codec.decompress([blob], restore=False))


def test_golden_v5_blob_still_decodes():
    codec = WallocCodec.load(DATA / "golden_codec_v5_model.npz")
    base = WallocCodec.load(DATA / "golden_codec_v3_model.npz")
    assert codec.fingerprint() == base.fingerprint()  # old blobs still decode
    blob = (DATA / f"{GOLDEN_V5}.bin").read_bytes()
    latents = np.load(DATA / f"{GOLDEN_V5}_latents.npy", allow_pickle=False)
    expected = np.load(DATA / f"{GOLDEN_V5}.npy", allow_pickle=False)
    p = unpack_blob(blob, codec.fingerprint(enhanced=True))
    assert p.version == 5 and p.latent_shape[0] == len(latents) > 6
    q = decode_latents(p.payload, p.latent_shape, p.latent_bits, version=5)
    assert np.array_equal(q, latents)
    assert encode_latents(latents, p.latent_bits, version=5) == p.payload
    Y = codec.decompress([blob], restore=False)
    np.testing.assert_allclose(Y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    with pytest.raises(ValueError, match="format version 5"):
        base.decompress([blob])


if __name__ == "__main__" and "--write-golden-v5" in __import__("sys").argv:
    _write_golden_v5()  # pragma: no cover


def test_strip_encoding_gives_the_same_blobs(enhanced, small_photos, monkeypatch):
    """Large images encode in strips (``_encode_tiles``): the enhancement
    latents too, to the same bytes as the whole image."""
    from sklearn_walloc import _encode_tiles

    x = np.concatenate(small_photos[:2], axis=0)  # 128 x 80
    whole = enhanced.compress([x], target_bpp=4.0)
    monkeypatch.setattr(_encode_tiles, "LARGE_SAMPLES", 1000)
    monkeypatch.setattr(_encode_tiles, "TILE_SAMPLES", 3 * 80 * 24)
    enhanced._runtime = {}
    assert enhanced.compress([x], target_bpp=4.0) == whole
    assert unpack_blob(whole[0]).version == ENHANCED_VERSION


def test_dask_bags_of_enhanced_blobs(enhanced, small_photos):
    dask = pytest.importorskip("dask.bag")
    bag = dask.from_sequence(small_photos[:3], npartitions=2)
    blobs = enhanced.compress(bag, target_bpp=4.0).compute()
    assert blobs == enhanced.compress(small_photos[:3], target_bpp=4.0)


def test_targets_keep_the_better_of_with_and_without(plain, enhanced, small_photos):
    # Each target blob is the better of the search with enhancement channels
    # and the search without (the model's own blob, format 4): never below it.
    for target in (0.4, 1.0, 4.0):
        blobs = enhanced.compress(small_photos, target_bpp=target)
        base = plain.compress(small_photos, target_bpp=target)
        for b, b0, x in zip(blobs, base, small_photos):
            (y,) = enhanced.decompress([b])
            (y0,) = plain.decompress([b0])
            assert psnr(x, y) >= psnr(x, y0)
            if unpack_blob(b).version == 4:
                assert b == b0
