"""The ``walloc`` command line: fit, compress, decompress, info, demo.

Run ``walloc --help`` (or ``python -m sklearn_walloc.cli --help``); the user
guide is ``docs/cli.md``. This module holds the parser and the commands; the
``.wlc`` file format is in ``_wlc``, reading and writing media in ``_media``,
and atomic, interrupt-safe output files in ``_atomic``.

Exit status: 0 on success; 1 when a file could not be read, written or decoded
(one line per failing file on stderr, every other file is still processed, and
nothing half-written is left behind); 2 on a usage error; 130 on Ctrl-C and
143 on ``SIGTERM``.
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from . import __version__, _atomic, metrics
from ._atomic import OutputExists, Terminated, sigterm_raises
from ._distributed import fit_distributed, launched_by_torchrun
from ._media import (
    FORMATS,
    check_size,
    default_format,
    media_of,
    output_name,
    read_signal,
    split_alpha,
    write_signal,
)
from ._wlc import (
    BLOB_MAGIC,
    FILE_MAGIC,
    MetadataTooLong,
    pack_file,
    read_file,
    unpack_file,
)
from .codec import MAX_DECODED_VALUES, WallocCodec, blob_info

__all__ = ["main", "pack_file", "unpack_file"]

PROG = "walloc"
SUFFIX = ".wlc"
_NPY_MAGIC = b"\x93NUMPY"


class CliError(Exception):
    """A problem to report to the user (one line), not a bug."""


def _one_line(text):
    return " ".join(str(text).split())


def _reason(exc):
    """Why a file failed, in one line (no traceback, whatever the exception)."""
    if isinstance(exc, (CliError, ValueError, OutputExists)):
        text = str(exc)
        if text.startswith("blobs[0]: "):  # the codec names list items
            text = text[len("blobs[0]: ") :]
    elif isinstance(exc, OSError):
        text = exc.strerror or str(exc)
    else:
        text = f"unexpected {type(exc).__name__}: {exc} (please report this)"
    return _one_line(text) or type(exc).__name__


def _error(text):
    print(f"{PROG}: error: {_one_line(text)}", file=sys.stderr)


def _warn(text):
    print(f"{PROG}: warning: {_one_line(text)}", file=sys.stderr)


def _bar(iterable, quiet, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=True if quiet else None, file=sys.stderr, **kw)


def _say(quiet, text):
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stdout)


def _each(items, name_of, job, quiet, desc):
    """Run ``job(item)`` for every item; a failure prints one line and counts.

    Returns the number of failed items. ``KeyboardInterrupt`` and
    :class:`Terminated` are not caught: they stop the command.
    """
    failed = 0
    for item in _bar(items, quiet, desc=desc, unit="file"):
        try:
            job(item)
        except Exception as e:
            _error(f"{name_of(item)}: {_reason(e)}")
            failed += 1
    return failed


def _write(out, write, force):
    """:func:`atomic_write`, with a write failure told as one line."""
    try:
        _atomic.atomic_write(out, write, force=force)
    except OutputExists:
        raise
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror or e}") from None


def _expand(inputs, accept, what):
    """Files named on the command line, folders expanded (sorted, not recursive).

    Returns ``(files, failed)``: a missing input or a folder without
    ``what`` is reported and counted, and the others are still used.
    """
    files, failed = [], 0
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and accept(q))
            if not found:
                _error(f"{p}: no {what} in this folder")
                failed += 1
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            _error(f"{p}: no such file or folder")
            failed += 1
    return files, failed


def _read_model(path):
    from .transformer import WallocTransformer

    try:
        return WallocCodec.load(path)
    except ValueError as e:
        if "holds a WallocTransformer" not in str(e):
            raise
    # A transformer's weights make the same codec (same fingerprint).
    t = WallocTransformer.load(path)
    codec = WallocCodec(**t.get_params())
    codec.__dict__.update(t.__dict__)
    return codec


def _check_device(device):
    from ._signal import resolve_device

    if device is not None:
        try:
            resolve_device(device)
        except ValueError as e:
            raise CliError(f"--device: {e}") from None


def _load_codec(path, device=None):
    """The model file as a codec, or a one-line ``CliError`` saying why not."""
    from ._signal import resolve_device

    path = Path(path)
    if not path.is_file():
        raise CliError(f"{path}: no such model file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CliError(f"{path}: cannot read model file: {e.strerror or e}") from None
    if not head:
        raise CliError(f"{path}: empty file, not a model file")
    if head.startswith(_NPY_MAGIC):
        raise CliError(
            f"{path}: a NumPy .npy array, not a model file (models are the .npz "
            "files that 'walloc fit' writes)"
        )
    try:
        codec = _read_model(path)
    except ValueError as e:
        text = _one_line(e)
        raise CliError(text if text.startswith(str(path)) else f"{path}: {text}")
    except Exception as e:  # np.load and zipfile fail in many ways on bad files
        raise CliError(
            f"{path}: not a sklearn-walloc model file ({type(e).__name__}: {e})"
        ) from None
    if device is not None:
        try:
            resolve_device(device)
        except ValueError as e:
            raise CliError(f"--device: {e}") from None
        codec.device = device
    return codec


#: The shipped model ``walloc compress`` uses without ``-m``: (media, channels).
PRETRAINED_FOR = {
    ("image", 3): "rgb-16x",
    ("audio", 2): "stereo-5x",
    ("audio", 1): "mono-5x",
}


class _Pretrained:
    """The shipped models, loaded on first use (by media or by fingerprint)."""

    def __init__(self, device):
        self.device = device
        self.codecs = {}

    def named(self, name):
        if name not in self.codecs:
            codec = WallocCodec.from_pretrained(name)
            if self.device is not None:
                codec.device = self.device
            self.codecs[name] = codec
        return self.codecs[name]

    def for_signal(self, media, signal):
        channels = (
            1 if signal.ndim == (2 if media == "image" else 1) else (signal.shape[-1])
        )
        name = PRETRAINED_FOR.get((media, channels))
        if name is None:
            kinds = ", ".join(
                f"{m} with {c} channel(s): {n}" for (m, c), n in PRETRAINED_FOR.items()
            )
            raise CliError(
                f"no pretrained model for {media} with {channels} channel(s) "
                f"(shipped: {kinds}); fit one with 'walloc fit' and pass -m"
            )
        return self.named(name)

    def for_blob(self, blob):
        fingerprint = blob_info(blob)["fingerprint"]
        for name in PRETRAINED_FOR.values():
            codec = self.named(name)
            if codec.fingerprint().hex() == fingerprint:
                return codec
        raise CliError(
            "not made by a pretrained model (its fingerprint matches none of "
            f"{', '.join(PRETRAINED_FOR.values())}); pass the model with -m"
        )


def _reduction(codec):
    return (
        codec.n_channels_ * 2 ** (codec.levels * codec.signal_ndim) / codec.latent_dim
    )


def _channels(signal, ndim):
    return signal.shape[ndim] if signal.ndim > ndim else 1


def _check_same_channels(files, signals, ndim):
    """Refuse inputs of different channel counts, naming the odd ones out."""
    counts = [_channels(s, ndim) for s in signals]
    common, _ = Counter(counts).most_common(1)[0]
    reference = files[counts.index(common)]
    odd = [(f, c) for f, c in zip(files, counts) if c != common]
    if odd:
        f, c = odd[0]
        more = f" (and {len(odd) - 1} more file(s))" if len(odd) > 1 else ""
        raise CliError(
            f"{f} has {c} channel(s), but {reference} has {common}{more}; fit "
            "files with the same number of channels (e.g. all RGB, or all stereo)"
        )
    return common


# --------------------------------------------------------------------- commands
_WHAT = "images or audio files"


def _cmd_fit(args):
    if launched_by_torchrun() and os.environ["RANK"] != "0":
        args.quiet = True  # one report, from rank 0
    files, failed = _expand(args.inputs, lambda q: media_of(q) is not None, _WHAT)
    unknown = [f for f in files if media_of(f) is None]
    if unknown:
        raise CliError(f"{unknown[0]}: unsupported file type")
    images = [f for f in files if media_of(f) == "image"]
    sounds = [f for f in files if media_of(f) == "audio"]
    if images and sounds:
        raise CliError(
            f"cannot fit images and audio together ({images[0]}, {sounds[0]}); "
            "fit one model each"
        )
    ndim = 1 if sounds else 2
    if args.signal_ndim is not None and args.signal_ndim != ndim:
        raise CliError(
            f"--signal-ndim {args.signal_ndim} does not match the inputs "
            f"({'images' if ndim == 2 else 'audio'}: {ndim})"
        )
    out = Path(args.output)
    if out.exists() and not args.force:
        raise CliError(f"{out}: exists (use --force to overwrite)")
    signals = {}
    failed += _each(
        files,
        str,
        lambda f: signals.__setitem__(f, read_signal(f)[0]),
        args.quiet,
        "reading",
    )
    if failed or not files:
        raise CliError(
            f"{failed} input(s) could not be read; nothing fitted"
            if failed
            else f"no {_WHAT} given"
        )
    channels = _check_same_channels(files, [signals[f] for f in files], ndim)
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
    if args.decoder_only:
        params["train_encoder"] = False
    for name in (
        "decoder_width",
        "decoder_depth",
        "latent_bits",
        "wavelet",
        "crop_size",
        "learning_rate",
        "n_iter_no_change",
    ):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    start = time.perf_counter()
    main = True
    try:
        if launched_by_torchrun():
            # One replica per process; rank 0 writes the model and reports.
            main = int(os.environ["RANK"]) == 0
            codec = fit_distributed(WallocCodec(**params), [signals[f] for f in files])
        else:
            codec = WallocCodec(**params).fit([signals[f] for f in files])
    except ValueError as e:
        raise CliError(f"cannot fit: {e}") from None
    elapsed = time.perf_counter() - start
    codec.verbose = 0
    if not main:
        return 0
    if out.parent != Path(""):
        _make_folder(out.parent)
    try:
        _write(out, codec.save, args.force)
    except OutputExists as e:
        raise CliError(str(e)) from None
    _say(
        args.quiet,
        f"fitted on {len(files)} file(s) in {elapsed:.1f} s: {channels} channel(s), "
        f"levels={codec.levels}, latent_dim={codec.latent_dim} "
        f"({_reduction(codec):.3g}x fewer values)\n{_training_line(codec)}"
        f"\nwrote {out}",
    )
    return 0


def _make_folder(folder):
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CliError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(
            f"{folder}: cannot create the folder: {e.strerror or e}"
        ) from None


def _outputs_for(files, outdir, name_of):
    outs = {}
    for f in files:
        folder = Path(outdir) if outdir is not None else f.parent
        outs[f] = folder / name_of(f)
    seen = Counter(outs.values())
    dup = sorted(o for o, n in seen.items() if n > 1)
    if dup:
        raise CliError(f"two inputs would write the same output {dup[0]}")
    return outs


def _check_free(outs, force):
    """Without ``force``, refuse the whole command if any output exists."""
    taken = [o for o in outs if o.exists()]
    if taken and not force:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise CliError(f"{taken[0]}{more}: exists; refusing to overwrite (use --force)")


def _media_of_codec(codec):
    return "image" if codec.signal_ndim == 2 else "audio"


def _pack(f, blob, meta):
    """The ``.wlc`` bytes; an ICC profile too large for the header is dropped."""
    try:
        return pack_file(blob, meta)
    except MetadataTooLong:
        if "icc_profile" not in meta:
            raise
    size = len(meta.pop("icc_profile")) * 3 // 4
    _warn(
        f"{f}: the ICC profile (about {size} bytes) does not fit in a .wlc file; "
        "dropped"
    )
    return pack_file(blob, meta)


def _rate(signal, media, nbytes, meta):
    """Bits per pixel of an image, bits per sample (and kbit/s) of audio."""
    bits = 8 * nbytes
    if media == "image":
        return f"{metrics.bits_per_pixel(bits, signal):.3g} bpp"
    seconds = signal.shape[0] / meta["sample_rate"]
    bps = metrics.bits_per_sample(bits, signal)
    return f"{bps:.3g} bits/sample, {bits / seconds / 1000:.3g} kbit/s"


def _ratio(source_bytes, nbytes, name):
    ratio = source_bytes / nbytes
    if ratio >= 1:
        return f"{ratio:.3g}x smaller than {name}"
    return f"{1 / ratio:.3g}x larger than {name}"


def _cmd_compress(args):
    if args.model is not None:
        codec = _load_codec(args.model, args.device)
    else:
        _check_device(args.device)
        pretrained = _Pretrained(args.device)
    files, failed = _expand(args.inputs, lambda q: media_of(q) is not None, _WHAT)
    outs = _outputs_for(files, args.output_dir, lambda f: f.name + SUFFIX)
    _check_free(outs.values(), args.force)
    if args.output_dir is not None:
        _make_folder(args.output_dir)

    def compress(f):
        signal, meta = read_signal(f)
        signal = split_alpha(signal, meta, args.model and codec.n_channels_)
        check_size(signal, args.max_values)
        if args.model is None:
            model = pretrained.for_signal(meta["media"], signal)
        else:
            model = codec
        expected = _media_of_codec(model)
        if meta["media"] != expected:
            raise CliError(f"the model codes {expected}, not {meta['media']}")
        meta["name"] = f.name
        (blob,) = model.compress([signal])
        data = _pack(f, blob, meta)
        out = outs[f]
        _write(out, lambda tmp: _atomic.dump(data, tmp), args.force)
        _say(
            args.quiet,
            f"{f} -> {out}: {len(data)} bytes, "
            f"{_rate(signal, expected, len(data), meta)}, "
            f"{_ratio(f.stat().st_size, len(data), f.name)}",
        )

    failed += _each(files, str, compress, args.quiet, "compress")
    return 1 if failed else 0


def _signal_of(info, ndim):
    """(dtype, channels) a blob declares, from :func:`blob_info`."""
    shape = info["signal_shape"]
    return np.dtype(info["dtype"]), (shape[ndim] if len(shape) > ndim else 1)


def _check_format_options(args, media):
    if args.format is not None and FORMATS[args.format][0] != media:
        raise CliError(
            f"--format {args.format} is for {FORMATS[args.format][0]}, but the "
            f"model codes {media}"
        )
    if args.quality is not None and (
        args.format is None or FORMATS[args.format][2] is False
    ):
        lossy = ", ".join(k for k, v in FORMATS.items() if v[2] is not False)
        raise CliError(f"--quality applies to lossy formats only (--format {lossy})")


def _cmd_decompress(args):
    if args.model is not None:
        codec = _load_codec(args.model, args.device)
        _check_format_options(args, _media_of_codec(codec))
    else:
        _check_device(args.device)
        pretrained = _Pretrained(args.device)
    files, failed = _expand(
        args.inputs, lambda q: q.name.endswith(SUFFIX), f"{SUFFIX} files"
    )
    parsed = {}
    models = {}

    def parse(f):
        blob, meta = unpack_file(read_file(f))
        if args.model is None:
            models[f] = pretrained.for_blob(blob)
            _check_format_options(args, _media_of_codec(models[f]))
        else:
            models[f] = codec
        media = _media_of_codec(models[f])
        dtype, channels = _signal_of(blob_info(blob), models[f].signal_ndim)
        fmt = args.format or default_format(media, meta, dtype, channels)
        stem = f.name[: -len(SUFFIX)] if f.name.endswith(SUFFIX) else f.name
        parsed[f] = (blob, meta, fmt, output_name(stem, fmt))

    failed += _each(files, str, parse, True, "reading")
    outs = _outputs_for(list(parsed), args.output_dir, lambda f: parsed[f][3])
    _check_free(outs.values(), args.force)
    if args.output_dir is not None and parsed:
        _make_folder(args.output_dir)

    def decompress(f):
        blob, meta, fmt, _ = parsed[f]
        try:
            (signal,) = models[f].decompress(
                [blob], restore=True, max_values=args.max_values
            )
        except ValueError as e:  # name the option, not the Python argument
            raise ValueError(str(e).replace("max_values", "--max-values")) from None
        out = outs[f]
        _write(
            out,
            lambda tmp: write_signal(tmp, signal, meta, fmt, args.quality),
            args.force,
        )
        _say(args.quiet, f"{f} -> {out}")

    failed += _each(list(parsed), str, decompress, args.quiet, "decompress")
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
        "training_steps_kept": getattr(codec, "n_iter_kept_", None),
        "validation_gain_db": getattr(codec, "validation_gain_", None),
        "fingerprint": codec.fingerprint().hex(),
        "file_bytes": Path(path).stat().st_size,
    }


def _training_line(codec):
    """What training did, in one line: steps run, kept, dB gained."""
    if codec.n_iter_ == 0:
        return "closed form (no training steps)"
    line = f"{codec.n_iter_} training step(s)"
    gain = getattr(codec, "validation_gain_", None)
    if gain is None:
        return line + " (no validation)"
    kept = codec.n_iter_kept_
    if kept == 0:
        return line + ", none kept: the closed form validated best"
    return line + f", kept step {kept}: {gain:+.3f} dB on validation"


def _blob_summary(path, data, model):
    blob, meta = unpack_file(data)
    info = blob_info(blob)
    out = {"file": str(path), "type": "compressed signal", **info}
    out["signal_shape"] = list(info["signal_shape"])
    out["latent_shape"] = list(info["latent_shape"])
    out["file_bytes"] = len(data)
    if "icc_profile" in meta:  # kilobytes of base64 say nothing to a reader
        meta = {**meta, "icc_profile": f"<{len(meta['icc_profile']) * 3 // 4} bytes>"}
    if "alpha" in meta:
        meta = {**meta, "alpha": f"<{len(meta['alpha'])} bytes, lossless PNG>"}
    out["metadata"] = meta
    if model is not None:
        out["made_by_model"] = info["fingerprint"] == model.fingerprint().hex()
    return out


def _cmd_info(args):
    model = _load_codec(args.model) if args.model else None

    def describe(name):
        path = Path(name)
        data = read_file(path)
        if data[:4] in (FILE_MAGIC, BLOB_MAGIC):
            summary = _blob_summary(path, data, model)
        elif data[:2] == b"PK":
            try:
                summary = _model_summary(path)
            except CliError as e:  # its message names the file already
                raise CliError(str(e).removeprefix(f"{path}: ")) from None
        else:
            raise CliError("neither a WaLLoC file (.wlc) nor a model file")
        if args.json:
            print(json.dumps(summary, default=str))
            return
        print(f"{path}:")
        for k, v in summary.items():
            if k != "file":
                print(f"  {k}: {f'{v:.4g}' if isinstance(v, float) else v}")

    return 1 if _each(args.files, str, describe, True, "info") else 0


def _cmd_demo(args):
    from PIL import Image

    try:
        from .datasets import load_photos

        fit, _ = load_photos(split="fit", return_names=True)
        held, names = load_photos(split="holdout", return_names=True)
    except ImportError as e:
        raise CliError(
            f"the demo needs scikit-image and scikit-learn's photos: {e}"
        ) from None
    outdir = Path(args.output_dir)
    _make_folder(outdir)
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
    # Warm up so timings are steady: the fused encoder and synthesis are built
    # on first use, and the end-of-axis least squares once a grid has 16
    # latent positions along an axis (128 pixels at 3 levels).
    warm = 16 * 2**codec.levels
    codec.decompress(codec.compress([held[0][:warm, :warm]]))
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
        bpp = metrics.bits_per_pixel([blob], x)
        psnr = metrics.psnr(x, y)
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
        _write(
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
def _bounded(cast, noun, minimum, strict, maximum=None):
    """An argparse type: ``cast(text)``, at least (or above) ``minimum``."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            sign = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {sign} {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    return parse


_positive_int = _bounded(int, "an integer", 1, strict=False)
_nonneg_int = _bounded(int, "an integer", 0, strict=False)
_positive_float = _bounded(float, "a number", 0, strict=True)
_quality = _bounded(int, "an integer", 1, strict=False, maximum=100)

_DEVICE_HELP = "auto, cpu, cuda, cuda:N (default: the model's, auto)"


def _add_fit(sub):
    p = sub.add_parser(
        "fit",
        help="fit a model on images or audio files",
        description="Fit a WallocCodec on images (Pillow) or audio files "
        "(soundfile: WAV, FLAC, OGG, MP3) and save it in the safe model format.",
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
        default=0,
        help="training "
        "steps after the closed form; 0 = closed form only (default: "
        "%(default)s: training on a few photos did not pay on held-out photos; "
        "on 32 photos, 16000 steps with --decoder-only did, see docs/cli.md)",
    )
    p.add_argument(
        "--decoder-only",
        action="store_true",
        help="train the decoder alone: the closed-form encoder keeps the coded size",
    )
    p.add_argument(
        "--learning-rate", type=_positive_float, help="Adam's step (default: 3e-4)"
    )
    p.add_argument(
        "--n-iter-no-change",
        type=_positive_int,
        help="validations (one per 10 steps) without improvement before training "
        "stops (default: 10)",
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


def _add_coding(sub, name, func, what, hint):
    p = sub.add_parser(
        name,
        help=f"{name} files ({hint})",
        description=f"{name.capitalize()} {what} with a fitted model; outputs "
        f"go next to the inputs unless -o is given ({hint}). Existing files are "
        "never overwritten without --force.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders")
    p.add_argument(
        "-m",
        "--model",
        help="model file from 'walloc fit' (default: a pretrained model: "
        "rgb-16x for RGB images, stereo-5x / mono-5x for stereo / mono audio; "
        "decompress finds it from the file's model fingerprint)",
    )
    p.add_argument("-o", "--output-dir", help="folder for the outputs")
    p.add_argument("--device", help=_DEVICE_HELP)
    p.add_argument("-f", "--force", action="store_true", help="overwrite outputs")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument(
        "--max-values",
        type=_positive_int,
        default=MAX_DECODED_VALUES,
        help="largest signal (scalar values: pixels x channels, or samples x "
        "channels) to decode, against decompression bombs; compress refuses "
        "larger ones, so that what it writes decodes (default: %(default)s)",
    )
    p.set_defaults(func=func)
    return p


def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="WaLLoC: wavelet-domain learned lossy compression of images "
        "and audio (see docs/cli.md).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_fit(sub)
    _add_coding(
        sub,
        "compress",
        _cmd_compress,
        "images or audio files",
        f"x.png -> x.png{SUFFIX}",
    )
    p = _add_coding(
        sub,
        "decompress",
        _cmd_decompress,
        f"{SUFFIX} files",
        f"x.jpg{SUFFIX} -> x.png, x.flac{SUFFIX} -> x.flac",
    )
    p.add_argument(
        "--format",
        choices=tuple(FORMATS),
        help="output format (default: lossless: png, or tiff for 32-bit and float "
        "greyscale; flac for FLAC sources, wav for other audio)",
    )
    p.add_argument(
        "--quality",
        type=_quality,
        help="1-100, for the lossy formats jpg, webp and ogg (default: 90 for "
        "jpg; webp without it is lossless)",
    )

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
        0 on success, 1 if any file failed, 2 on a usage error, 130 on
        ``KeyboardInterrupt``, 143 on ``SIGTERM``.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already reported
        return e.code if isinstance(e.code, int) else 2
    # SIGTERM raises, so the finally blocks of atomic writes remove temp files.
    with sigterm_raises():
        try:
            return args.func(args)
        except CliError as e:
            _error(str(e))
            return 1
        except KeyboardInterrupt:
            _error("interrupted")
            return 130
        except Terminated:
            _error("terminated")
            return 143
        except Exception as e:  # a bug: still one line, never a traceback
            _error(_reason(e))
            return 1


if __name__ == "__main__":  # python -m sklearn_walloc.cli
    sys.exit(main())
