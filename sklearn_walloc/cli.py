"""The ``walloc`` command line: fit, compress, decompress, info, demo.

Run ``walloc --help`` (or ``python -m sklearn_walloc.cli --help``); the user
guide is ``docs/cli.md``. Images are read and written with Pillow, audio with
``scipy.io.wavfile``. Compressed files (``.wlc``) hold one blob of
:class:`~sklearn_walloc.codec.WallocCodec` behind a small file header that keeps
what the blob does not: the sample rate of audio, the image mode and the
original file name (``docs/format.md``, "The .wlc file").

Exit status: 0 on success, 1 when a file could not be read, written or decoded
(every other file is still processed, and nothing half-written is left behind),
2 on a usage error.
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = ["main", "pack_file", "unpack_file"]

PROG = "walloc"
SUFFIX = ".wlc"

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".ppm",
    ".pgm",
    ".pnm",
)
AUDIO_EXTENSIONS = (".wav",)

# ------------------------------------------------------------------ file format
FILE_MAGIC = b"WLCF"
FILE_VERSION = 1
_FILE_HEAD = struct.Struct("<4sB3sI")  # magic, version, reserved (zero), meta length
_FILE_CRC = struct.Struct("<I")
_MAX_META = 1 << 16
_BLOB_MAGIC = b"WLOC"


class CliError(Exception):
    """A problem to report to the user (one line), not a bug."""


def pack_file(blob, meta):
    """Wrap one blob in the ``.wlc`` file header.

    Parameters
    ----------
    blob : bytes
        A blob from :meth:`WallocCodec.compress`.
    meta : dict
        JSON-serialisable metadata (``media``, ``sample_rate``, ``mode``,
        ``name``).

    Returns
    -------
    bytes
    """
    text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(text) > _MAX_META:
        raise ValueError("file metadata too long")
    head = _FILE_HEAD.pack(FILE_MAGIC, FILE_VERSION, b"\0\0\0", len(text)) + text
    return head + _FILE_CRC.pack(zlib.crc32(head)) + bytes(blob)


def unpack_file(data):
    """Split a ``.wlc`` file into (blob, metadata); a bare blob gives ``{}``.

    The blob itself is not checked here (``WallocCodec.decompress`` does).

    Parameters
    ----------
    data : bytes

    Returns
    -------
    blob : bytes
    meta : dict

    Raises
    ------
    ValueError
        If the file header is invalid.
    """
    data = bytes(data)
    if data[:4] == _BLOB_MAGIC:
        return data, {}
    if data[:4] != FILE_MAGIC:
        raise ValueError("not a WaLLoC file (wrong magic)")
    if len(data) < _FILE_HEAD.size + _FILE_CRC.size:
        raise ValueError("truncated WaLLoC file header")
    _, version, reserved, n = _FILE_HEAD.unpack_from(data)
    if version != FILE_VERSION:
        raise ValueError(f"unsupported WaLLoC file version {version}")
    if reserved != b"\0\0\0":
        raise ValueError("reserved bytes of the file header must be zero")
    if n > _MAX_META:
        raise ValueError(f"file metadata length {n} exceeds {_MAX_META}")
    end = _FILE_HEAD.size + n
    if end + _FILE_CRC.size > len(data):
        raise ValueError("truncated WaLLoC file header")
    (crc,) = _FILE_CRC.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        raise ValueError("file header checksum mismatch (corrupted file)")
    try:
        meta = json.loads(data[_FILE_HEAD.size : end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"invalid file metadata: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError("invalid file metadata: not an object")
    return data[end + _FILE_CRC.size :], meta


# ------------------------------------------------------------------------ media
def _media_of(path):
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    return None


def read_signal(path):
    """Read an image or a WAV file: ``(array, meta)``; ``CliError`` if unreadable."""
    media = _media_of(path)
    if media == "image":
        return _read_image(path)
    if media == "audio":
        return _read_wav(path)
    raise CliError(
        f"{path}: unsupported file type (images: {', '.join(IMAGE_EXTENSIONS)}; "
        "audio: .wav)"
    )


def _read_image(path):
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "1":
                img = img.convert("L")
            elif mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif mode == "PA":
                img = img.convert("RGBA")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            elif mode.startswith("I;16"):
                arr = np.asarray(img).astype(np.uint16)
                return arr, {"media": "image", "mode": "I;16"}
            arr = np.asarray(img)
            mode = img.mode
    except Exception as e:  # Pillow reports bad files with many exception types
        raise CliError(f"{path}: cannot read image: {e}") from None
    if arr.size == 0:
        raise CliError(f"{path}: empty image")
    return np.ascontiguousarray(arr), {"media": "image", "mode": mode}


def _read_wav(path):
    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rate, data = wavfile.read(path)
    except Exception as e:  # scipy reports bad files with several types
        raise CliError(f"{path}: cannot read WAV file: {e}") from None
    if data.size == 0:
        raise CliError(f"{path}: empty WAV file")
    if data.dtype.kind not in "iuf":
        raise CliError(f"{path}: unsupported WAV sample type {data.dtype}")
    return np.ascontiguousarray(data), {"media": "audio", "sample_rate": int(rate)}


def _pil_format(path):
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise CliError(f"{path}: Pillow cannot write {Path(path).suffix!r} files")
    return fmt


def write_signal(path, arr, meta, tmp):
    """Write ``arr`` to ``tmp`` in the format that ``path``'s extension names."""
    media = _media_of(path)
    if media == "audio":
        from scipy.io import wavfile

        rate = meta.get("sample_rate", 44100)
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 < rate < 2**32:
            raise CliError(f"{path}: invalid sample rate {rate!r} in the file header")
        if arr.dtype not in (np.uint8, np.int16, np.int32, np.float32, np.float64):
            arr = np.clip(np.rint(arr), -32767, 32767).astype(np.int16)
        wavfile.write(tmp, rate, arr)
        return
    from PIL import Image

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint8 and arr.ndim == 2:
        img = Image.fromarray(arr, "L")
    elif arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] in (2, 3, 4):
        img = Image.fromarray(arr, {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]])
    elif arr.ndim == 2 and arr.dtype in (np.uint16, np.int32, np.float32):
        img = Image.fromarray(arr)
    else:
        raise CliError(
            f"{path}: cannot write a {arr.dtype} image of shape {arr.shape} with "
            "Pillow; decompress it from Python with WallocCodec.decompress"
        )
    try:
        img.save(tmp, format=_pil_format(path))
    except (OSError, ValueError, KeyError) as e:
        raise CliError(f"{path}: cannot write image: {e}") from None


# ---------------------------------------------------------------------- writing
def _atomic_write(path, write, force):
    """Run ``write(tmp_path)``, then move the temporary file to ``path``.

    Without ``force`` an existing ``path`` is never replaced (even one that
    appeared meanwhile). Nothing is left behind on failure.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and fails if path exists
            except FileExistsError:
                raise CliError(f"{path}: exists (use --force to overwrite)") from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise CliError(
                        f"{path}: exists (use --force to overwrite)"
                    ) from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_bytes(data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return write


# ----------------------------------------------------------------------- inputs
def _expand(inputs, accept, what):
    """Files named on the command line, folders expanded (sorted, not recursive)."""
    files = []
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and accept(q))
            if not found:
                raise CliError(f"{p}: no {what} in this folder")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise CliError(f"{p}: no such file or folder")
    if not files:
        raise CliError(f"no {what} given")
    return files


def _load_codec(path):
    from .codec import WallocCodec
    from .transformer import WallocTransformer

    path = Path(path)
    if not path.is_file():
        raise CliError(f"{path}: no such model file")
    try:
        return WallocCodec.load(path)
    except ValueError as e:
        if "holds a WallocTransformer" not in str(e):
            raise CliError(str(e)) from None
    # A transformer's weights make the same codec (same fingerprint).
    try:
        t = WallocTransformer.load(path)
    except ValueError as e:
        raise CliError(str(e)) from None
    codec = WallocCodec(**t.get_params())
    codec.__dict__.update(t.__dict__)
    return codec


def _bar(iterable, quiet, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=True if quiet else None, file=sys.stderr, **kw)


def _say(quiet, text):
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stdout)


def _error(text):
    print(f"{PROG}: error: {text}", file=sys.stderr)


def _reduction(codec):
    return (
        codec.n_channels_ * 2 ** (codec.levels * codec.signal_ndim) / codec.latent_dim
    )


# --------------------------------------------------------------------- commands
def _cmd_fit(args):
    from .codec import WallocCodec

    files = _expand(
        args.inputs, lambda q: _media_of(q) is not None, "images or WAV files"
    )
    kinds = {_media_of(f) for f in files}
    unknown = [f for f in files if _media_of(f) is None]
    if unknown:
        raise CliError(f"{unknown[0]}: unsupported file type")
    if len(kinds) > 1:
        raise CliError("cannot fit images and audio together; fit one model each")
    ndim = 2 if kinds == {"image"} else 1
    if args.signal_ndim is not None and args.signal_ndim != ndim:
        raise CliError(
            f"--signal-ndim {args.signal_ndim} does not match the inputs "
            f"({'images' if ndim == 2 else 'audio'}: {ndim})"
        )
    out = Path(args.output)
    if out.exists() and not args.force:
        raise CliError(f"{out}: exists (use --force to overwrite)")
    signals, failed = [], 0
    for f in _bar(files, args.quiet, desc="reading", unit="file"):
        try:
            signals.append(read_signal(f)[0])
        except CliError as e:
            _error(str(e))
            failed += 1
    if failed:
        raise CliError(f"{failed} input file(s) could not be read; nothing fitted")
    counts = {(s.shape[ndim] if s.ndim > ndim else 1) for s in signals}
    if len(counts) > 1:
        raise CliError(
            f"the inputs have different channel counts {sorted(counts)}; fit "
            "files with the same number of channels (e.g. all RGB, or all stereo)"
        )
    channels = counts.pop()
    levels = args.levels if args.levels is not None else 3
    bands = channels * 2 ** (levels * ndim)
    if args.latent_dim is not None:
        latent_dim = args.latent_dim
    else:
        reduction = args.reduction or (16.0 if ndim == 2 else 4.0)
        latent_dim = max(1, min(bands, round(bands / reduction)))
    params = dict(
        latent_dim=latent_dim,
        levels=levels,
        signal_ndim=ndim,
        max_iter=args.max_iter,
        random_state=args.random_state,
        device=args.device,
        verbose=0 if args.quiet else 1,
    )
    for name in (
        "decoder_width",
        "decoder_depth",
        "latent_bits",
        "wavelet",
        "crop_size",
    ):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    start = time.perf_counter()
    try:
        codec = WallocCodec(**params).fit(signals)
    except ValueError as e:
        raise CliError(f"cannot fit: {e}") from None
    elapsed = time.perf_counter() - start
    codec.verbose = 0
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, codec.save, args.force)
    _say(
        args.quiet,
        f"fitted on {len(signals)} file(s) in {elapsed:.1f} s: {channels} channel(s), "
        f"levels={codec.levels}, latent_dim={codec.latent_dim} "
        f"({_reduction(codec):.3g}x fewer values), {codec.n_iter_} training step(s)"
        f"\nwrote {out}",
    )
    return 0


def _outputs_for(files, outdir, name_of):
    outs = []
    for f in files:
        folder = Path(outdir) if outdir is not None else f.parent
        outs.append(folder / name_of(f))
    dup = {o for o in outs if outs.count(o) > 1}
    if dup:
        raise CliError(f"two inputs would write the same output {sorted(dup)[0]}")
    return outs


def _check_free(outs, force):
    taken = [o for o in outs if o.exists()]
    if taken and not force:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise CliError(f"{taken[0]}{more}: exists; refusing to overwrite (use --force)")


def _cmd_compress(args):
    codec = _load_codec(args.model)
    files = _expand(
        args.inputs, lambda q: _media_of(q) is not None, "images or WAV files"
    )
    outs = _outputs_for(files, args.output_dir, lambda f: f.name + SUFFIX)
    _check_free(outs, args.force)
    if args.output_dir is not None:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    failed = 0
    for f, out in zip(_bar(files, args.quiet, desc="compress", unit="file"), outs):
        try:
            arr, meta = read_signal(f)
            expected = "image" if codec.signal_ndim == 2 else "audio"
            if meta["media"] != expected:
                raise CliError(f"{f}: the model codes {expected}, not {meta['media']}")
            meta["name"] = f.name
            try:
                (blob,) = codec.compress([arr])
            except ValueError as e:
                raise CliError(f"{f}: {e}") from None
            data = pack_file(blob, meta)
            _atomic_write(out, _write_bytes(data), args.force)
        except (CliError, OSError) as e:
            _error(str(e))
            failed += 1
            continue
        bits = 8 * len(data)
        _say(
            args.quiet,
            f"{f} -> {out}: {len(data)} bytes, {bits / arr.size:.4g} bits/sample, "
            f"{arr.itemsize * 8 * arr.size / bits:.3g}:1",
        )
    return 1 if failed else 0


def _decoded_name(f, meta, codec):
    name = f.name[: -len(SUFFIX)] if f.name.endswith(SUFFIX) else f.name + ".out"
    if _media_of(name) is None:
        original = meta.get("name")
        ext = Path(original).suffix if isinstance(original, str) else ""
        if _media_of(ext) is None:
            ext = ".png" if codec.signal_ndim == 2 else ".wav"
        name += ext
    return name


def _cmd_decompress(args):
    codec = _load_codec(args.model)
    files = _expand(args.inputs, lambda q: q.name.endswith(SUFFIX), f"{SUFFIX} files")
    parsed, failed = [], 0
    for f in files:
        try:
            blob, meta = unpack_file(f.read_bytes())
        except (ValueError, OSError) as e:
            _error(f"{f}: {e}")
            failed += 1
            continue
        parsed.append((f, blob, meta))
    names = {f: _decoded_name(f, meta, codec) for f, _, meta in parsed}
    outs = _outputs_for([f for f, _, _ in parsed], args.output_dir, names.__getitem__)
    _check_free(outs, args.force)
    if args.output_dir is not None:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    bar = _bar(parsed, args.quiet, desc="decompress", unit="file")
    for (f, blob, meta), out in zip(bar, outs):
        try:
            try:
                (arr,) = codec.decompress([blob], restore=True)
            except ValueError as e:
                raise CliError(f"{f}: {e}") from None

            def write(tmp, arr=arr, out=out, meta=meta):
                write_signal(out, arr, meta, tmp)

            _atomic_write(out, write, args.force)
        except (CliError, OSError) as e:
            _error(str(e))
            failed += 1
            continue
        _say(args.quiet, f"{f} -> {out}")
    return 1 if failed else 0


def _model_summary(path):
    codec = _load_codec(path)
    n_params = sum(p.numel() for p in codec.module_.parameters())
    enc = sum(p.numel() for p in codec.module_.encoder.parameters())
    return {
        "file": str(path),
        "type": "model",
        "class": "WallocCodec",
        "signal_ndim": codec.signal_ndim,
        "channels": codec.n_channels_,
        "latent_dim": codec.latent_dim,
        "levels": codec.levels,
        "wavelet": codec.wavelet,
        "latent_bits": codec.latent_bits_,
        "decoder_width": codec.decoder_width,
        "decoder_depth": codec.decoder_depth,
        "signal_shape": codec.signal_shape_,
        "dimensionality_reduction": _reduction(codec),
        "parameters": int(n_params),
        "encoder_parameters": int(enc),
        "training_steps": codec.n_iter_,
        "fingerprint": codec.fingerprint().hex(),
        "file_bytes": Path(path).stat().st_size,
    }


def _blob_summary(path, data, model):
    from .codec import blob_info

    blob, meta = unpack_file(data)
    info = blob_info(blob)
    out = {"file": str(path), "type": "compressed signal", **info}
    out["signal_shape"] = list(info["signal_shape"])
    out["latent_shape"] = list(info["latent_shape"])
    out["file_bytes"] = len(data)
    out["metadata"] = meta
    if model is not None:
        out["made_by_model"] = info["fingerprint"] == model.fingerprint().hex()
    return out


def _cmd_info(args):
    model = _load_codec(args.model) if args.model else None
    failed = 0
    for name in args.files:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as e:
            _error(f"{path}: {e.strerror or e}")
            failed += 1
            continue
        try:
            if data[:4] in (FILE_MAGIC, _BLOB_MAGIC):
                summary = _blob_summary(path, data, model)
            elif data[:2] == b"PK":
                summary = _model_summary(path)
            else:
                raise CliError(f"{path}: neither a WaLLoC file (.wlc) nor a model file")
        except (CliError, ValueError) as e:
            msg = str(e)
            _error(msg if msg.startswith(str(path)) else f"{path}: {msg}")
            failed += 1
            continue
        if args.json:
            print(json.dumps(summary, default=str))
        else:
            print(f"{path}:")
            for k, v in summary.items():
                if k != "file":
                    if isinstance(v, float):
                        v = f"{v:.4g}"
                    print(f"  {k}: {v}")
    return 1 if failed else 0


def _psnr(a, b, peak=255.0):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)


def _cmd_demo(args):
    from PIL import Image

    from .codec import WallocCodec

    try:
        from .datasets import load_photos

        fit, _ = load_photos(split="fit", return_names=True)
        held, names = load_photos(split="holdout", return_names=True)
    except ImportError as e:
        raise CliError(
            f"the demo needs scikit-image and scikit-learn's photos: {e}"
        ) from None
    outdir = Path(args.output_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    # With max_iter=0 the residual decoder path is exactly zero: skip it.
    width = 0 if args.max_iter == 0 else 64
    codec = WallocCodec(
        latent_dim=args.latent_dim,
        levels=args.levels,
        max_iter=args.max_iter,
        decoder_width=width,
        random_state=args.random_state,
        verbose=0 if args.quiet else 1,
    )
    mp_fit = sum(p.shape[0] * p.shape[1] for p in fit) / 1e6
    print(
        f"fitting a WaLLoC codec on {len(fit)} bundled photos ({mp_fit:.1f} MP), "
        f"max_iter={args.max_iter} ..."
    )
    start = time.perf_counter()
    codec.fit(fit)
    codec.verbose = 0
    print(
        f"  fitted in {time.perf_counter() - start:.1f} s: levels={codec.levels}, "
        f"latent_dim={codec.latent_dim}: {_reduction(codec):.3g}x fewer values "
        f"than RGB pixels ({codec.module_.encoder.weight.numel()} encoder weights)"
    )
    # Warm up (the fused encoder is built on first use) so timings are steady.
    codec.decompress(codec.compress([held[0][:64, :64]]))
    print(f"\nheld-out photos (24-bit RGB source), side-by-side PNGs in {outdir}/")
    header = (
        f"{'photo':<10} {'size':>9} {'bytes':>7} {'bpp':>6} {'ratio':>6} "
        f"{'PSNR dB':>7} {'enc MP/s':>8} {'dec MP/s':>8}"
    )
    print(header)
    print("-" * len(header))
    totals = [0, 0.0, 0.0, 0.0]
    for name, x in zip(names, held):
        h, w = x.shape[:2]
        t0 = time.perf_counter()
        (blob,) = codec.compress([x])
        t1 = time.perf_counter()
        (y,) = codec.decompress([blob], restore=True)
        t2 = time.perf_counter()
        mp = h * w / 1e6
        bpp = 8 * len(blob) / (h * w)
        psnr = _psnr(x, y)
        print(
            f"{name:<10} {f'{w}x{h}':>9} {len(blob):>7} {bpp:>6.3f} {24 / bpp:>6.1f} "
            f"{psnr:>7.2f} {mp / (t1 - t0):>8.2f} {mp / (t2 - t1):>8.2f}"
        )
        totals[0] += len(blob)
        totals[1] += h * w
        totals[2] += t1 - t0
        totals[3] += t2 - t1
        gap = np.full((h, 8, 3), 255, np.uint8)
        side = np.concatenate([x, gap, y], axis=1)
        out = outdir / f"{name}_original_vs_walloc.png"
        _atomic_write(
            out, lambda tmp, s=side: Image.fromarray(s).save(tmp, format="PNG"), True
        )
    bpp = 8 * totals[0] / totals[1]
    print(
        f"\nall: {bpp:.3f} bits per pixel, compression ratio {24 / bpp:.1f}:1, "
        f"encode {totals[1] / 1e6 / totals[2]:.2f} MP/s, "
        f"decode {totals[1] / 1e6 / totals[3]:.2f} MP/s"
    )
    print(f"wrote {len(held)} side-by-side PNGs (original | WaLLoC) to {outdir}/")
    return 0


# ----------------------------------------------------------------------- parser
def _bounded(cast, noun, minimum, strict):
    """An argparse type: ``cast(text)``, at least (or above) ``minimum``."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            sign = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {sign} {minimum}, got {value}")
        return value

    return parse


_positive_int = _bounded(int, "an integer", 1, strict=False)
_nonneg_int = _bounded(int, "an integer", 0, strict=False)
_positive_float = _bounded(float, "a number", 0, strict=True)


def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="WaLLoC: wavelet-domain learned lossy compression of images "
        "and audio (see docs/cli.md).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "fit",
        help="fit a model on images or WAV files",
        description="Fit a WallocCodec on images (Pillow) or WAV files and save it "
        "in the safe model format.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders")
    p.add_argument(
        "-o",
        "--output",
        default="walloc_model.npz",
        help="model file to write (default: %(default)s)",
    )
    p.add_argument(
        "--latent-dim",
        type=_positive_int,
        help="latent channels (default: from --reduction)",
    )
    p.add_argument(
        "--reduction",
        type=_positive_float,
        help="target dimensionality "
        "reduction when --latent-dim is not given (default: 16 for images, "
        "4 for audio)",
    )
    p.add_argument(
        "--levels", type=_positive_int, help="wavelet packet levels (default: 3)"
    )
    p.add_argument(
        "--max-iter",
        type=_nonneg_int,
        default=200,
        help="training "
        "steps after the closed form; 0 = closed form only (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--signal-ndim",
        type=int,
        choices=(1, 2),
        help="1 = audio, 2 = images (default: from the file types)",
    )
    p.add_argument("--decoder-width", type=_nonneg_int)
    p.add_argument("--decoder-depth", type=_nonneg_int)
    p.add_argument("--latent-bits", type=_positive_int)
    p.add_argument("--wavelet")
    p.add_argument("--crop-size", type=_positive_int)
    p.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, ... (default: auto)"
    )
    p.add_argument(
        "-f", "--force", action="store_true", help="overwrite the model file"
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_fit)

    for name, func, what, hint in (
        ("compress", _cmd_compress, "images or WAV files", f"x.png -> x.png{SUFFIX}"),
        ("decompress", _cmd_decompress, f"{SUFFIX} files", f"x.png{SUFFIX} -> x.png"),
    ):
        p = sub.add_parser(
            name,
            help=f"{name} files ({hint})",
            description=f"{name.capitalize()} {what} with a fitted model; outputs "
            f"keep the input names ({hint}) and go next to the inputs unless -o is "
            "given. Existing files are never overwritten without --force.",
        )
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders")
        p.add_argument(
            "-m", "--model", required=True, help="model file from 'walloc fit'"
        )
        p.add_argument("-o", "--output-dir", help="folder for the outputs")
        p.add_argument("-f", "--force", action="store_true", help="overwrite outputs")
        p.add_argument("-q", "--quiet", action="store_true")
        p.set_defaults(func=func)

    p = sub.add_parser(
        "info",
        help="describe .wlc files and model files",
        description="Show what compressed files (.wlc or bare blobs) and model "
        "files hold.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "-m", "--model", help="also check whether this model made the compressed files"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "demo",
        help="quick start on the bundled photos",
        description="Fit a 16x model on the photos bundled with scikit-image and "
        "scikit-learn, compress held-out photos, report rate, quality and speed, "
        "and write side-by-side PNGs (re-running replaces them).",
    )
    p.add_argument(
        "-o", "--output-dir", default="walloc_demo", help="(default: %(default)s)"
    )
    p.add_argument(
        "--max-iter",
        type=_nonneg_int,
        default=0,
        help="training steps (default: %(default)s, the closed form)",
    )
    p.add_argument("--latent-dim", type=_positive_int, default=12)
    p.add_argument("--levels", type=_positive_int, default=3)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None):
    """Run the ``walloc`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 1 if any file failed, 2 on a usage error.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already reported
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except CliError as e:
        _error(str(e))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":  # python -m sklearn_walloc.cli
    sys.exit(main())
