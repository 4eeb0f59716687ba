"""The ``walloc`` command line: fit, compress, decompress, info, demo.

Run ``walloc --help`` (or ``python -m sklearn_walloc.cli --help``); the user
guide is ``docs/cli.md``. This module holds the parser, ``compress``,
``decompress`` and ``info``; ``walloc fit`` is in ``_cli_fit``, the demo in
``_demo``, models (files, shipped names, fingerprints) in ``_cli_models`` and
what every command shares in ``_cli_common``. The ``.wlc`` file format is in
``_wlc``, reading and writing media in ``_media``, and atomic, interrupt-safe
output files in ``_atomic``.

Importing this module and parsing arguments import neither torch nor
scikit-learn: each command imports what it needs, so ``--help``, argument
errors and ``info`` of a ``.wlc`` file answer at once.

Exit status: 0 on success; 1 when a file could not be read, written or decoded
(one line per failing file on stderr, every other file is still processed, and
nothing half-written is left behind); 2 on a usage error; 130 on Ctrl-C and
143 on ``SIGTERM``.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

from . import __version__, _atomic
from . import _cli_common as common
from . import _cli_models as models
from ._atomic import OutputExists, Terminated, sigterm_raises
from ._cli_common import (
    PROG,
    CliError,
    positive_float,
    positive_int,
    psnr_db,
    quality,
)
from ._cli_convert import add_convert
from ._cli_fit import WHAT, add_fit
from ._demo import add_demo
from ._wlc import (
    BLOB_MAGIC,
    FILE_MAGIC,
    MetadataTooLong,
    pack_file,
    read_file,
    unpack_file,
)

__all__ = ["main", "pack_file", "unpack_file"]

SUFFIX = ".wlc"
#: Infix of decoded files: ``photo.png.wlc`` -> ``photo.png.walloc.png``.
DECODED = ".walloc"


def read_signal(path):
    """:func:`_media.read_signal` (imported on first use: numpy, Pillow)."""
    from ._media import read_signal

    return read_signal(path)


def write_signal(tmp, signal, meta, fmt, quality=None):
    """:func:`_media.write_signal` (imported on first use)."""
    from ._media import write_signal

    return write_signal(tmp, signal, meta, fmt, quality)


def split_alpha(signal, meta, model_channels):
    """:func:`_media.split_alpha` (imported on first use)."""
    from ._media import split_alpha

    return split_alpha(signal, meta, model_channels)


def check_size(signal, max_values):
    """:func:`_media.check_size` (imported on first use)."""
    from ._media import check_size

    return check_size(signal, max_values)


def _formats():
    from ._media import FORMATS

    return FORMATS


def _pack(f, blob, meta):
    """The ``.wlc`` bytes; an ICC profile too large for the header is dropped."""
    try:
        return pack_file(blob, meta)
    except MetadataTooLong:
        if "icc_profile" not in meta:
            raise
    size = len(meta.pop("icc_profile")) * 3 // 4
    common.warn(
        f"{f}: the ICC profile (about {size} bytes) does not fit in a .wlc file; "
        "dropped"
    )
    return pack_file(blob, meta)


def _rate(signal, media, nbytes, meta):
    """Bits per pixel of an image, bits per sample (and kbit/s) of audio."""
    from . import metrics

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


def _model_inputs(args):
    """The model file among a command's inputs (never an output)."""
    if args.model is None or models.is_shipped(args.model):
        return []
    return [Path(args.model)]


def _cmd_compress(args):
    common.check_output_dir(args.output_dir)
    if args.model is not None:
        codec = models.load_codec(args.model, args.device)
    else:
        models.check_device(args.device)
        pretrained = models.Pretrained(args.device)
    files, failed = common.expand(args.inputs, common.is_source, WHAT)
    outs = common.outputs_for(files, args.output_dir, lambda f: f.name + SUFFIX)
    common.check_free(outs.values(), args.force, files + _model_inputs(args))
    if args.output_dir is not None:
        common.make_folder(args.output_dir)

    def compress(f):
        signal, meta = read_signal(f)
        signal = split_alpha(signal, meta, args.model and codec.n_channels_)
        check_size(signal, args.max_values)
        if args.model is None:
            model = pretrained.for_signal(meta["media"], signal)
        else:
            model = codec
        expected = models.media_of_codec(model)
        if meta["media"] != expected:
            raise CliError(f"the model codes {expected}, not {meta['media']}")
        meta["name"] = f.name
        targets = _targets(args, model)
        if args.model is None and targets:
            from ._rate import best_of

            # No model named: the shipped model that serves the target best.
            ladder = pretrained.ladder(meta["media"], signal)
            model, blob, _ = best_of(ladder, signal, targets)
            chosen = f" with {pretrained.name_of(model)}"
        else:
            (blob,) = model.compress([signal], **targets)
            chosen = ""
        data = _pack(f, blob, meta)
        out = outs[f]
        common.write(out, lambda tmp: _atomic.dump(data, tmp), args.force)
        common.say(
            args.quiet,
            f"{f} -> {out}{chosen}: {len(data)} bytes, "
            f"{_rate(signal, expected, len(data), meta)}, "
            f"{_ratio(f.stat().st_size, len(data), f.name)}",
        )

    failed += common.each(files, str, compress, args.quiet, "compress")
    return 1 if failed else 0


def _targets(args, model):
    """``compress``'s rate target from --bpp, --psnr or --quality."""
    if args.bpp is not None:
        return {"target_bpp": args.bpp}
    if args.psnr is not None:
        return {"target_psnr": args.psnr}
    if args.rate_quality is not None:
        from ._rate import quality_psnr

        return {"target_psnr": quality_psnr(args.rate_quality, model.signal_ndim)}
    return {}


def _check_format_options(args, media):
    FORMATS = _formats()
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


def decoded_name(name, fmt):
    """The decoded file of the ``.wlc`` file ``name``, in the format ``fmt``.

    ``photo.png.wlc`` -> ``photo.png.walloc.png``, ``song.ogg.wlc`` ->
    ``song.ogg.walloc.wav``: the whole source name is kept, so a decoded file
    never takes the name of its original and two ``.wlc`` files never map to
    one output.
    """
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    return stem + DECODED + _formats()[fmt][1]


def _cmd_decompress(args):
    from ._media import default_format

    common.check_output_dir(args.output_dir)
    if args.model is not None:
        codec = models.load_codec(args.model, args.device)
        _check_format_options(args, models.media_of_codec(codec))
    else:
        models.check_device(args.device)
        pretrained = models.Pretrained(args.device)
    files, failed = common.expand(
        args.inputs, lambda q: q.name.endswith(SUFFIX), f"{SUFFIX} files"
    )
    parsed = {}
    chosen = {}

    def parse(f):
        blob, meta = unpack_file(read_file(f))
        if args.model is None:
            chosen[f] = pretrained.for_blob(blob)
            _check_format_options(args, models.media_of_codec(chosen[f]))
        else:
            chosen[f] = codec
        media = models.media_of_codec(chosen[f])
        info = models.blob_info(blob)
        ndim = chosen[f].signal_ndim
        dtype = info["dtype"]
        channels = models.channels_of(info["signal_shape"], ndim)
        fmt = args.format or default_format(media, meta, _np_dtype(dtype), channels)
        parsed[f] = (blob, meta, fmt, decoded_name(f.name, fmt))

    failed += common.each(files, str, parse, True, "reading")
    outs = common.outputs_for(list(parsed), args.output_dir, lambda f: parsed[f][3])
    common.check_free(outs.values(), args.force, files + _model_inputs(args))
    if args.output_dir is not None and parsed:
        common.make_folder(args.output_dir)

    def decompress(f):
        blob, meta, fmt, _ = parsed[f]
        try:
            # restore=True: the sample type and scale recorded at compress time
            (signal,) = chosen[f].decompress(
                [blob], restore=True, max_values=args.max_values
            )
        except ValueError as e:  # name the option, not the Python argument
            raise ValueError(str(e).replace("max_values", "--max-values")) from None
        out = outs[f]
        common.write(
            out,
            lambda tmp: write_signal(tmp, signal, meta, fmt, args.quality),
            args.force,
        )
        common.say(args.quiet, f"{f} -> {out}")

    failed += common.each(list(parsed), str, decompress, args.quiet, "decompress")
    return 1 if failed else 0


def _np_dtype(name):
    import numpy as np

    return np.dtype(name)


def _blob_summary(path, data, model):
    blob, meta = unpack_file(data)
    info = models.blob_info(blob)
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
        from ._container import ENHANCED_VERSION

        enhanced = info["format_version"] == ENHANCED_VERSION
        out["made_by_model"] = info["fingerprint"] == model.fingerprint(enhanced).hex()
    return out


def _cmd_info(args):
    model = models.load_codec(args.model) if args.model else None

    def describe(name):
        path = Path(name)
        if models.is_shipped(name):
            summary = models.model_summary(name)
        else:
            with open(path, "rb") as f:
                head = f.read(4)
            if head in (FILE_MAGIC, BLOB_MAGIC):
                summary = _blob_summary(path, read_file(path), model)
            elif head[:2] == b"PK":
                try:
                    summary = models.model_summary(path)
                except CliError as e:  # its message names the file already
                    raise CliError(str(e).removeprefix(f"{path}: ")) from None
            else:
                raise CliError("neither a WaLLoC file (.wlc) nor a model file")
        if args.json:
            print(json.dumps(summary, default=str))
            return
        print(f"{name}:")
        for k, v in summary.items():
            if k != "file":
                print(f"  {k}: {f'{v:.4g}' if isinstance(v, float) else v}")

    return 1 if common.each(args.files, str, describe, True, "info") else 0


# ----------------------------------------------------------------------- parser
_DEVICE_HELP = "auto, cpu, cuda, cuda:N (default: the model's, auto)"
_MODEL_HELP = (
    "model file from 'walloc fit', or a shipped model's name ({shipped}). "
    "Default: a shipped model: {defaults}"
)


def _add_coding(sub, name, func, what, hint, default_model):
    from ._pretrained import list_pretrained

    p = sub.add_parser(
        name,
        help=f"{name} files ({hint})",
        description=f"{name.capitalize()} {what} with a fitted model; outputs "
        f"go next to the inputs unless -o is given ({hint}). Existing files are "
        "never overwritten without --force, and an input never, even with it.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders")
    p.add_argument(
        "-m",
        "--model",
        help=_MODEL_HELP.format(
            shipped=", ".join(list_pretrained()), defaults=default_model
        ),
    )
    p.add_argument("-o", "--output-dir", help="folder for the outputs")
    p.add_argument("--device", help=_DEVICE_HELP)
    p.add_argument("-f", "--force", action="store_true", help="overwrite outputs")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or per-file lines"
    )
    p.add_argument(
        "--max-values",
        type=positive_int,
        help="largest signal (scalar values: pixels x channels, or samples x "
        "channels): decompress refuses to decode larger ones (against "
        "decompression bombs) and compress refuses to write them, so that what "
        "it writes decodes (default: sklearn_walloc.codec.MAX_DECODED_VALUES)",
    )
    p.set_defaults(func=func)
    return p


def _add_rate(p):
    rate = p.add_mutually_exclusive_group()
    rate.add_argument(
        "--bpp",
        type=positive_float,
        metavar="BITS",
        help="rate control: the best quality in at most this many bits per pixel "
        "(images) or per sample and channel (audio) in the coded signal (the "
        ".wlc file adds its name, metadata and any alpha)",
    )
    rate.add_argument(
        "--psnr",
        type=psnr_db,
        metavar="DB",
        help="rate control: the smallest file whose decoded signal reaches this "
        "PSNR (dB; peak 255 for 8-bit images, 65535 for 16-bit audio)",
    )
    rate.add_argument(
        "--quality",
        dest="rate_quality",
        type=quality,
        metavar="Q",
        help="1-100: --psnr 20 + Q/5 for images (20.2-40 dB), 40 + 2Q/5 for "
        "audio (40.4-80 dB) (default: the model's own rate)",
    )


def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="WaLLoC: wavelet-domain learned lossy compression of images "
        "and audio (see docs/cli.md).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_fit(sub)
    p = _add_coding(
        sub,
        "compress",
        _cmd_compress,
        "images or audio files",
        f"x.png -> x.png{SUFFIX}",
        "rgb-16x for RGB images, a 1-channel image model for grey images, "
        "stereo-5x / mono-5x for stereo / mono audio",
    )
    _add_rate(p)
    p = _add_coding(
        sub,
        "decompress",
        _cmd_decompress,
        f"{SUFFIX} files",
        f"x.png{SUFFIX} -> x.png{DECODED}.png, s.ogg{SUFFIX} -> s.ogg{DECODED}.wav; "
        "the original's name is never taken",
        "the one that made the file, found from the model fingerprint it records",
    )
    p.add_argument(
        "--format",
        choices=tuple(_formats()),
        help="output format (default: lossless: png, or tiff for 32-bit and float "
        "greyscale; flac for FLAC sources, wav for other audio)",
    )
    p.add_argument(
        "--quality",
        type=quality,
        help="1-100, for the lossy formats jpg, webp and ogg (default: 90 for "
        "jpg; webp without it is lossless)",
    )

    p = sub.add_parser(
        "info",
        help="describe .wlc files and model files",
        description="Show what compressed files (.wlc or bare blobs), model "
        "files and shipped models (by name) hold.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "-m",
        "--model",
        help="also check whether this model (file or shipped name) made the "
        "compressed files",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_cmd_info)
    add_demo(sub)
    add_convert(sub)
    return parser


def _run(argv):
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already reported
        return e.code if isinstance(e.code, int) else 2
    # SIGTERM raises, so the finally blocks of atomic writes remove temp files.
    with sigterm_raises(), warnings.catch_warnings():
        # A library warning (clipped lossy audio, say) is one line, like ours.
        warnings.showwarning = lambda message, *_: common.warn(str(message))
        try:
            return args.func(args)
        except (CliError, OutputExists) as e:
            common.error(str(e))
            return 1
        except Terminated:
            common.error("terminated")
            return 143
        except Exception as e:  # a bug: still one line, never a traceback
            common.error(common.reason(e))
            return 1


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
        ``KeyboardInterrupt`` (also while the command imports its modules),
        143 on ``SIGTERM``.
    """
    try:
        return _run(argv)
    except KeyboardInterrupt:
        common.error("interrupted")
        return 130


if __name__ == "__main__":  # python -m sklearn_walloc.cli
    sys.exit(main())
