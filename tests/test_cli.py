"""The ``walloc`` command line, driven through ``main([...])`` in a temporary folder."""

import errno
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image
from scipy.io import wavfile

from sklearn_walloc import _cli_models, _signal, cli
from sklearn_walloc._pretrained import default_for, list_pretrained, spec_of
from sklearn_walloc.cli import main, pack_file, unpack_file
from sklearn_walloc.codec import WallocCodec
from sklearn_walloc.metrics import psnr, snr
from sklearn_walloc.transformer import WallocTransformer

FIT = ["--max-iter", "0", "--levels", "2", "--decoder-width", "8", "-q"]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # Smaller fixed decoding chunks: one small file costs a whole chunk.
    monkeypatch.setattr(_signal, "_CHUNK_SCALARS", 2**14)


def _decompress(model, src, out):
    """``walloc decompress -m model src -o out -q``; its exit status."""
    return main(["decompress", "-m", str(model), str(src), "-o", str(out), "-q"])


@pytest.fixture
def files(tmp_path, small_photos):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name, p in zip("abc", small_photos):
        Image.fromarray(p[:45, :61]).save(imgs / f"{name}.png")
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(1500) / 16000
    for i in range(2):
        x = np.stack([np.sin(2 * np.pi * (300 + 90 * i) * t), np.cos(900 * t)], -1)
        x = (x * 8000 + rng.normal(0, 300, x.shape)).astype(np.int16)
        wavfile.write(wavs / f"s{i}.wav", 16000 + 6050 * i, x)
    return tmp_path


@pytest.fixture
def image_model(files):
    model = files / "model.npz"
    assert main(["fit", str(files / "imgs"), "-o", str(model), *FIT]) == 0
    return model


def _no_temp_files(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_fit_compress_decompress_images(files, image_model, capsys):
    imgs = files / "imgs"
    assert main(["compress", "-m", str(image_model), str(imgs), "-q"]) == 0
    assert sorted(p.name for p in imgs.glob("*.wlc")) == [
        "a.png.wlc",
        "b.png.wlc",
        "c.png.wlc",
    ]
    out = files / "out"
    assert main(["decompress", "-m", str(image_model), str(imgs), "-o", str(out)]) == 0
    assert "a.png.wlc" in capsys.readouterr().out
    codec = WallocCodec.load(image_model)
    for name in "abc":
        x = np.asarray(Image.open(imgs / f"{name}.png"))
        y = np.asarray(Image.open(out / f"{name}.png.walloc.png"))
        assert y.shape == x.shape == (45, 61, 3) and y.dtype == np.uint8
        # The files hold exactly what the Python API gives.
        blob, meta = unpack_file((imgs / f"{name}.png.wlc").read_bytes())
        assert meta == {
            "media": "image",
            "format": "PNG",
            "mode": "RGB",
            "name": f"{name}.png",
        }
        assert np.array_equal(y, codec.decompress([blob], restore=True)[0])
        assert codec.compress([x]) == [blob]
        assert psnr(x, y) > 20
    assert _no_temp_files(files)


def test_never_overwrites_without_force(files, image_model, capsys):
    imgs = files / "imgs"
    a = str(imgs / "a.png")
    assert main(["compress", "-m", str(image_model), a, "-q"]) == 0
    wlc = imgs / "a.png.wlc"
    wlc.write_bytes(b"keep me")
    assert main(["compress", "-m", str(image_model), a, "-q"]) == 1
    assert "--force" in capsys.readouterr().err
    assert wlc.read_bytes() == b"keep me"
    assert main(["compress", "-m", str(image_model), a, "-q", "--force"]) == 0
    assert wlc.read_bytes()[:4] == b"WLCF"
    # decompress next to the .wlc never targets the original a.png.
    before = (imgs / "a.png").read_bytes()
    for force in ([], ["--force"], ["--force"]):
        assert main(["decompress", "-m", str(image_model), str(wlc), "-q", *force]) == 0
        assert (imgs / "a.png").read_bytes() == before
    assert (imgs / "a.png.walloc.png").exists()
    # Without --force the decoded file is not replaced either.
    assert main(["decompress", "-m", str(image_model), str(wlc), "-q"]) == 1
    assert "--force" in capsys.readouterr().err
    # fit refuses to replace a model.
    assert main(["fit", str(imgs / "b.png"), "-o", str(image_model), *FIT]) == 1
    assert _no_temp_files(files)


def test_round_trip_in_the_folder_of_the_originals(files, capsys):
    # Shipped models, no -o, every file in one folder: the originals stay
    # byte for byte, with and without --force, run after run.
    imgs, wavs = files / "imgs", files / "wavs"
    originals = {p: p.read_bytes() for p in [*imgs.iterdir(), *wavs.iterdir()]}
    for force in ([], ["--force"]):
        assert main(["compress", str(imgs), str(wavs), "-q", *force]) == 0
        wlcs = [*imgs.glob("*.wlc"), *wavs.glob("*.wlc")]
        assert main(["decompress", *map(str, wlcs), "-q", *force]) == 0
        assert {p: p.read_bytes() for p in originals} == originals
    assert sorted(p.name for p in imgs.iterdir() if ".walloc." in p.name) == [
        "a.png.walloc.png",
        "b.png.walloc.png",
        "c.png.walloc.png",
    ]
    assert (wavs / "s0.wav.walloc.wav").exists()


def test_no_command_writes_over_its_inputs(files, image_model, capsys):
    imgs = files / "imgs"
    a = imgs / "a.png"
    before = a.read_bytes()
    # A decoded file that is named like an input: refused even with --force.
    assert main(["compress", "-m", str(image_model), str(a), "-q"]) == 0
    wlc = imgs / "a.png.wlc"
    twin = imgs / "a.wlc"  # decodes to a.walloc.png ...
    twin.write_bytes(wlc.read_bytes())
    taken = imgs / "a.walloc.png"  # ... which is also given as an input
    taken.write_bytes(wlc.read_bytes())
    code = main(
        ["decompress", "-m", str(image_model), str(twin), str(taken), "--force"]
    )
    assert code == 1
    (line,) = _one_error_line_per(capsys.readouterr().err, "a.walloc.png")
    assert "inputs" in line and "even with --force" in line
    # fit: the model file may not be one of the photos.
    code = main(["fit", str(imgs), "-o", str(a), "--force", *FIT])
    assert code == 1 and "inputs" in capsys.readouterr().err
    # compress: the model file may not be an output.
    model = imgs / "m.png.wlc"
    model.write_bytes(image_model.read_bytes())
    Image.open(a).save(imgs / "m.png")
    code = main(["compress", "-m", str(model), str(imgs / "m.png"), "--force"])
    assert code == 1 and "inputs" in capsys.readouterr().err
    assert a.read_bytes() == before and model.read_bytes() == image_model.read_bytes()


def test_same_stem_of_two_audio_formats_do_not_collide(files, capsys):
    import soundfile as sf

    rate = 22050
    t = np.arange(rate // 2) / rate
    # A quiet tone: lossy decoders overshoot, and MP3's floats must stay in [-1, 1]
    x = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.cos(2 * np.pi * 300 * t)], -1)
    song = files / "song"
    song.mkdir()
    sf.write(song / "song.ogg", x, rate, format="OGG", subtype="VORBIS")
    try:  # libsndfile >= 1.1 writes MP3; older ones do not
        sf.write(song / "song.mp3", x, rate, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):
        sf.write(song / "song.flac", x, rate)  # stand-in: still not a WAV
        (song / "song.flac").rename(song / "song.mp3")
    sf.write(song / "song.wav", x, rate)  # the name both used to map to
    before = (song / "song.wav").read_bytes()
    sources = [str(song / "song.ogg"), str(song / "song.mp3")]
    assert main(["compress", *sources, "-q"]) == 0
    wlcs = [str(song / "song.ogg.wlc"), str(song / "song.mp3.wlc")]
    assert main(["decompress", *wlcs, "-q"]) == 0
    assert (song / "song.wav").read_bytes() == before
    for ext in ("ogg", "mp3"):
        info = sf.info(song / f"song.{ext}.walloc.wav")
        assert info.frames == sf.info(song / f"song.{ext}").frames
        assert info.channels == 2 and info.samplerate == rate


def test_corrupt_and_foreign_files_fail_cleanly(files, image_model, capsys):
    imgs = files / "imgs"
    assert main(["compress", "-m", str(image_model), str(imgs), "-q"]) == 0
    data = bytearray((imgs / "b.png.wlc").read_bytes())
    data[-10] ^= 0x40
    (imgs / "b.png.wlc").write_bytes(bytes(data))
    (imgs / "c.png.wlc").write_bytes(b"garbage")
    out = files / "out"
    code = main(["decompress", "-m", str(image_model), str(imgs), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "b.png.wlc" in err and "checksum" in err and "c.png.wlc" in err
    # The good file is still decoded; nothing of the bad ones is written.
    assert sorted(p.name for p in out.iterdir()) == ["a.png.walloc.png"]
    # A model fitted on other data refuses these blobs.
    other = files / "other.npz"
    assert (
        main(
            [
                "fit",
                str(imgs / "a.png"),
                "-o",
                str(other),
                "--levels",
                "1",
                "--max-iter",
                "0",
                "-q",
            ]
        )
        == 0
    )
    code = _decompress(other, imgs / "a.png.wlc", files / "out2")
    assert code == 1 and "another model" in capsys.readouterr().err
    assert _no_temp_files(files)


def test_bad_inputs_give_messages_and_exit_codes(files, image_model, capsys):
    bad = files / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["compress", "-m", str(image_model), str(bad), "-q"]) == 1
    assert "bad.png" in capsys.readouterr().err
    assert not (files / "bad.png.wlc").exists()
    gray = files / "gray.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(gray)
    assert main(["compress", "-m", str(image_model), str(gray), "-q"]) == 1
    assert "channel" in capsys.readouterr().err
    assert main(["compress", "-m", str(files / "missing.npz"), str(gray)]) == 1
    assert main(["compress", "-m", str(bad), str(gray)]) == 1
    assert "model" in capsys.readouterr().err
    assert main(["compress", "-m", str(image_model), str(files / "nope.png")]) == 1
    assert (
        main(
            [
                "fit",
                str(files / "imgs"),
                str(files / "wavs"),
                "-o",
                str(files / "m.npz"),
                "-q",
            ]
        )
        == 1
    )
    assert "images and audio" in capsys.readouterr().err
    assert (
        main(["fit", str(files / "imgs"), str(gray), "-o", str(files / "m.npz"), "-q"])
        == 1
    )
    assert "channel" in capsys.readouterr().err
    assert main(["info", str(bad)]) == 1
    assert main(["frobnicate"]) == 2
    assert main(["compress"]) == 2
    assert main(["--help"]) == 0
    assert _no_temp_files(files)


def test_failed_write_leaves_nothing(files, image_model, monkeypatch, capsys):
    imgs = files / "imgs"
    assert main(["compress", "-m", str(image_model), str(imgs / "a.png"), "-q"]) == 0

    def broken(tmp, signal, meta, fmt, quality):
        with open(tmp, "wb") as f:
            f.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(cli, "write_signal", broken)
    out = files / "out"
    code = _decompress(image_model, imgs / "a.png.wlc", out)
    assert code == 1 and "disk full" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_audio_fit_compress_decompress_keeps_rate_and_shape(files):
    wavs = files / "wavs"
    model = files / "audio.npz"
    assert main(["fit", str(wavs), "-o", str(model), *FIT]) == 0
    codec = WallocCodec.load(model)
    assert codec.signal_ndim == 1 and codec.n_channels_ == 2
    assert codec.latent_dim == 2  # 2 channels * 2**2 bands / 4x default reduction
    assert (
        main(["compress", "-m", str(model), str(wavs), "-o", str(files / "c"), "-q"])
        == 0
    )
    assert _decompress(model, files / "c", files / "d") == 0
    for i in range(2):
        rate, x = wavfile.read(wavs / f"s{i}.wav")
        rate2, y = wavfile.read(files / "d" / f"s{i}.wav.walloc.wav")
        assert rate2 == rate == 16000 + 6050 * i
        assert y.shape == x.shape and y.dtype == np.int16


def test_mono_wav_and_grayscale_keep_their_rank(files):
    mono = files / "mono"
    mono.mkdir()
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(999).cumsum() * 100).astype(np.int16)
    wavfile.write(mono / "m.wav", 8000, x)
    model = files / "mono.npz"
    assert (
        main(["fit", str(mono / "m.wav"), "-o", str(model), "--latent-dim", "1", *FIT])
        == 0
    )
    assert main(["compress", "-m", str(model), str(mono / "m.wav"), "-q"]) == 0
    assert _decompress(model, mono / "m.wav.wlc", files / "md") == 0
    rate, y = wavfile.read(files / "md" / "m.wav.walloc.wav")
    assert rate == 8000 and y.shape == (999,) and y.dtype == np.int16
    gray = files / "gray.png"
    g = np.add.outer(np.arange(37), np.arange(29)).astype(np.uint8) * 3
    Image.fromarray(g).save(gray)
    model = files / "gray.npz"
    assert main(["fit", str(gray), "-o", str(model), *FIT]) == 0
    assert main(["compress", "-m", str(model), str(gray), "-q"]) == 0
    assert _decompress(model, files / "gray.png.wlc", files / "gd") == 0
    img = Image.open(files / "gd" / "gray.png.walloc.png")
    assert img.mode == "L" and np.asarray(img).shape == (37, 29)


def test_info_on_files_and_models(files, image_model, capsys):
    imgs = files / "imgs"
    assert main(["compress", "-m", str(image_model), str(imgs / "a.png"), "-q"]) == 0
    capsys.readouterr()
    wlc = imgs / "a.png.wlc"
    assert (
        main(["info", "--json", "-m", str(image_model), str(wlc), str(image_model)])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    blob, model = map(json.loads, lines)
    assert blob["signal_shape"] == [45, 61, 3] and blob["dtype"] == "uint8"
    assert blob["made_by_model"] is True and blob["metadata"]["name"] == "a.png"
    assert blob["file_bytes"] == wlc.stat().st_size
    assert model["class"] == "WallocCodec" and model["dimensionality_reduction"] == 16
    assert model["fingerprint"] == blob["fingerprint"]
    assert main(["info", str(wlc)]) == 0
    assert "signal_shape" in capsys.readouterr().out
    # A bare blob (from the Python API) is understood too.
    bare = files / "bare.bin"
    bare.write_bytes(unpack_file(wlc.read_bytes())[0])
    assert main(["info", str(bare)]) == 0


def test_transformer_model_files_work_as_codecs(files, small_photos):
    t = WallocTransformer(
        latent_dim=6, levels=2, max_iter=0, decoder_width=0, random_state=0
    ).fit(small_photos)
    t.save(files / "t.npz")
    imgs = files / "imgs"
    assert (
        main(["compress", "-m", str(files / "t.npz"), str(imgs / "a.png"), "-q"]) == 0
    )
    assert _decompress(files / "t.npz", imgs / "a.png.wlc", files / "o") == 0
    assert (files / "o" / "a.png.walloc.png").exists()


def test_file_container_is_strict():
    blob = b"WLOC" + b"\0" * 60
    meta = {"media": "audio", "sample_rate": 44100}
    data = pack_file(blob, meta)
    assert unpack_file(data) == (blob, meta)
    assert unpack_file(blob) == (blob, {})
    for bad in (
        data[:10],
        b"XXXX" + data[4:],
        data[:14] + b"#" + data[15:],
        data[:4] + b"\x02" + data[5:],
        b"",
    ):
        with pytest.raises(ValueError):
            unpack_file(bad)


def test_demo_runs_on_small_photos(tmp_path, small_photos, monkeypatch, capsys):
    import sklearn_walloc.datasets as datasets

    def fake(names=None, *, split=None, return_names=False):
        photos = small_photos[:3] if split == "fit" else small_photos[3:]
        names = [f"p{i}" for i in range(len(photos))]
        return (photos, names) if return_names else photos

    monkeypatch.setattr(datasets, "load_photos", fake)
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "16x" in text and "PSNR" in text and "bits per pixel" in text
    side = np.asarray(Image.open(out / "p0_original_vs_walloc.png"))
    assert side.shape == (64, 2 * 80 + 8, 3)


def test_python_dash_m_runs():
    r = subprocess.run(
        [sys.executable, "-m", "sklearn_walloc.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "decompress" in r.stdout


# ------------------------------------------------------- errors without tracebacks
def _one_error_line_per(err, *names):
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert all(line.startswith("walloc: error: ") for line in lines), err
    for name in names:
        assert sum(name in line for line in lines) == 1, (name, err)
    return lines


def test_bad_model_files_give_one_line(files, capsys):
    imgs = files / "imgs"
    empty = files / "empty.npz"
    empty.write_bytes(b"")
    npy = files / "weights.npy"
    np.save(npy, np.zeros(3))
    junk = files / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    for model, reason in ((empty, "empty"), (npy, ".npy"), (junk, "model file")):
        for cmd in ("compress", "decompress", "info"):
            assert main([cmd, "-m", str(model), str(imgs / "a.png")]) == 1
            err = capsys.readouterr().err
            (line,) = _one_error_line_per(err, model.name)
            assert reason in line
    assert main(["info", str(empty), str(npy), str(junk)]) == 1
    _one_error_line_per(capsys.readouterr().err, "empty", "weights", "junk")


def test_output_folder_that_is_a_file(files, image_model, capsys):
    imgs = files / "imgs"
    assert main(["compress", "-m", str(image_model), str(imgs / "a.png"), "-q"]) == 0
    taken = files / "taken.txt"
    taken.write_text("mine")
    for cmd, src in (("compress", imgs / "a.png"), ("decompress", imgs / "a.png.wlc")):
        assert main([cmd, "-m", str(image_model), str(src), "-o", str(taken)]) == 1
        (line,) = _one_error_line_per(capsys.readouterr().err, "taken.txt")
        assert "not a folder" in line
    assert taken.read_text() == "mine"


def test_output_that_looks_like_a_file_name(files, image_model, capsys):
    # -o names a folder; "-o out.wlc" (cwebp's habit) must not make one.
    imgs = files / "imgs"
    assert main(["compress", "-m", str(image_model), str(imgs / "a.png"), "-q"]) == 0
    cases = (("compress", imgs / "a.png", "out.wlc"),
             ("decompress", imgs / "a.png.wlc", "out.png"))  # fmt: skip
    for cmd, src, name in cases:
        out = files / name
        assert main([cmd, "-m", str(image_model), str(src), "-o", str(out)]) == 1
        (line,) = _one_error_line_per(capsys.readouterr().err, name)
        assert "names a folder" in line and "file name" in line
        assert not out.exists()
    (files / "kept.wlc").mkdir()  # an existing folder of that name is a folder
    cmd = ["compress", "-m", str(image_model), str(imgs / "a.png"), "-q"]
    assert main([*cmd, "-o", str(files / "kept.wlc")]) == 0
    assert (files / "kept.wlc" / "a.png.wlc").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_read_only_output_folder(files, image_model, monkeypatch, capsys):
    ro = files / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes anyway: refuse as the kernel would
        from sklearn_walloc import _atomic

        def refused(**kw):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(_atomic.tempfile, "mkstemp", refused)
    try:
        code = main(
            ["compress", "-m", str(image_model), str(files / "imgs"), "-o", str(ro)]
        )
        assert code == 1
        lines = _one_error_line_per(capsys.readouterr().err, "a.png", "b.png", "c.png")
        assert all("Permission denied" in line for line in lines)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_full_disk_fails_each_file_cleanly(files, image_model, monkeypatch, capsys):
    from sklearn_walloc import _atomic

    def full(data, tmp):
        with open(tmp, "wb") as f:
            f.write(data[:7])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_atomic, "dump", full)
    out = files / "packed"
    code = main(
        ["compress", "-m", str(image_model), str(files / "imgs"), "-o", str(out), "-q"]
    )
    assert code == 1
    lines = _one_error_line_per(capsys.readouterr().err, "a.png", "b.png", "c.png")
    assert all("No space left on device" in line for line in lines)
    assert list(out.iterdir()) == []


def _wlc_with_meta(files, image_model, meta_text):
    """a.png.wlc with its metadata replaced by ``meta_text`` (valid checksum)."""
    blob, _ = unpack_file((files / "imgs" / "a.png.wlc").read_bytes())
    text = meta_text.encode()
    head = struct.pack("<4sB3sI", b"WLCF", 1, b"\0\0\0", len(text)) + text
    return head + struct.pack("<I", zlib.crc32(head)) + blob


def test_hostile_wlc_files_fail_alone(files, image_model, capsys):
    imgs = files / "imgs"
    assert main(["compress", "-m", str(image_model), str(imgs), "-q"]) == 0
    packed = files / "packed"
    packed.mkdir()
    good = (imgs / "a.png.wlc").read_bytes()
    (packed / "a.png.wlc").write_bytes(good)
    (packed / "rate.wav.wlc").write_bytes(
        _wlc_with_meta(files, image_model, '{"sample_rate":2147483648}')
    )
    (packed / "deep.png.wlc").write_bytes(
        _wlc_with_meta(files, image_model, "[" * 20000 + "]" * 20000)
    )
    (packed / "short.png.wlc").write_bytes(good[: len(good) // 2])
    (packed / "tiny.png.wlc").write_bytes(good[:9])
    out = files / "out"
    code = main(
        ["decompress", "-m", str(image_model), str(packed), "-o", str(out), "-q"]
    )
    assert code == 1
    err = capsys.readouterr().err
    lines = _one_error_line_per(err, "rate.wav", "deep.png", "short.png", "tiny.png")
    assert len(lines) == 4 and "sample_rate" in err and "nested" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png.walloc.png"]
    assert main(["info", str(packed / "deep.png.wlc")]) == 1
    _one_error_line_per(capsys.readouterr().err, "deep.png")


def test_unexpected_errors_are_one_line_and_ctrl_c_exits_130(
    files, image_model, monkeypatch, capsys
):
    real = cli.read_signal

    def flaky(path):
        if path.name == "b.png":
            raise RuntimeError("boom")
        return real(path)

    monkeypatch.setattr(cli, "read_signal", flaky)
    out = files / "packed"
    code = main(
        ["compress", "-m", str(image_model), str(files / "imgs"), "-o", str(out), "-q"]
    )
    assert code == 1
    (line,) = _one_error_line_per(capsys.readouterr().err, "b.png")
    assert "unexpected RuntimeError: boom" in line
    assert sorted(p.name for p in out.iterdir()) == ["a.png.wlc", "c.png.wlc"]

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "read_signal", interrupted)
    code = main(
        [
            "compress",
            "-m",
            str(image_model),
            str(files / "imgs"),
            "-o",
            str(files / "p2"),
            "-q",
        ]
    )
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert _no_temp_files(files)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_a_write_leaves_no_temp_file(files, image_model):
    # A child process writes slowly; SIGTERM arrives mid-write.
    script = (
        "import sys, time\n"
        "from sklearn_walloc import _atomic, cli\n"
        "def slow(data, tmp):\n"
        "    with open(tmp, 'wb') as f:\n"
        "        f.write(data[:5]); f.flush()\n"
        "    time.sleep(120)\n"
        "_atomic.dump = slow\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    out = files / "packed"
    out.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            "compress",
            "-m",
            str(image_model),
            str(files / "imgs" / "a.png"),
            "-o",
            str(out),
            "-q",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_outputs_respect_the_umask(files, image_model):
    old = os.umask(0o027)
    try:
        a = files / "imgs" / "a.png"
        assert main(["compress", "-m", str(image_model), str(a), "-q"]) == 0
        assert _decompress(image_model, str(a) + ".wlc", files / "out") == 0
        model = files / "m2.npz"
        assert main(["fit", str(a), "-o", str(model), *FIT]) == 0
    finally:
        os.umask(old)
    for path in (
        files / "imgs" / "a.png.wlc",
        files / "out" / "a.png.walloc.png",
        model,
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


# ------------------------------------------------------------ formats and media
@pytest.fixture(scope="module")
def srgb():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_jpeg_comes_back_lossless_with_orientation_and_icc(
    files, image_model, srgb, capsys
):
    x = np.asarray(Image.open(files / "imgs" / "a.png"))[:37, :53]
    exif = Image.Exif()
    exif[0x0112] = 6
    jpg = files / "x.jpg"
    Image.fromarray(x).save(jpg, exif=exif.tobytes(), icc_profile=srgb)
    assert main(["compress", "-m", str(image_model), str(jpg), "-q"]) == 0
    wlc = files / "x.jpg.wlc"
    assert main(["decompress", "-m", str(image_model), str(wlc), "-q"]) == 0
    out = files / "x.jpg.walloc.png"  # no second lossy stage
    codec = WallocCodec.load(image_model)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (53, 37)
        assert img.getexif()[0x0112] == 6 and img.info["icc_profile"] == srgb
        y = np.asarray(img)
    blob, _ = unpack_file(wlc.read_bytes())
    assert np.array_equal(y, codec.decompress([blob], restore=True)[0])
    # Lossy formats on request, with a quality.
    sizes = {}
    for q in ("20", "95"):
        folder = files / f"q{q}"
        args = ["decompress", "-m", str(image_model), str(wlc), "-o", str(folder)]
        assert main([*args, "--format", "jpg", "--quality", q, "-q"]) == 0
        with Image.open(folder / "x.jpg.walloc.jpg") as img:
            assert img.format == "JPEG" and img.getexif()[0x0112] == 6
        sizes[q] = (folder / "x.jpg.walloc.jpg").stat().st_size
    assert sizes["20"] < sizes["95"]
    args = ["decompress", "-m", str(image_model), str(wlc), "-o", str(files / "w")]
    assert main([*args, "--format", "webp", "-q"]) == 0
    assert np.array_equal(np.asarray(Image.open(files / "w" / "x.jpg.walloc.webp")), y)
    assert main([*args, "--quality", "50"]) == 1  # png is lossless
    assert main([*args, "--format", "wav"]) == 1  # not an image format
    err = capsys.readouterr().err
    assert "--quality applies to lossy formats" in err and "is for audio" in err


def test_icc_profile_too_large_is_dropped_with_a_warning(
    files, image_model, srgb, monkeypatch, capsys
):
    from sklearn_walloc import _wlc

    x = np.asarray(Image.open(files / "imgs" / "a.png"))
    Image.fromarray(x).save(files / "x.png", icc_profile=srgb)
    monkeypatch.setattr(_wlc, "MAX_META_BYTES", 200)
    assert main(["compress", "-m", str(image_model), str(files / "x.png"), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("walloc: warning: ") and "ICC profile" in err
    assert err.count("\n") == 1
    _, meta = unpack_file((files / "x.png.wlc").read_bytes())
    assert "icc_profile" not in meta and meta["mode"] == "RGB"


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("I;16", lambda g: g.astype(np.uint16) * 257),
        ("RGBA", lambda g: np.dstack([g, 255 - g, g // 2, np.full_like(g, 200)])),
        ("LA", lambda g: np.dstack([g, np.full_like(g, 99)])),
    ],
)
def test_other_image_kinds_round_trip_as_png(files, mode, make):
    g = np.add.outer(np.arange(37), 2 * np.arange(53)).astype(np.uint8)
    folder = files / mode.replace(";", "")
    folder.mkdir()
    for i in range(2):
        Image.fromarray(make(np.roll(g, 5 * i, axis=1))).save(folder / f"{i}.png")
    model = files / "m.npz"
    assert main(["fit", str(folder), "-o", str(model), *FIT]) == 0
    assert main(["compress", "-m", str(model), str(folder / "0.png"), "-q"]) == 0
    out = files / "out"
    wlc = folder / "0.png.wlc"
    assert main(["decompress", "-m", str(model), str(wlc), "-o", str(out), "-q"]) == 0
    decoded = out / "0.png.walloc.png"
    with Image.open(decoded) as img, Image.open(folder / "0.png") as src:
        assert img.mode == src.mode == mode and img.size == (53, 37)
        y, x = np.asarray(img), np.asarray(src)
    assert y.dtype == x.dtype and y.shape == x.shape
    peak = 65535.0 if mode == "I;16" else 255.0
    assert psnr(x, y, data_range=peak) > 20


def test_fit_names_the_file_with_other_channels(files, capsys):
    photos = files / "photos"
    photos.mkdir()
    x = np.asarray(Image.open(files / "imgs" / "a.png"))
    Image.fromarray(x).save(photos / "a.png")
    Image.fromarray(x[..., 0]).save(photos / "b.png")
    Image.fromarray(x).convert("P").save(photos / "c.png")  # palette: read as RGB
    assert main(["fit", str(photos), "-o", str(files / "m.npz"), *FIT]) == 1
    (line,) = _one_error_line_per(capsys.readouterr().err, "b.png")
    assert f"{photos / 'b.png'} has 1 channel(s), but {photos / 'a.png'} has 3" in line
    assert not (files / "m.npz").exists()


def _audio_folder(files, name, subtype, ext, rate=16000):
    import soundfile as sf

    folder = files / name
    folder.mkdir()
    t = np.arange(2000) / rate
    for i in range(2):
        x = 0.4 * np.stack([np.sin(2 * np.pi * (300 + 50 * i) * t), np.cos(900 * t)], 1)
        sf.write(folder / f"s{i}.{ext}", x, rate, subtype=subtype)
    return folder


@pytest.mark.parametrize(
    ("subtype", "ext", "out_ext", "dtype"),
    [
        ("PCM_16", "flac", "flac", "int16"),
        ("PCM_24", "wav", "wav", "int32"),
        ("PCM_24", "flac", "flac", "int32"),
        ("FLOAT", "wav", "wav", "float32"),
        ("VORBIS", "ogg", "wav", "float32"),
    ],
)
def test_audio_formats_round_trip_in_their_sample_type(
    files, subtype, ext, out_ext, dtype
):
    import soundfile as sf

    folder = _audio_folder(files, "snd", subtype, ext)
    model = files / "m.npz"
    assert main(["fit", str(folder), "-o", str(model), *FIT]) == 0
    assert (
        main(["compress", "-m", str(model), str(folder), "-o", str(files / "c")]) == 0
    )
    assert _decompress(model, files / "c", files / "d") == 0
    for i in range(2):
        src = sf.info(folder / f"s{i}.{ext}")
        out = files / "d" / f"s{i}.{ext}.walloc.{out_ext}"
        info = sf.info(out)
        expected = "FLOAT" if subtype == "VORBIS" else subtype
        assert (info.subtype, info.samplerate, info.frames, info.channels) == (
            expected,
            16000,
            src.frames,
            2,
        )
        x, _ = sf.read(folder / f"s{i}.{ext}", dtype=dtype)
        y, _ = sf.read(out, dtype=dtype)
        peak = float(np.abs(x).max())
        assert peak > 0 and snr(x, y) > 10


def test_compress_reports_bpp_bits_per_sample_and_ratio(files, image_model, capsys):
    a = files / "imgs" / "a.png"
    assert main(["compress", "-m", str(image_model), str(a)]) == 0
    line = capsys.readouterr().out.strip()
    n = (files / "imgs" / "a.png.wlc").stat().st_size
    bpp = 8 * n / (45 * 61)
    ratio = a.stat().st_size / n
    assert line == (
        f"{a} -> {a}.wlc: {n} bytes, {bpp:.3g} bpp, {ratio:.3g}x smaller than a.png"
    )
    wavs = files / "wavs"
    model = files / "audio.npz"
    assert main(["fit", str(wavs), "-o", str(model), *FIT]) == 0
    assert main(["compress", "-m", str(model), str(wavs / "s0.wav")]) == 0
    line = capsys.readouterr().out.strip()
    n = (wavs / "s0.wav.wlc").stat().st_size
    assert f"{8 * n / 3000:.3g} bits/sample" in line  # 1500 frames x 2 channels
    assert f"{8 * n / (1500 / 16000) / 1000:.3g} kbit/s" in line
    assert "x smaller than s0.wav" in line


def test_version_device_and_max_values(files, image_model, capsys):
    import sklearn_walloc

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"walloc {sklearn_walloc.__version__}"
    a = files / "imgs" / "a.png"
    assert (
        main(["compress", "-m", str(image_model), str(a), "--device", "cpu", "-q"]) == 0
    )
    assert main(["compress", "-m", str(image_model), str(a), "--device", "tpu"]) == 1
    assert "--device" in capsys.readouterr().err
    wlc = str(a) + ".wlc"
    args = ["decompress", "-m", str(image_model), wlc, "-o", str(files / "o"), "-q"]
    assert main([*args, "--max-values", str(45 * 61 * 3 - 1)]) == 1
    err = capsys.readouterr().err
    assert "--max-values" in err and not (files / "o" / "a.png.walloc.png").exists()
    assert main([*args, "--max-values", str(45 * 61 * 3), "--device", "cpu"]) == 0
    assert main([*args, "--max-values", "0"]) == 2


def test_24_bit_file_through_a_16_bit_model(files):
    import soundfile as sf

    model = files / "m16.npz"
    assert (
        main(
            [
                "fit",
                str(_audio_folder(files, "a16", "PCM_16", "wav")),
                "-o",
                str(model),
                *FIT,
            ]
        )
        == 0
    )
    src = _audio_folder(files, "a24", "PCM_24", "wav")
    assert (
        main(
            [
                "compress",
                "-m",
                str(model),
                str(src / "s0.wav"),
                "-o",
                str(files / "c"),
                "-q",
            ]
        )
        == 0
    )
    assert _decompress(model, files / "c", files / "d") == 0
    assert sf.info(files / "d" / "s0.wav.walloc.wav").subtype == "PCM_24"
    x, _ = sf.read(src / "s0.wav")
    y, _ = sf.read(files / "d" / "s0.wav.walloc.wav")
    assert snr(x, y) > 10


def test_8_bit_image_through_a_16_bit_model(files):
    g = np.add.outer(np.arange(37), 2 * np.arange(53)).astype(np.uint8)
    Image.fromarray(g.astype(np.uint16) * 257).save(files / "g16.png")
    Image.fromarray(g).save(files / "g8.png")
    model = files / "m.npz"
    assert main(["fit", str(files / "g16.png"), "-o", str(model), *FIT]) == 0
    assert main(["compress", "-m", str(model), str(files / "g8.png"), "-q"]) == 0
    out = files / "out"
    assert _decompress(model, files / "g8.png.wlc", out) == 0
    with Image.open(out / "g8.png.walloc.png") as img:
        assert img.mode == "L"
        y = np.asarray(img).astype(float)
    assert psnr(g, y) > 20


def test_fit_and_info_say_what_training_did(files, capsys):
    model = files / "trained.npz"
    args = ["fit", str(files / "imgs"), "-o", str(model), "--levels", "2"]
    args += ["--decoder-width", "8", "--decoder-depth", "1", "--crop-size", "16"]
    assert main([*args, "--max-iter", "20"]) == 0
    out = capsys.readouterr().out
    codec = WallocCodec.load(model)
    line = next(s for s in out.splitlines() if "training step" in s)
    assert line.startswith("20 training step(s)")
    if codec.n_iter_kept_ == 0:
        assert "none kept: the closed form validated best" in line
    else:
        assert f"kept step {codec.n_iter_kept_}: " in line
        assert f"{codec.validation_gain_:+.3f} dB on validation" in line
    assert main(["info", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    summary = info[0] if isinstance(info, list) else info
    assert summary["training_steps"] == 20
    assert summary["training_steps_kept"] == codec.n_iter_kept_
    assert summary["validation_gain_db"] == codec.validation_gain_
    closed = files / "closed.npz"
    assert main([*args, "-o", str(closed), "--max-iter", "0"]) == 0
    assert "closed form (no training steps)" in capsys.readouterr().out


def test_pretrained_models_without_m(files, capsys):
    # RGB images -> rgb-16x, stereo audio -> stereo-5x; decompress finds the
    # model from the fingerprint in each file.
    imgs, wavs = files / "imgs", files / "wavs"
    assert main(["compress", str(imgs / "a.png"), str(wavs / "s0.wav"), "-q"]) == 0
    out = files / "out"
    assert main(["decompress", str(imgs / "a.png.wlc"), "-o", str(out), "-q"]) == 0
    assert main(["decompress", str(wavs / "s0.wav.wlc"), "-o", str(out), "-q"]) == 0
    x = np.asarray(Image.open(imgs / "a.png"))
    y = np.asarray(Image.open(out / "a.png.walloc.png"))
    assert y.shape == x.shape and np.mean((y.astype(float) - x) ** 2) < 30**2
    rate, a = wavfile.read(out / "s0.wav.walloc.wav")
    assert rate == 16000 and a.shape == (1500, 2)
    # A grey image goes through a shipped 1-channel image model, if any.
    Image.fromarray(x[..., 0]).save(imgs / "grey.png")
    grey = default_for(2, 1)
    assert main(["compress", str(imgs / "grey.png"), "-q"]) == (grey is None)
    if grey is not None:
        wlc = str(imgs / "grey.png.wlc")
        assert main(["decompress", wlc, "-o", str(out), "-q"]) == 0
        assert np.asarray(Image.open(out / "grey.png.walloc.png")).shape == x.shape[:2]
    # Six channels of audio have no shipped model: one line naming what to do.
    six = files / "six.wav"
    wavfile.write(six, 8000, np.zeros((800, 6), np.int16))
    assert main(["compress", str(six), "-q"]) == 1
    err = capsys.readouterr().err
    assert "6 channel(s)" in err and "-m" in err and "rgb-16x" in err
    # A file made by a fitted model is not a pretrained model's.
    model = files / "model.npz"
    assert main(["fit", str(imgs / "b.png"), "-o", str(model), *FIT]) == 0
    assert main(["compress", "-m", str(model), str(imgs / "c.png"), "-q"]) == 0
    assert main(["decompress", str(imgs / "c.png.wlc"), "-o", str(out), "-q"]) == 1
    assert "pretrained" in capsys.readouterr().err


def test_enhanced_blobs_of_rgb_16x_are_found_without_m(files, capsys):
    # A high rate target codes rgb-16x's enhancement channels (format 5,
    # fingerprinted with them): decompress still finds the model.
    imgs, out = files / "imgs", files / "out_enhanced"
    src = imgs / "a.png"
    assert main(["compress", "-m", "rgb-16x", str(src), "--bpp", "3", "-q", "-f"]) == 0
    wlc = imgs / "a.png.wlc"
    assert main(["info", str(wlc), "-m", "rgb-16x", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    info = info[0] if isinstance(info, list) else info
    assert info["format_version"] == 5 and info["latent_shape"][0] > 12
    assert info["made_by_model"] is True
    assert main(["decompress", str(wlc), "-o", str(out), "-q"]) == 0
    x = np.asarray(Image.open(src)).astype(float)
    y = np.asarray(Image.open(out / "a.png.walloc.png")).astype(float)
    assert psnr(x, y) > 20


def test_fit_passes_the_training_recipe_options(files):
    model = files / "decoder_only.npz"
    args = ["fit", str(files / "imgs"), "-o", str(model), "--levels", "2", "-q"]
    args += ["--decoder-width", "8", "--decoder-depth", "1", "--crop-size", "16"]
    args += ["--max-iter", "5", "--decoder-only", "--learning-rate", "0.001"]
    assert main([*args, "--n-iter-no-change", "7"]) == 0
    params = WallocCodec.load(model).get_params()
    assert params["train_encoder"] is False
    assert params["learning_rate"] == 0.001 and params["n_iter_no_change"] == 7
    assert main([*args, "--learning-rate", "0"]) == 2


# ------------------------------------------------------------ shipped models
def _signal_for(spec, rng):
    """A small random signal that a shipped model of this spec codes."""
    dtype = np.dtype(spec["sample_dtype"])
    info = np.iinfo(dtype)
    if spec["signal_ndim"] == 2:
        shape = (40, 56, spec["in_channels"])
    else:
        shape = (3000, spec["in_channels"])
    x = rng.integers(info.min // 8, info.max // 8, shape).astype(dtype)
    return x[..., 0] if spec["in_channels"] == 1 else x


def test_every_shipped_model_is_found_from_its_fingerprint():
    # Generic over list_pretrained(): a model shipped later is covered too.
    rng = np.random.default_rng(0)
    found = _cli_models.Pretrained(None)
    for name in list_pretrained():
        codec = WallocCodec.from_pretrained(name)
        (blob,) = codec.compress([_signal_for(spec_of(name), rng)])
        assert found.for_blob(blob).fingerprint() == codec.fingerprint(), name
    # Each blob costs at most the models of its structure, loaded once each.
    assert set(found.codecs) <= set(list_pretrained())


def test_default_model_for_each_kind_of_signal():
    assert default_for(2, 3) == "rgb-16x"
    assert (default_for(1, 2), default_for(1, 1)) == ("stereo-5x", "mono-5x")
    assert default_for(1, 6) is None and default_for(2, 5) is None
    for name in list_pretrained():  # every shipped kind has a default
        spec = spec_of(name)
        chosen = spec_of(default_for(spec["signal_ndim"], spec["in_channels"]))
        assert chosen["in_channels"] == spec["in_channels"]
        assert chosen["signal_ndim"] == spec["signal_ndim"]


def test_shipped_models_by_name_everywhere(files, capsys):
    imgs = files / "imgs"
    a = imgs / "a.png"
    assert main(["compress", "-m", "rgb-4x", str(a), "-q"]) == 0
    wlc = imgs / "a.png.wlc"
    info = _cli_models.blob_info(unpack_file(wlc.read_bytes())[0])
    assert info["levels"] == 2  # rgb-4x, not rgb-16x
    out = files / "out"
    assert main(["decompress", "-m", "rgb-4x", str(wlc), "-o", str(out), "-q"]) == 0
    # ... and found without -m.
    assert main(["decompress", str(wlc), "-q"]) == 0
    y = np.asarray(Image.open(imgs / "a.png.walloc.png"))
    assert np.array_equal(y, np.asarray(Image.open(out / "a.png.walloc.png")))
    assert main(["info", "--json", "-m", "rgb-4x", str(wlc), "rgb-4x"]) == 0
    blob, model = map(json.loads, capsys.readouterr().out.splitlines())
    assert blob["made_by_model"] is True and model["levels"] == 2
    assert model["shipped"] is True and model["fingerprint"] == blob["fingerprint"]
    assert main(["info", "-m", "rgb-16x", str(wlc)]) == 0
    assert "made_by_model: False" in capsys.readouterr().out
    # An unknown name lists the shipped ones.
    assert main(["compress", "-m", "rgb-8x", str(a)]) == 1
    assert "rgb-4x" in capsys.readouterr().err


def test_light_blob_info_equals_the_codecs(files, image_model):
    from sklearn_walloc.codec import blob_info

    assert main(["compress", "-m", str(image_model), str(files / "imgs"), "-q"]) == 0
    blob, _ = unpack_file((files / "imgs" / "a.png.wlc").read_bytes())
    assert _cli_models.blob_info(blob) == blob_info(blob)


# ---------------------------------------------------------- start-up and noise
def _python(code, *args, **kw):
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def test_parser_help_and_info_of_a_blob_do_not_import_torch(files, image_model):
    assert main(["compress", "-m", str(image_model), str(files / "imgs"), "-q"]) == 0
    code = (
        "import sys\n"
        "from sklearn_walloc import cli\n"
        "cli._build_parser()\n"
        "assert cli.main(['info', sys.argv[1]]) == 0\n"
        "assert cli.main(['compress', '--quality', '3']) == 2\n"
        "for cmd in ('compress', 'decompress'):\n"
        "    # -o naming a file is an argument error: refused before any model\n"
        "    assert cli.main([cmd, sys.argv[1], '-o', 'out.wlc']) == 1\n"
        "heavy = [m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    r = _python(code, files / "imgs" / "a.png.wlc")
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout and "signal_shape" in r.stdout


@pytest.mark.parametrize("module", ["numpy", "torch"])
def test_ctrl_c_while_importing_is_one_line_and_130(files, module):
    # KeyboardInterrupt raised by an import, as Ctrl-C during start-up: numpy
    # is first imported while the parser is built, torch by the command.
    code = (
        "import sys\n"
        "class Stop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "from sklearn_walloc import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    r = _python(code, "compress", "-m", "rgb-16x", files / "imgs" / "a.png")
    assert r.returncode == 130
    assert r.stderr.strip() == "walloc: error: interrupted"
    assert not (files / "imgs" / "a.png.wlc").exists()


def test_quiet_means_no_bars_also_off_a_terminal(files):
    imgs = files / "imgs"
    run = "import sys; from sklearn_walloc import cli; sys.exit(cli.main(sys.argv[1:]))"
    for quiet in (["-q"], []):
        r = _python(
            run,
            "compress",
            imgs,
            "--force",
            *quiet,
        )
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""  # stderr is a pipe: no bars, with or without -q
        assert ("a.png.wlc" in r.stdout) == (not quiet)


def test_fit_checks_the_output_folder_before_fitting(files, monkeypatch, capsys):
    from sklearn_walloc import _atomic

    def never(*args, **kwargs):
        raise AssertionError("fitted before checking the output")

    monkeypatch.setattr(WallocCodec, "fit", never)

    def refused(**kw):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", refused)
    ro = files / "ro" / "deeper"
    code = main(["fit", str(files / "imgs"), "-o", str(ro / "m.npz"), *FIT])
    assert code == 1
    (line,) = _one_error_line_per(capsys.readouterr().err, "deeper")
    assert "Permission denied" in line
    # A folder that cannot be created fails first too.
    blocker = files / "file"
    blocker.write_text("x")
    code = main(["fit", str(files / "imgs"), "-o", str(blocker / "m.npz"), *FIT])
    assert code == 1 and "not a folder" in capsys.readouterr().err
