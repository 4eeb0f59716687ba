"""Rate control: ``compress(X, target_bpp=..., target_psnr=...)``, format 4's
signed gain, and the CLI's --bpp / --psnr / --quality."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sklearn_walloc import _rate
from sklearn_walloc._container import MIN_GAIN_STEPS, unpack_blob
from sklearn_walloc._entropy import decode_latents, encode_latents
from sklearn_walloc.cli import main
from sklearn_walloc.codec import WallocCodec
from sklearn_walloc.metrics import psnr

DATA = Path(__file__).parent / "data"
TINY = dict(decoder_width=8, decoder_depth=1, max_iter=0, random_state=0)


def _perturb(codec, seed=0):
    """A nonlinear decoder without training: random residual weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in codec.module_.decoder.refine.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return codec


@pytest.fixture(scope="module")
def codec(small_photos):
    return _perturb(WallocCodec(latent_dim=6, levels=2, **TINY).fit(small_photos))


@pytest.fixture(scope="module")
def photos(small_photos):
    # Odd sizes, one per padded shape and two sharing one.
    return [small_photos[0][:61, :77], small_photos[1][:64, :80], small_photos[2][:62]]


def _bpp(blob, x):
    return 8 * len(blob) / (x.shape[0] * x.shape[1])


def _gain(blob):
    return unpack_blob(blob).gain_steps


def test_target_bpp_is_met_from_below_and_spent(codec, photos):
    default = codec.compress(photos)
    for target in (0.5, 1.0, 2.0, 4.0):
        blobs = codec.compress(photos, target_bpp=target)
        sizes = [_bpp(b, x) for b, x in zip(blobs, photos)]
        assert max(sizes) <= target
        # The best quality within the target: one gain step finer is over it.
        for b, x in zip(blobs, photos):
            if _gain(b) == _rate.HIGHEST_GAIN:
                continue
            finer = codec.compress([x], target_bpp=_bpp(b, x) * 1.3)[0]
            assert _gain(finer) > _gain(b) and _bpp(finer, x) > _bpp(b, x)
        assert min(sizes) >= 0.6 * target
    # A coarser target than the model's own rate is a negative gain.
    coarse = codec.compress(photos, target_bpp=0.5)
    assert all(_gain(b) < 0 for b in coarse)
    assert all(len(c) < len(d) for c, d in zip(coarse, default))


def test_quality_follows_the_target(codec, photos):
    x = photos[0]
    db, size = [], []
    for target in (0.3, 0.6, 1.2, 2.4):
        (blob,) = codec.compress([x], target_bpp=target)
        db.append(psnr(x, codec.decompress([blob])[0]))
        size.append(len(blob))
    assert np.all(np.diff(size) > 0) and np.all(np.diff(db) > 0)


def test_target_psnr_gives_the_smallest_blob_that_reaches_it(codec, photos):
    own = np.array(
        [psnr(x, y) for x, y in zip(photos, codec.decompress(codec.compress(photos)))]
    )
    target = float(own.min()) - 3.0
    blobs = codec.compress(photos, target_psnr=target)
    for blob, x in zip(blobs, photos):
        (y,) = codec.decompress([blob])
        assert psnr(x, y) >= target
        # One quarter octave coarser misses it: the smallest such blob.
        coarser = codec.compress([x], target_bpp=_bpp(blob, x) * 0.999)[0]
        assert len(coarser) < len(blob)
        assert psnr(x, codec.decompress([coarser])[0]) < target
    assert all(len(b) < len(d) for b, d in zip(blobs, codec.compress(photos)))


def test_out_of_reach_targets_warn_and_give_the_nearest(codec, photos):
    x = photos[1]
    with pytest.warns(UserWarning, match="target_bpp=0.001 is below"):
        (tiny,) = codec.compress([x], target_bpp=0.001)
    assert _gain(tiny) == MIN_GAIN_STEPS
    with pytest.warns(UserWarning, match="target_psnr=90.0 dB is above"):
        (best,) = codec.compress([x], target_psnr=90.0)
    assert 0 <= _gain(best) <= _rate.HIGHEST_GAIN
    # Targets in reach warn nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codec.compress([x], target_bpp=1.0)


def test_rate_control_is_batch_invariant(codec, photos):
    together = codec.compress(photos, target_bpp=1.0)
    alone = [codec.compress([x], target_bpp=1.0)[0] for x in photos]
    assert together == alone
    # A batch of equal shapes too (one padded chunk).
    batch = np.stack([photos[1], photos[1][::-1]])
    assert codec.compress(batch, target_bpp=1.0) == [
        codec.compress([x], target_bpp=1.0)[0] for x in batch
    ]


def test_gain_zero_is_the_default_blob(codec, photos, monkeypatch):
    # Asked for exactly the default blob's rate, the search stops at gain 0
    # when one step finer is over it: the very same bytes.
    x = photos[0]
    (default,) = codec.compress([x])
    monkeypatch.setattr(_rate, "HIGHEST_GAIN", 0)
    (same,) = codec.compress([x], target_bpp=_bpp(default, x))
    assert same == default


def test_gained_blobs_decode_in_the_callers_units(codec, photos):
    x = photos[0]
    floats = x.astype(np.float32) / 255
    (blob,) = codec.compress([floats], target_bpp=0.8)
    (y,) = codec.decompress([blob])
    assert y.dtype == np.float32 and y.shape == x.shape and 0 <= y.min() <= y.max() <= 1
    (b8,) = codec.compress([x], target_bpp=0.8)
    np.testing.assert_allclose(y * 255, codec.decompress([b8])[0], atol=0.5 + 1e-3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"target_bpp": 1.0, "target_psnr": 30.0}, ValueError, "not both"),
        ({"target_bpp": 0.0}, ValueError, "target_bpp must be a finite positive"),
        ({"target_bpp": -1.0}, ValueError, "target_bpp"),
        ({"target_bpp": float("nan")}, ValueError, "target_bpp"),
        ({"target_psnr": float("inf")}, ValueError, "target_psnr"),
        ({"target_bpp": True}, TypeError, "target_bpp must be a real"),
        ({"target_psnr": "30"}, TypeError, "target_psnr must be a real"),
    ],
)
def test_bad_targets_are_refused(codec, photos, kwargs, error, match):
    with pytest.raises(error, match=match):
        codec.compress(photos[:1], **kwargs)


def test_audio_target_is_per_sample_and_channel():
    rng = np.random.default_rng(3)
    t = np.arange(4096) / 8000
    clip = np.stack([np.sin(2 * np.pi * 330 * t), np.sin(2 * np.pi * 470 * t)], -1)
    train = (clip[None] * 8000 + rng.normal(0, 400, (3, *clip.shape))).astype(np.int16)
    codec = WallocCodec(latent_dim=3, levels=2, signal_ndim=1, **TINY).fit(train)
    x = train[0]
    for target in (1.0, 3.0):
        (blob,) = codec.compress([x], target_bpp=target)
        assert 8 * len(blob) <= target * x.size
        assert 8 * len(blob) > 0.6 * target * x.size
    (y,) = codec.decompress([blob])
    assert y.dtype == np.int16 and y.shape == x.shape


def test_cli_rate_options(tmp_path, small_photos, codec):
    from PIL import Image

    model = tmp_path / "m.npz"
    codec.save(model)
    src = tmp_path / "x.png"
    x = small_photos[3][:48, :56]
    Image.fromarray(x).save(src)
    sizes = {}
    for option in (
        ["--bpp", "0.7"],
        ["--bpp", "2"],
        ["--quality", "20"],
        ["--psnr", "25"],
    ):
        assert main(["compress", "-m", str(model), str(src), "-q", "-f", *option]) == 0
        data = (tmp_path / "x.png.wlc").read_bytes()
        sizes[option[1]] = len(data)
        assert main(["info", str(tmp_path / "x.png.wlc")]) == 0
    assert sizes["0.7"] < sizes["2"]
    # --bpp bounds the coded signal; the file adds its name and metadata.
    assert sizes["0.7"] * 8 <= 0.7 * 48 * 56 + 8 * 200
    for bad in (
        ["--bpp", "0"],
        ["--bpp", "nan"],
        ["--quality", "101"],
        ["--bpp", "1", "--psnr", "30"],
    ):
        assert main(["compress", "-m", str(model), str(src), "-q", "-f", *bad]) == 2


def test_quality_maps_monotonically_onto_psnr():
    for ndim in (1, 2):
        values = [_rate.quality_psnr(q, ndim) for q in range(1, 101)]
        assert np.all(np.diff(values) > 0)
    assert _rate.quality_psnr(50, 2) == 30.0


# Format 4 blobs with a coarser and a finer (wider) gain of an image model.
GOLDEN_V4 = ("golden_codec_v4_2d_coarse", "golden_codec_v4_2d_fine")


def _write_golden_v4():  # pragma: no cover - run once by hand, never in the tests
    codec = WallocCodec.load(DATA / "golden_codec_v3_model.npz")
    from sklearn_walloc.datasets import load_photos

    x = load_photos(["astronaut"])[0][200:230, 240:267]
    for name, target in zip(GOLDEN_V4, (1.0, 12.0)):
        (blob,) = codec.compress([x], target_bpp=target)
        p = unpack_blob(blob)
        (DATA / f"{name}.bin").write_bytes(blob)
        q = decode_latents(p.payload, p.latent_shape, p.latent_bits)
        np.save(DATA / f"{name}_latents.npy", q.astype(np.int16))
        np.save(DATA / f"{name}.npy", codec.decompress([blob], restore=False))


@pytest.mark.parametrize("name", GOLDEN_V4)
def test_golden_v4_blobs_still_decode(name):
    codec = WallocCodec.load(DATA / "golden_codec_v3_model.npz")
    blob = (DATA / f"{name}.bin").read_bytes()
    latents = np.load(DATA / f"{name}_latents.npy", allow_pickle=False)
    expected = np.load(DATA / f"{name}.npy", allow_pickle=False)
    p = unpack_blob(blob, codec.fingerprint())
    assert p.version == 4
    if name.endswith("coarse"):
        assert p.gain_steps < 0 and p.latent_bits == codec.latent_bits_
    else:
        assert p.gain_steps > 0 and p.latent_bits > codec.latent_bits_
    q = decode_latents(p.payload, p.latent_shape, p.latent_bits, version=4)
    assert np.array_equal(q, latents)
    assert encode_latents(latents, p.latent_bits, version=4) == p.payload
    Y = codec.decompress([blob], restore=False)
    np.testing.assert_allclose(Y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    ref = codec.module_.decode(
        torch.from_numpy(latents[None].astype(np.float32)), p.gain_steps, p.latent_bits
    )
    ref = np.moveaxis(ref[0].numpy(), 0, -1)[: expected.shape[1], : expected.shape[2]]
    np.testing.assert_allclose(Y[0], ref, rtol=0, atol=1e-4 * np.abs(ref).max())


if __name__ == "__main__" and "--write-golden-v4" in __import__("sys").argv:
    _write_golden_v4()  # pragma: no cover


def test_best_of_picks_the_model_that_serves_the_target(codec, photos, small_photos):
    coarse = _perturb(WallocCodec(latent_dim=3, levels=2, **TINY).fit(small_photos))
    x = photos[0]
    for target in (0.5, 2.0, 6.0):
        chosen, blob, db = _rate.best_of([coarse, codec], x, {"target_bpp": target})
        assert _bpp(blob, x) <= target
        # The PSNR it reports is the decoded blob's, and no other model beats it.
        assert db == pytest.approx(psnr(x, chosen.decompress([blob])[0]), abs=1e-6)
        for other in (coarse, codec):
            (b,) = other.compress([x], target_bpp=target)
            assert psnr(x, other.decompress([b])[0]) <= db + 1e-9
    # A PSNR target: the smallest blob that reaches it.
    chosen, blob, db = _rate.best_of([coarse, codec], x, {"target_psnr": 20.0})
    sizes = [
        len(c.compress([x], target_psnr=20.0)[0])
        for c in (coarse, codec)
        if psnr(x, c.decompress(c.compress([x], target_psnr=20.0))[0]) >= 20.0
    ]
    assert db >= 20.0 and len(blob) == min(sizes)


def test_ladders_of_shipped_models():
    from sklearn_walloc._pretrained import ladder_for

    assert ladder_for(2, 3)[0] == "rgb-16x" and "rgb-4x" in ladder_for(2, 3)
    assert ladder_for(1, 2) == ["stereo-5x"] and ladder_for(2, 5) == []


def test_cli_without_a_model_picks_from_the_ladder(tmp_path, small_photos, capsys):
    from PIL import Image

    src = tmp_path / "x.png"
    Image.fromarray(small_photos[2][:40, :48]).save(src)
    assert main(["compress", str(src), "--bpp", "6", "-f"]) == 0
    assert "with rgb-4x" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "x.png.wlc"), "-q"]) == 0
    assert (tmp_path / "x.png.walloc.png").exists()


def test_gain_parameter_sets_the_default_rate(codec, photos):
    import copy

    from sklearn.base import clone

    own = codec.compress(photos)
    assert clone(codec).set_params(gain=-6).get_params()["gain"] == -6
    coarse = copy.deepcopy(codec).set_params(gain=-6)  # fitted, no refit
    blobs = coarse.compress(photos)
    assert [_gain(b) for b in blobs] == [-6] * len(photos)
    assert all(len(b) < len(o) for b, o in zip(blobs, own))
    # The same blobs as a rate target that lands on -6 would give: one path.
    assert blobs[0] == coarse.compress(photos[:1])[0]
    # A target overrides it; gain=0 is the model's own rate, no gain field.
    assert _gain(coarse.compress(photos[:1], target_bpp=50.0)[0]) > -6
    assert coarse.set_params(gain=0).compress(photos) == own
    with pytest.raises(ValueError, match="gain"):
        coarse.set_params(gain=25).compress(photos[:1])


def test_shipped_codecs_load_at_their_default_gain():
    from sklearn_walloc._pretrained import DEFAULT_GAINS
    from sklearn_walloc.transformer import WallocTransformer

    codec = WallocCodec.from_pretrained("rgb-16x")
    assert codec.gain == DEFAULT_GAINS["rgb-16x"] < 0
    assert WallocCodec.from_pretrained("stereo-5x").gain == 0
    assert "gain" not in WallocTransformer.from_pretrained("rgb-16x").get_params()
    x = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    (blob,) = codec.compress([x])
    assert _gain(blob) == codec.gain
    assert codec.decompress([blob])[0].shape == x.shape


@pytest.mark.parametrize("exact", [False, True])
def test_large_images_code_in_strips_to_the_same_blobs(codec, monkeypatch, exact):
    # Rate control and the gain on images large enough for the strip encoder
    # (integers read lazily): the same blobs as the whole-image encoder.
    from sklearn_walloc import _encode_tiles, _ties

    monkeypatch.setattr(_ties, "EXACT_IMAGES", exact)
    rng = np.random.default_rng(5)
    x = (rng.random((70, 90, 3)) * 60 + np.linspace(0, 180, 90)[:, None]).astype(
        np.uint8
    )
    coarse = __import__("copy").deepcopy(codec).set_params(gain=-3)

    def run():
        return (
            coarse.compress([x]),
            codec.compress([x], target_bpp=1.5),
            codec.compress([x], target_psnr=22.0),
        )

    monkeypatch.setattr(_encode_tiles, "LARGE_SAMPLES", 2**62)
    whole = run()
    monkeypatch.setattr(_encode_tiles, "LARGE_SAMPLES", 1000)
    monkeypatch.setattr(_encode_tiles, "TILE_SAMPLES", 3000)
    assert run() == whole


def _bisected(holds, low, high):
    """The largest gain in [low, high] that holds, by plain bisection."""
    if not holds(low):
        return None
    good, bad = low, high + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if holds(mid) else (good, mid)
    return good


@pytest.mark.parametrize("log,strict", [(True, False), (False, True)])
def test_the_gain_search_finds_what_bisection_finds_in_fewer_asks(log, strict):
    # Monotone values of three shapes (geometric, flat then growing, linear)
    # and thresholds anywhere among them, the ends and out of reach included.
    rng = np.random.default_rng(0)
    low, high = _rate.LOWEST_GAIN, _rate.HIGHEST_GAIN
    gains = np.arange(low, high + 1)
    asks = []
    for trial in range(300):
        shape = trial % 3
        a = rng.uniform(0.05, 0.4)
        if shape == 0:
            v = np.exp(a * gains + rng.uniform(6, 12)) + 40
        elif shape == 1:
            v = 900 + np.maximum(gains + rng.integers(0, 40), 0) ** 2 * a * 50
        else:
            v = 30 + rng.uniform(0.5, 1.6) * gains
        v = np.maximum.accumulate(v + rng.uniform(0, 1e-3, v.size))
        t = float(rng.choice(v) * rng.uniform(0.8, 1.2))
        table = dict(zip(gains.tolist(), v.tolist()))
        asked = []

        def value(g, table=table, asked=asked):
            asked.append(g)
            return table[g]

        got = _rate._largest(value, t, strict=strict, log=log)

        def holds(g, table=table, t=t):
            return table[g] < t if strict else table[g] <= t

        assert got == _bisected(holds, low, high)
        assert len(asked) == len(set(asked))  # never the same blob twice
        asks.append(len(asked))
    assert np.mean(asks) < 6
