"""Reading and writing media (``_media``): sample types and metadata survive."""

import base64
import io
import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageCms

from sklearn_walloc._media import (
    check_size,
    default_format,
    output_name,
    read_signal,
    split_alpha,
    write_signal,
)

_PNG_END = b"\0\0\0\0IEND\xaeB`\x82"


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


def _soft_alpha(h, w):
    """A soft-edged disc: 0 outside, 255 inside, a ramp of 6 pixels between."""
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    return np.clip((min(h, w) / 3 - r) * 255 / 6, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_split_off_and_put_back_exactly(tmp_path, rng, mode):
    h, w = 37, 53
    colour = rng.integers(0, 256, (h, w, 3 if mode == "RGBA" else 1), dtype=np.uint8)
    x = np.concatenate([colour, _soft_alpha(h, w)[..., None]], axis=2)
    Image.fromarray(x).save(tmp_path / "x.png")
    arr, meta = read_signal(tmp_path / "x.png")
    assert meta["mode"] == mode and arr.shape == x.shape
    # A model that codes every channel keeps them; any other gets colour alone.
    assert split_alpha(arr, dict(meta), model_channels=x.shape[2]) is arr
    coded = split_alpha(arr, meta)
    assert coded.shape == ((h, w, 3) if mode == "RGBA" else (h, w))
    assert coded.flags.c_contiguous
    with Image.open(io.BytesIO(meta["alpha"])) as plane:
        assert plane.format == "PNG" and plane.mode == "L"
    # Whatever the colour channels become, the alpha plane comes back exactly.
    lossy = np.clip(coded.astype(int) + 3, 0, 255).astype(np.uint8)
    out = _write(tmp_path, "y.png", lossy, meta, "png")
    with Image.open(out) as img:
        assert img.mode == mode
        back = np.asarray(img)
    assert np.array_equal(back[..., -1], x[..., -1])
    assert np.array_equal(back[..., :-1].reshape(lossy.shape), lossy)
    with pytest.raises(ValueError, match="jpg cannot hold"):
        _write(tmp_path, "y.jpg", lossy, meta, "jpg")
    channels = 3 if mode == "RGBA" else 1
    assert default_format("image", meta, np.uint8, channels) == "png"


def test_images_without_alpha_are_not_split(rng):
    x = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    meta = {"media": "image", "mode": "RGB"}
    assert split_alpha(x, meta) is x and "alpha" not in meta


def test_a_bad_alpha_plane_is_refused(tmp_path, rng):
    colour = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    meta = {"media": "image", "mode": "RGBA"}
    split_alpha(np.dstack([colour, colour[..., 0]]), meta)
    with pytest.raises(ValueError, match="invalid alpha section: an 8-bit 9x8"):
        _write(tmp_path, "a.png", colour[:, :1].repeat(9, axis=1), meta, "png")
    for cut in (5, 20, len(meta["alpha"]) // 2):
        bad = dict(meta, alpha=meta["alpha"][:-cut])
        with pytest.raises(ValueError, match="invalid alpha section"):
            _write(tmp_path, "b.png", colour, bad, "png")
    with pytest.raises(ValueError, match="invalid alpha section"):
        _write(tmp_path, "b.png", colour, dict(meta, alpha=b"GIF89a" + _PNG_END), "png")
    with pytest.raises(ValueError, match="cannot put 8-bit alpha back"):
        _write(tmp_path, "c.tiff", colour.astype(np.float32), meta, "tiff")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF", "PNG"])
def test_animations_and_multi_page_files_are_refused(tmp_path, rng, fmt):
    frames = [
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        for _ in range(3)
    ]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"has 3 frames .* its own file"):
        read_signal(path)


def test_jpegs_of_several_images_are_refused(tmp_path, rng):
    views = [
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        for _ in range(2)
    ]
    views[0].save(
        tmp_path / "x.jpg", format="MPO", save_all=True, append_images=views[1:]
    )
    with pytest.raises(ValueError, match=r"a JPEG holding 2 images \(MPO\)"):
        read_signal(tmp_path / "x.jpg")


def _lab_image(rng):
    srgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    return srgb, ImageCms.applyTransform(Image.fromarray(srgb), to_lab)


@pytest.mark.parametrize("embedded", [True, False])
def test_lab_images_become_srgb_without_the_lab_profile(tmp_path, rng, embedded):
    srgb, lab = _lab_image(rng)
    lab_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    lab.save(tmp_path / "x.tiff", **({"icc_profile": lab_icc} if embedded else {}))
    arr, meta = read_signal(tmp_path / "x.tiff")
    assert meta["mode"] == "RGB" and arr.shape == srgb.shape
    assert "icc_profile" not in meta  # sRGB pixels: no Lab profile on them
    assert np.abs(arr.astype(int) - srgb).mean() < 2  # 8-bit Lab rounding
    with Image.open(_write(tmp_path, "y.png", arr, meta, "png")) as img:
        assert img.mode == "RGB" and "icc_profile" not in img.info


def _cmyk_profile(to_rgb, grid=9):
    """A small ICC v2 CMYK printer profile (lut8 tables) whose colours are
    ``to_rgb(c, m, y, k)`` (each in [0, 1]) as sRGB, built here because no
    CMYK profile ships with Pillow."""

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def lut8(n_in, n_out, clut):
        ident = bytes(range(256))
        matrix = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
        head = b"mft1" + bytes(4) + bytes([n_in, n_out, grid, 0]) + matrix
        return head + ident * n_in + bytes(clut) + ident * n_out

    steps = np.linspace(0, 1, grid)
    rgb = np.array([to_rgb(*cmyk) for cmyk in itertools.product(steps, repeat=4)])
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    img = Image.fromarray(np.round(255 * rgb).astype(np.uint8)[None])
    lab = np.asarray(ImageCms.applyTransform(img, to_lab))[0].astype(np.int16)
    # Pillow's LAB holds a and b as signed bytes; lut8 offsets them by 128.
    lab[:, 1:] = lab[:, 1:].astype(np.uint8).view(np.int8).astype(np.int16) + 128
    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    desc = b"CMYK test\0"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(desc)) + desc + bytes(78)),
        (b"wtpt", b"XYZ " + bytes(4) + d50),
        (b"A2B0", lut8(4, 3, lab.astype(np.uint8).ravel())),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table = data = b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", offset + len(data))
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"prtrCMYKLab "
        + bytes(12)
        + b"acsp"
        + bytes(28)  # platform, flags, maker, model, attributes, intent
        + d50
        + bytes(48)  # creator, profile id, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def test_cmyk_with_its_profile_is_converted_by_the_profile(tmp_path, rng):
    # A profile in which cyan ink prints blue (not red's complement): the
    # pixels must follow the profile, not Pillow's naive CMYK formula.
    def swapped(c, m, y, k):
        return [(1 - y) * (1 - k), (1 - m) * (1 - k), (1 - c) * (1 - k)]

    icc = _cmyk_profile(swapped)
    x = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(x).convert("CMYK").save(
        tmp_path / "x.jpg", quality=100, icc_profile=icc
    )
    arr, meta = read_signal(tmp_path / "x.jpg")
    assert meta["mode"] == "RGB" and "icc_profile" not in meta
    # JPEG and the 9-point table round a little; R and B swapped is far away.
    assert np.abs(arr.astype(int) - x[..., ::-1]).mean() < 6
    assert np.abs(arr.astype(int) - x).mean() > 30
    with Image.open(_write(tmp_path, "y.png", arr, meta, "png")) as img:
        assert "icc_profile" not in img.info


def test_cmyk_is_converted_and_a_profile_of_another_space_refused(tmp_path, rng, icc):
    x = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(x).convert("CMYK").save(tmp_path / "x.jpg", quality=100)
    arr, meta = read_signal(tmp_path / "x.jpg")
    assert meta["mode"] == "RGB" and arr.shape == x.shape and "icc_profile" not in meta
    # An RGB profile on CMYK pixels cannot convert them: refused, not guessed.
    Image.fromarray(x).convert("CMYK").save(tmp_path / "y.jpg", icc_profile=icc)
    with pytest.raises(ValueError, match="profile does not describe CMYK"):
        read_signal(tmp_path / "y.jpg")


def test_a_profile_of_another_colour_space_is_never_written(tmp_path, rng, icc):
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png", icc_profile=icc)  # RGB profile
    _, meta = read_signal(tmp_path / "g.png")
    assert "icc_profile" not in meta
    # Nor from metadata that says otherwise (a .wlc file from elsewhere).
    meta = {"icc_profile": base64.b64encode(icc).decode()}
    with Image.open(_write(tmp_path, "h.png", grey, meta, "png")) as img:
        assert "icc_profile" not in img.info
    rgb = np.dstack([grey] * 3)
    with Image.open(_write(tmp_path, "i.png", rgb, meta, "png")) as img:
        assert img.info["icc_profile"] == icc


@pytest.mark.parametrize(
    ("mode", "expected", "dtype"),
    [
        ("1", "L", np.uint8),
        ("I;16", "I;16", np.uint16),
        ("I;16B", "I;16", np.uint16),
        ("I", "I", np.int32),
        ("F", "F", np.float32),
        ("P", "RGB", np.uint8),
        ("PA", "RGBA", np.uint8),
        ("La", "LA", np.uint8),
        ("RGBa", "RGBA", np.uint8),
        ("RGBX", "RGB", np.uint8),
        ("YCbCr", "RGB", np.uint8),
        ("HSV", "RGB", np.uint8),
        ("CMYK", "RGB", np.uint8),
        ("LAB", "RGB", np.uint8),
    ],
)
def test_every_mode_is_converted_or_kept_explicitly(mode, expected, dtype):
    from sklearn_walloc._media import _to_array_mode

    img, got, _ = _to_array_mode(Image.new(mode, (10, 12)), None)
    arr = np.asarray(img)
    assert got == expected and arr.shape[:2] == (12, 10)
    assert arr.astype(dtype).dtype == dtype and img.mode.startswith(expected)


def test_unknown_modes_are_refused():
    from types import SimpleNamespace

    from sklearn_walloc._media import _to_array_mode

    with pytest.raises(ValueError, match="unsupported image mode BGR;24"):
        _to_array_mode(SimpleNamespace(mode="BGR;24", info={}), None)


# ------------------------------------------------- through the command line
DATA = Path(__file__).parent / "data"
MODEL = DATA / "golden_codec_v3_model.npz"  # a small RGB model (uint8)


def _cli(*args):
    from sklearn_walloc.cli import main

    quiet = ["-q"] if args[0] != "info" else []
    return main([*map(str, args), *quiet])


def test_cli_carries_alpha_losslessly(tmp_path, rng, capsys):
    h, w = 40, 36
    colour = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = np.dstack([colour, _soft_alpha(h, w)])
    Image.fromarray(x).save(tmp_path / "x.png")
    assert _cli("compress", "-m", MODEL, tmp_path / "x.png") == 0
    wlc = tmp_path / "x.png.wlc"
    assert wlc.read_bytes()[4] == 2  # version 2: it has a section
    assert _cli("decompress", "-m", MODEL, wlc, "-o", tmp_path / "out") == 0
    (decoded,) = (tmp_path / "out").glob("*.png")  # whatever the naming rule
    with Image.open(decoded) as img:
        assert img.mode == "RGBA"
        back = np.asarray(img)
    assert np.array_equal(back[..., 3], x[..., 3])
    capsys.readouterr()
    assert _cli("info", wlc) == 0
    assert "'alpha': '<" in capsys.readouterr().out


def test_cli_decodes_the_golden_version_2_file(tmp_path):
    wlc = tmp_path / "golden.png.wlc"
    wlc.write_bytes((DATA / "golden_v2_alpha.wlc").read_bytes())
    assert _cli("decompress", "-m", MODEL, wlc, "-o", tmp_path / "out") == 0
    (decoded,) = (tmp_path / "out").glob("*.png")
    with Image.open(decoded) as img:
        assert img.mode == "RGBA" and img.size == (27, 30)
        alpha = np.asarray(img)[..., 3]
    ramp = np.arange(30 * 27).reshape(30, 27) * 255 // (30 * 27 - 1)
    assert np.array_equal(alpha, ramp)


def test_cli_refuses_animations_and_endless_files(tmp_path, rng, capsys):
    frames = [
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        for _ in range(3)
    ]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert _cli("compress", "-m", MODEL, tmp_path / "a.gif") == 1
    assert not (tmp_path / "a.gif.wlc").exists()
    err = capsys.readouterr().err
    assert "a.gif: has 3 frames" in err
    for command in ("info", "decompress"):
        assert _cli(command, "/dev/zero") == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("walloc: error: /dev/zero: ") and "unexpected" not in err


def test_check_size_refuses_what_decompress_would_refuse(rng):
    x = np.zeros((10, 12, 3), np.uint8)
    check_size(x, 360)
    check_size(x, None)  # the decoder's default
    huge = np.broadcast_to(np.uint8(0), (2**14, 2**14, 3))  # no memory behind it
    with pytest.raises(ValueError, match="more than --max-values 134217728"):
        check_size(huge, None)
    with pytest.raises(
        ValueError,
        match=r"360 values \(10x12x3\), more than --max-values 359.*values 360 ",
    ):
        check_size(x, 359)


def test_cli_compress_refuses_what_decompress_would_refuse(tmp_path, rng, capsys):
    # The same limit on both sides: what compress writes, decompress decodes.
    Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
        tmp_path / "x.png"
    )
    assert _cli("compress", "-m", MODEL, tmp_path / "x.png", "--max-values", 4319) == 1
    assert "pass --max-values 4320" in capsys.readouterr().err
    assert not (tmp_path / "x.png.wlc").exists()
    assert _cli("compress", "-m", MODEL, tmp_path / "x.png", "--max-values", 4320) == 0
    wlc = tmp_path / "x.png.wlc"
    out = tmp_path / "out"
    assert _cli("decompress", "-m", MODEL, wlc, "-o", out, "--max-values", 4319) == 1
    assert _cli("decompress", "-m", MODEL, wlc, "-o", out, "--max-values", 4320) == 0


def test_cli_grey_plus_alpha_through_a_grey_model(tmp_path, small_photos):
    # LA: the grey channel goes through a 1-channel model, alpha beside it.
    grey = [np.asarray(Image.fromarray(p).convert("L")) for p in small_photos]
    folder = tmp_path / "fit"
    folder.mkdir()
    for i, g in enumerate(grey):
        Image.fromarray(g).save(folder / f"{i}.png")
    model = tmp_path / "grey.npz"
    fit = ["--max-iter", "0", "--levels", "2", "--decoder-width", "8"]
    assert _cli("fit", folder, "-o", model, *fit) == 0
    h, w = grey[0].shape
    x = np.dstack([grey[0], _soft_alpha(h, w)])
    Image.fromarray(x).save(tmp_path / "la.png")
    assert _cli("compress", "-m", model, tmp_path / "la.png") == 0
    out = tmp_path / "out"
    assert _cli("decompress", "-m", model, tmp_path / "la.png.wlc", "-o", out) == 0
    (decoded,) = out.glob("*.png")
    with Image.open(decoded) as img:
        assert img.mode == "LA"
        assert np.array_equal(np.asarray(img)[..., 1], x[..., 1])


def _png16(a, colour_type):
    """A 16-bit PNG, written by hand: Pillow writes no 16-bit colour."""
    import zlib

    def chunk(tag, data):
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data))
        )

    h, w = a.shape[:2]
    rows = b"".join(b"\0" + a[i].astype(">u2").tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("channels", "colour_type"), [(3, 2), (4, 6), (2, 4)])
def test_16_bit_colour_is_refused_not_truncated(tmp_path, rng, channels, colour_type):
    a = rng.integers(0, 65536, (8, 8, channels)).astype(np.uint16)
    (tmp_path / "x.png").write_bytes(_png16(a, colour_type))
    with pytest.raises(ValueError, match="16 bits per sample, of which Pillow reads"):
        read_signal(tmp_path / "x.png")
    # 16-bit greyscale is read whole.
    (tmp_path / "g.png").write_bytes(_png16(a[..., 0], 0))
    arr, meta = read_signal(tmp_path / "g.png")
    assert meta["mode"] == "I;16" and np.array_equal(arr, a[..., 0])


def test_lossy_audio_overshoot_is_clipped_with_a_warning(tmp_path):
    # MP3/Vorbis decoders overshoot full scale on loud material; the models
    # read floats in [-1, 1], so the reader clips and says how much.
    import soundfile as sf

    t = np.arange(22050) / 22050
    loud = np.clip(1.2 * np.sin(2 * np.pi * 440 * t), -1, 1)  # hard-clipped
    path = tmp_path / "loud.ogg"
    sf.write(str(path), np.stack([loud, loud], 1), 22050, format="OGG")
    data, _ = sf.read(str(path), dtype="float32")
    if np.abs(data).max() <= 1:
        pytest.skip("this Vorbis decoder did not overshoot")
    with pytest.warns(UserWarning, match="clipped to \\[-1, 1\\]"):
        signal, meta = read_signal(path)
    assert np.abs(signal).max() <= 1 and meta["subtype"] == "VORBIS"
