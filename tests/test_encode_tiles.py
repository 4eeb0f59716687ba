"""Large images encoded in strips: the same latents, bit for bit, as whole.

The strip sizes are lowered by monkeypatching so that small arrays take the
strip path with many strips; the blobs, the integer latents and the float
latents before rounding are compared with the whole-image encoder.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from sklearn_walloc import _encode_tiles, _entropy_batched
from sklearn_walloc._signal import _canonical_layout, pad_to_multiple
from sklearn_walloc.codec import WallocCodec
from sklearn_walloc.datasets import load_photos

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def models():
    crops = [p[:64, :64] for p in load_photos(split="fit")[:8]]
    tiny = dict(max_iter=0, decoder_width=0, random_state=0)
    return {
        # symmetric boundary, least-squares last row and column (EdgeEncoder)
        "rgb-16x": WallocCodec.from_pretrained("rgb-16x"),
        # periodic boundary (a legacy model file)
        "periodic": WallocCodec.load(DATA / "golden_codec_model.npz"),
        # a filter as long as the stride: no rows shared between strips
        "haar": WallocCodec(latent_dim=5, levels=2, wavelet="haar", **tiny).fit(crops),
    }


def _images():
    rng = np.random.default_rng(0)
    photo = load_photos(split="holdout")[0]
    return {
        "photo": photo[:301, :269],
        "noise": rng.integers(0, 256, (389, 260, 3), dtype=np.uint8),
        "float": rng.random((200, 333, 3), dtype=np.float32),
    }


def _whole(monkeypatch):
    monkeypatch.setattr(_encode_tiles, "LARGE_SAMPLES", 2**62)


def _strips(monkeypatch, tile):
    monkeypatch.setattr(_encode_tiles, "LARGE_SAMPLES", 1000)
    monkeypatch.setattr(_encode_tiles, "TILE_SAMPLES", tile)


@pytest.mark.parametrize("name", ["rgb-16x", "periodic", "haar"])
@pytest.mark.parametrize("image", ["photo", "noise", "float"])
def test_strips_give_the_same_float_latents(models, name, image):
    codec = models[name]
    x = _images()[image]
    _, fused, device = codec._runtime_model()
    xx = np.moveaxis(x, -1, 0)[None]
    whole = pad_to_multiple(xx.astype(np.float32), codec.module_.stride)
    with torch.no_grad():
        ref = fused(_canonical_layout(torch.from_numpy(whole)))
    for tile in (1, 20_000, 200_000):
        strips = _encode_tiles._Strips(fused, xx, codec.spec_.sample_dtype, device)
        old = _encode_tiles.TILE_SAMPLES
        _encode_tiles.TILE_SAMPLES = tile
        try:
            with torch.no_grad():
                got = strips.latents()
        finally:
            _encode_tiles.TILE_SAMPLES = old
        assert torch.equal(got, ref), (name, image, tile)


@pytest.mark.parametrize("name", ["rgb-16x", "periodic"])
def test_strips_give_the_same_blobs(models, name, monkeypatch):
    codec = models[name]
    images = list(_images().values())
    _whole(monkeypatch)
    blobs = codec.compress(images)
    latents = codec.transform(images)
    _strips(monkeypatch, 30_000)
    assert codec.compress(images) == blobs
    for a, b in zip(codec.transform(images), latents):
        assert np.array_equal(a, b)
    # A batch of two, and the list form of the same image, give the same.
    batch = np.stack([images[1], images[1]])
    assert codec.compress(batch) == [blobs[1], blobs[1]]


def test_large_integer_images_are_read_without_a_float_copy(models, monkeypatch):
    codec = models["rgb-16x"]
    x = _images()["noise"]
    _strips(monkeypatch, 30_000)
    arrays, _ = codec._read([x, x[:10, :10]], lazy=True)
    assert [a.dtype for a in arrays] == [np.uint8, np.float32]
    assert np.shares_memory(arrays[0], x)
    arrays, _ = codec._read(x[None], lazy=True)
    assert arrays[0].dtype == np.uint8
    # Not asked for (fit, score, ...): float32 model units as before.
    assert codec._read([x])[0][0].dtype == np.float32


def test_large_integer_images_are_refused_as_before(models, monkeypatch):
    codec = models["rgb-16x"]  # a uint8 model: negative samples are refused
    x = np.random.default_rng(1).integers(-5, 200, (300, 300, 3)).astype(np.int16)
    _whole(monkeypatch)
    with pytest.raises(ValueError) as whole:
        codec.compress([x])
    _strips(monkeypatch, 30_000)
    with pytest.raises(ValueError) as strips:
        codec.compress([x])
    assert str(strips.value) == str(whole.value)
    assert "[-5, 199]" in str(strips.value)


def test_int16_images_convert_strip_by_strip(models, monkeypatch):
    codec = models["rgb-16x"]  # uint8 model; int16 non-negative: rescaled
    x = np.random.default_rng(2).integers(0, 2**15, (260, 250, 3)).astype(np.int16)
    _whole(monkeypatch)
    blob = codec.compress([x])
    _strips(monkeypatch, 30_000)
    assert codec.compress([x]) == blob


@pytest.mark.parametrize("size", [7, 64, 1000])
def test_choose_in_slices_codes_the_same_bytes(models, size, monkeypatch):
    rng = np.random.default_rng(0)
    codec = models["rgb-16x"]
    photo = codec.transform([load_photos(split="holdout")[1]])[0]
    grids = [
        (np.moveaxis(photo, -1, 0).astype(np.int32), 127),
        (rng.integers(-127, 128, (3, 40, 70)).astype(np.int32), 127),
        (rng.integers(-3, 4, (5, 1, 300)).astype(np.int32), 127),
        ((rng.standard_normal((2, 60, 90)) * 3000).round().astype(np.int32), 32767),
    ]
    whole = [_entropy_batched.encode(g, b) for g, b in grids]
    bits = [_entropy_batched.ideal_bits(g, b) for g, b in grids]
    monkeypatch.setattr(_entropy_batched, "_CHOOSE_SLICE", size)
    for (g, b), words, n in zip(grids, whole, bits):
        assert np.array_equal(_entropy_batched.encode(g, b), words)
        assert _entropy_batched.ideal_bits(g, b) == n


def test_strips_follow_the_exact_image_rounding(models, monkeypatch):
    # Exact rounding reads a strip-encoded image through a StripImage and
    # decides every near tie as on the whole image.
    codec = models["rgb-16x"]
    x = _images()["photo"]
    _whole(monkeypatch)
    blob = codec.compress([x])
    _strips(monkeypatch, 20_000)
    assert codec.compress([x]) == blob


def _strip_image(codec, x, tile, monkeypatch):
    _, fused, device = codec._runtime_model()
    xx = np.moveaxis(x, -1, 0)[None]
    monkeypatch.setattr(_encode_tiles, "TILE_SAMPLES", tile)
    strips = _encode_tiles._Strips(fused, xx, codec.spec_.sample_dtype, device)
    whole = _canonical_layout(
        torch.from_numpy(pad_to_multiple(xx.astype(np.float32), codec.module_.stride))
    )
    return fused, _encode_tiles.StripImage(strips), whole


@pytest.mark.parametrize("name", ["rgb-16x", "periodic"])
@pytest.mark.parametrize("tile", [1, 20_000])
def test_strip_image_reads_what_the_whole_image_holds(models, name, tile, monkeypatch):
    # Windows anywhere (first and last rows and columns, wrapping around the
    # ends for the periodic model, several bands apart), the peak and the
    # float64 reference latents: the same as from the whole float32 image.
    from sklearn_walloc import _ties

    codec = models[name]
    fused, image, whole = _strip_image(codec, _images()["noise"], tile, monkeypatch)
    _, _, h, w = whole.shape
    assert image.shape == tuple(whole.shape)
    rng = np.random.default_rng(1)
    wrap = name == "periodic"
    lo0, lo1 = (-30, -30) if wrap else (0, 0)
    first = [np.r_[lo0, rng.integers(lo0, h - 57, 40), h - 57],
             np.r_[lo1, rng.integers(lo1, w - 57, 40), w - 57]]  # fmt: skip
    n = np.zeros(42, np.intp)
    got = image.windows(n, first, [57, 57])
    assert torch.equal(got, _ties._windows(whole, n, first, [57, 57]))
    dims = (1, 2, 3)
    peak = torch.maximum(whole.amax(dim=dims), whole.amin(dim=dims).neg())
    assert torch.equal(image.peak(), peak)
    ties = _ties.exact_rounding(fused, codec.module_)
    ref = ties.reference(whole.double())
    assert torch.allclose(image.reference(ties.reference), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["rgb-16x", "periodic"])
def test_strip_image_whole_reference_path(models, name, monkeypatch):
    # A large image's first stage, computed in bands of rows, serves its near
    # ties as the whole image's first stage does; its solved ends, whose
    # positions would read more than its samples, take one whole reference
    # computed in strips.
    from sklearn_walloc import _ties

    codec = models[name]
    fused, image, whole = _strip_image(codec, _images()["photo"], 20_000, monkeypatch)
    monkeypatch.setattr(_ties, "_FIRST_BAND", 64)  # several bands
    ties = _ties.exact_rounding(fused, codec.module_)
    g = [s // codec.module_.stride for s in whole.shape[2:]]
    index = torch.tensor([[0, i, j] for i in range(g[0]) for j in range(g[1])][::3])
    with torch.no_grad():
        _, first = _ties.latents_and_first(fused, whole)
    monkeypatch.setattr(_ties, "_WHOLE", 0.0)
    got = ties.values(image, index)
    monkeypatch.setattr(_ties, "_WHOLE", 1e9)
    want = ties.values(whole, index, first)
    served = ties._first_serves(index.numpy(), g)
    assert torch.equal(got[served], want[served])
    assert torch.allclose(got, want, rtol=0, atol=1e-9)
