"""The pretrained models shipped in the package: offline, small, both classes."""

import json
import math
from importlib import resources

import numpy as np
import pytest

from sklearn_walloc import WallocCodec, WallocTransformer, list_pretrained
from sklearn_walloc.datasets import load_photos

SHIPPED = {
    # name -> (signal_ndim, channels, levels, latent_dim, sample dtype)
    "rgb-16x": (2, 3, 3, 12, "uint8"),
    "rgb-4x": (2, 3, 2, 12, "uint8"),
    "stereo-5x": (1, 2, 5, 13, "int16"),
    "mono-5x": (1, 1, 6, 13, "int16"),
    "grey-16x": (2, 1, 3, 4, "uint8"),
}
FOLDER = resources.files("sklearn_walloc").joinpath("data", "pretrained")


def test_list_pretrained_names_the_shipped_files():
    # Other models may join (a greyscale one); these four stay.
    assert set(SHIPPED) <= set(list_pretrained())
    assert list_pretrained() == sorted(list_pretrained())
    for name in list_pretrained():
        # Small enough for a wheel: well under 1 MB each.
        assert FOLDER.joinpath(f"{name}.npz").stat().st_size < 600_000


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_from_pretrained_is_fitted_and_documented(name):
    ndim, channels, levels, latent_dim, dtype = SHIPPED[name]
    codec = WallocCodec.from_pretrained(name)
    assert type(codec) is WallocCodec
    spec = codec.spec_
    assert (spec.signal_ndim, spec.in_channels, spec.levels, spec.latent_dim) == (
        ndim,
        channels,
        levels,
        latent_dim,
    )
    assert spec.sample_dtype == dtype and codec.latent_bits_ == 8
    # The same weights as a transformer: the same latents.
    transformer = WallocTransformer.from_pretrained(name)
    assert type(transformer) is WallocTransformer
    rng = np.random.default_rng(0)
    shape = (1, 40, 56, channels) if ndim == 2 else (1, 3000, channels)
    info = np.iinfo(dtype)
    x = rng.integers(info.min // 4, info.max // 4, shape).astype(dtype)
    assert np.array_equal(codec.transform(x), transformer.transform(x))
    # And a second load is the same model.
    assert WallocCodec.from_pretrained(name).fingerprint() == codec.fingerprint()


def test_rgb_16x_codes_a_photo_well():
    codec = WallocCodec.from_pretrained("rgb-16x")
    photo = load_photos(["coffee"])[0][100:228, 200:328]
    (blob,) = codec.compress([photo])
    (y,) = codec.decompress([blob], restore=True)
    mse = np.mean((y.astype(float) - photo) ** 2)
    assert 10 * math.log10(255**2 / mse) > 25
    # About 16x fewer values: well under 2 bits per pixel and channel.
    assert 8 * len(blob) / photo.size < 2


def test_grey_16x_codes_a_grey_photo_well():
    from PIL import Image

    codec = WallocCodec.from_pretrained("grey-16x")
    photo = load_photos(["coffee"])[0][100:228, 200:328]
    grey = np.asarray(Image.fromarray(photo).convert("L"))  # (H, W), no channel
    (blob,) = codec.compress([grey])
    (y,) = codec.decompress([blob], restore=True)
    assert y.shape == grey.shape and y.dtype == np.uint8
    mse = np.mean((y.astype(float) - grey) ** 2)
    # Measured 29.7 dB at 0.32 bits per pixel (held out: coffee is never fitted).
    assert 10 * math.log10(255**2 / mse) > 28
    assert 8 * len(blob) / grey.size < 0.5
    # An RGB photo is another channel count: refused, naming it.
    with pytest.raises(ValueError, match="channel"):
        codec.compress([photo])


@pytest.mark.parametrize("name,channels", [("stereo-5x", 2), ("mono-5x", 1)])
def test_audio_models_code_music_like_audio(name, channels):
    rng = np.random.default_rng(1)
    t = np.arange(8192) / 44100
    x = sum(np.sin(2 * np.pi * f * t + p) for f, p in ((220, 0), (330, 1), (1100, 2)))
    x = np.stack([x, np.roll(x, 7)][:channels], -1) * 6000
    x = (x + rng.normal(0, 30, x.shape)).astype(np.int16)
    codec = WallocCodec.from_pretrained(name)
    assert codec.score([x], metric="snr") > 15
    (y,) = codec.decompress(codec.compress([x]), restore=True)
    snr = 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((y - x) ** 2.0))
    assert snr > 15


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="rgb-16x"):
        WallocCodec.from_pretrained("rgb-8x")
    with pytest.raises(TypeError, match="name"):
        WallocTransformer.from_pretrained(3)


def test_training_record_names_sources_and_scores():
    record = json.loads(FOLDER.joinpath("TRAINING.json").read_text())
    for name in SHIPPED:
        m = record["models"][name]
        assert not m["quick"] and m["steps_run"] >= 0 and m["fit_seconds"] > 0
        assert m["parameters"]["random_state"] == 0 and m["held_out"]
    for items in record["sources"].values():
        assert items and all(s["licence"] and s["package"] for s in items)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_models_are_quiet(name, capfd):
    # Library calls print nothing (no tqdm bars): the files were saved with
    # verbose=1, and from_pretrained returns verbose=0, like every default.
    codec = WallocCodec.from_pretrained(name)
    assert codec.verbose == 0 and codec.get_params()["verbose"] == 0
    assert WallocTransformer.from_pretrained(name).verbose == 0
    ndim, channels, *_, dtype = SHIPPED[name]
    shape = (2, 40, 56, channels) if ndim == 2 else (2, 3000, channels)
    x = np.random.default_rng(0).integers(0, 100, shape).astype(dtype)
    codec.decompress(codec.compress(x), restore=True)
    codec.score(x)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_spec_of_reads_the_structure_without_building():
    from sklearn_walloc._pretrained import spec_of

    for name, (ndim, channels, levels, latent_dim, dtype) in SHIPPED.items():
        spec = spec_of(name)
        assert (spec["signal_ndim"], spec["in_channels"], spec["levels"]) == (
            ndim,
            channels,
            levels,
        )
        assert spec["latent_dim"] == latent_dim and spec["sample_dtype"] == dtype
        assert WallocCodec.from_pretrained(name).spec_.to_json() == spec
