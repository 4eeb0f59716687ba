"""Reading and writing media (``_media``): sample types and metadata survive."""

import base64

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageCms

from sklearn_walloc._media import (
    default_format,
    output_name,
    read_signal,
    write_signal,
)


@pytest.fixture(scope="module")
def icc():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _write(tmp_path, name, signal, meta, fmt, quality=None):
    path = tmp_path / name
    write_signal(str(path), signal, meta, fmt, quality)
    return path


def test_jpeg_orientation_and_icc_are_read_and_written(tmp_path, rng, icc):
    x = rng.integers(0, 256, (53, 37, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(x).save(tmp_path / "x.jpg", exif=exif.tobytes(), icc_profile=icc)
    arr, meta = read_signal(tmp_path / "x.jpg")
    assert arr.shape == (53, 37, 3) and arr.dtype == np.uint8  # stored, not rotated
    assert meta["format"] == "JPEG" and meta["orientation"] == 6
    assert base64.b64decode(meta["icc_profile"]) == icc
    for fmt in ("png", "tiff", "webp", "jpg"):
        out = _write(tmp_path, f"y.{fmt}", arr, meta, fmt)
        with Image.open(out) as img:
            assert img.info["icc_profile"] == icc, fmt
            if fmt != "tiff":  # Pillow applies a TIFF's orientation when reading
                assert img.getexif()[0x0112] == 6, fmt
                assert img.size == (37, 53)
            else:
                assert img.size == (53, 37)
    with Image.open(_write(tmp_path, "z.png", arr, {}, "png")) as img:
        assert 0x0112 not in img.getexif() and "icc_profile" not in img.info


@pytest.mark.parametrize(
    ("make", "mode", "dtype", "shape", "fmt"),
    [
        (
            lambda g: Image.fromarray(g.astype(np.uint16) * 250),
            "I;16",
            np.uint16,
            (37, 53),
            "png",
        ),
        (lambda g: Image.fromarray(g), "L", np.uint8, (37, 53), "png"),
        (
            lambda g: Image.fromarray(np.dstack([g] * 4)),
            "RGBA",
            np.uint8,
            (37, 53, 4),
            "png",
        ),
        (
            lambda g: Image.fromarray(np.dstack([g, g])),
            "LA",
            np.uint8,
            (37, 53, 2),
            "png",
        ),
        (
            lambda g: Image.fromarray(g.astype(np.float32) / 7),
            "F",
            np.float32,
            (37, 53),
            "tiff",
        ),
        (
            lambda g: Image.fromarray(g.astype(np.int32) - 100),
            "I",
            np.int32,
            (37, 53),
            "tiff",
        ),
    ],
    ids=["16-bit", "grey", "RGBA", "grey+alpha", "float", "int32"],
)
def test_sample_types_survive_read_and_lossless_write(
    tmp_path, rng, make, mode, dtype, shape, fmt
):
    g = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    img = make(g)
    img.save(tmp_path / f"x.{fmt}")
    arr, meta = read_signal(tmp_path / f"x.{fmt}")
    assert meta["mode"] == mode and arr.dtype == dtype and arr.shape == shape
    channels = shape[2] if len(shape) == 3 else 1
    assert default_format("image", meta, arr.dtype, channels) == fmt
    out = _write(tmp_path, f"y.{fmt}", arr, meta, fmt)
    back, _ = read_signal(out)
    assert back.dtype == dtype and np.array_equal(back, arr)


def test_palette_and_bilevel_images_become_plain_arrays(tmp_path, rng):
    x = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(x).convert("P").save(tmp_path / "p.png")
    arr, meta = read_signal(tmp_path / "p.png")
    assert meta["mode"] == "RGB" and arr.shape == (20, 30, 3)
    p = Image.fromarray(x).convert("P")
    p.info["transparency"] = 0
    p.save(tmp_path / "pt.png", transparency=0)
    arr, meta = read_signal(tmp_path / "pt.png")
    assert meta["mode"] == "RGBA" and arr.shape == (20, 30, 4)
    Image.fromarray(x[..., 0] > 128).save(tmp_path / "b.png")
    arr, meta = read_signal(tmp_path / "b.png")
    assert (
        meta["mode"] == "L"
        and arr.dtype == np.uint8
        and set(np.unique(arr))
        <= {
            0,
            255,
        }
    )


def test_formats_refuse_what_they_cannot_hold(rng, tmp_path):
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"jpg cannot hold.*use --format png"):
        write_signal(str(tmp_path / "x"), rgba, {}, "jpg")
    with pytest.raises(ValueError, match=r"png cannot hold.*use --format tiff"):
        write_signal(str(tmp_path / "x"), rgba[..., 0].astype(np.float32), {}, "png")
    with pytest.raises(ValueError, match="from Python"):
        write_signal(str(tmp_path / "x"), rgba.astype(np.float64), {}, "tiff")


def test_lossy_image_formats_take_a_quality(tmp_path, rng):
    x = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    sizes = {
        q: _write(tmp_path, f"q{q}.jpg", x, {}, "jpg", q).stat().st_size
        for q in (10, 95)
    }
    assert sizes[10] < sizes[95]
    lossless = _write(tmp_path, "l.webp", x, {}, "webp")
    assert np.array_equal(np.asarray(Image.open(lossless)), x)
    lossy = _write(tmp_path, "q.webp", x, {}, "webp", 30)
    assert not np.array_equal(np.asarray(Image.open(lossy)), x)


@pytest.mark.parametrize(
    ("subtype", "container", "dtype"),
    [
        ("PCM_16", "WAV", np.int16),
        ("PCM_24", "WAV", np.int32),
        ("PCM_32", "WAV", np.int32),
        ("FLOAT", "WAV", np.float32),
        ("DOUBLE", "WAV", np.float64),
        ("PCM_U8", "WAV", np.int16),
        ("PCM_16", "FLAC", np.int16),
        ("PCM_24", "FLAC", np.int32),
    ],
)
def test_audio_keeps_sample_type_and_subtype(tmp_path, rng, subtype, container, dtype):
    x = np.clip(rng.normal(0, 0.2, (500, 2)), -1, 1)
    ext = container.lower()
    sf.write(tmp_path / f"x.{ext}", x, 22050, subtype=subtype)
    arr, meta = read_signal(tmp_path / f"x.{ext}")
    assert arr.dtype == dtype and arr.shape == (500, 2)
    assert meta == {
        "media": "audio",
        "format": container,
        "subtype": subtype,
        "sample_rate": 22050,
    }
    if subtype == "PCM_24":  # left-justified: the low byte is zero, full scale
        assert np.all(arr % 256 == 0) and np.abs(arr).max() > 2**29
    fmt = default_format("audio", meta, arr.dtype, 2)
    assert fmt == ext
    out = _write(tmp_path, f"y.{ext}", arr, meta, fmt)
    info = sf.info(out)
    assert (info.format, info.subtype, info.samplerate) == (container, subtype, 22050)
    back, _ = read_signal(out)
    assert back.dtype == dtype and np.array_equal(back, arr)


def test_ogg_is_read_as_float_and_written_back_losslessly_as_wav(tmp_path, rng):
    x = np.sin(np.arange(4000) / 9) * 0.3
    sf.write(tmp_path / "x.ogg", x, 16000)
    arr, meta = read_signal(tmp_path / "x.ogg")
    assert arr.dtype == np.float32 and arr.shape == (4000,)
    assert meta["subtype"] == "VORBIS" and meta["format"] == "OGG"
    assert default_format("audio", meta, arr.dtype, 1) == "wav"
    info = sf.info(_write(tmp_path, "y.wav", arr, meta, "wav"))
    assert (info.format, info.subtype) == ("WAV", "FLOAT")
    info = sf.info(_write(tmp_path, "y.ogg", arr, meta, "ogg"))
    assert (info.format, info.subtype) == ("OGG", "VORBIS")
    # A float source asked for as FLAC gets 24-bit integers (FLAC has no float).
    info = sf.info(_write(tmp_path, "y.flac", arr, meta, "flac"))
    assert (info.format, info.subtype) == ("FLAC", "PCM_24")


def test_old_8_bit_wav_signals_are_written_as_8_bit(tmp_path):
    # The first CLI read 8-bit WAV as uint8 (scipy); such .wlc files decode so.
    x = np.array([0, 128, 255, 64], np.uint8)
    out = _write(tmp_path, "y.wav", x, {"sample_rate": 8000}, "wav")
    assert sf.info(out).subtype == "PCM_U8"
    assert np.array_equal(sf.read(out, dtype="int16")[0], (x.astype(int) - 128) * 256)


def test_unreadable_files_give_value_errors(tmp_path):
    for name in ("x.png", "x.wav", "x.flac"):
        (tmp_path / name).write_bytes(b"not media")
        with pytest.raises(ValueError, match="cannot read"):
            read_signal(tmp_path / name)
    with pytest.raises(ValueError, match="unsupported file type"):
        read_signal(tmp_path / "x.txt")


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("x.jpg", "png", "x.png"),
        ("x.png", "png", "x.png"),
        ("x.JPEG", "png", "x.png"),
        ("x.tif", "tiff", "x.tiff"),
        ("x", "png", "x.png"),
        ("photo.v2", "png", "photo.v2.png"),
        ("s.flac", "flac", "s.flac"),
        ("s.ogg", "wav", "s.wav"),
        ("x.png", "jpg", "x.jpg"),
    ],
)
def test_output_name_replaces_a_media_extension(name, fmt, expected):
    assert output_name(name, fmt) == expected
