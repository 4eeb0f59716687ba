"""``walloc fit``: fit a codec on image or audio files and save it."""

import os
import time
from collections import Counter
from pathlib import Path

from . import _cli_common as common
from ._cli_common import CliError, nonneg_int, positive_float, positive_int
from ._cli_models import channels_of, reduction, training_line

WHAT = "images or audio files"


def _check_same_channels(files, signals, ndim):
    """Refuse inputs of different channel counts, naming the odd ones out."""
    counts = [channels_of(s.shape, ndim) for s in signals]
    common_count, _ = Counter(counts).most_common(1)[0]
    reference = files[counts.index(common_count)]
    odd = [(f, c) for f, c in zip(files, counts) if c != common_count]
    if odd:
        f, c = odd[0]
        more = f" (and {len(odd) - 1} more file(s))" if len(odd) > 1 else ""
        raise CliError(
            f"{f} has {c} channel(s), but {reference} has {common_count}{more}; fit "
            "files with the same number of channels (e.g. all RGB, or all stereo)"
        )
    return common_count


def _params(args, ndim, channels):
    levels = args.levels if args.levels is not None else 3
    bands = channels * 2 ** (levels * ndim)
    if args.latent_dim is not None:
        latent_dim = args.latent_dim
    else:
        target = args.reduction or (16.0 if ndim == 2 else 4.0)
        latent_dim = max(1, min(bands, round(bands / target)))
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
    return params


def cmd_fit(args):
    from ._distributed import launched_by_torchrun
    from ._media import media_of, read_signal

    torchrun = launched_by_torchrun()
    if torchrun and os.environ["RANK"] != "0":
        args.quiet = True  # one report, from rank 0
    files, failed = common.expand(args.inputs, common.is_source, WHAT)
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
    common.check_free([out], args.force, files)
    main = not torchrun or int(os.environ["RANK"]) == 0
    if main:  # a missing or read-only folder fails now, not after the fit
        common.check_writable(out.parent)
    signals = {}
    failed += common.each(
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
            else f"no {WHAT} given"
        )
    channels = _check_same_channels(files, [signals[f] for f in files], ndim)
    params = _params(args, ndim, channels)
    from ._distributed import fit_distributed
    from .codec import WallocCodec

    start = time.perf_counter()
    try:
        if torchrun:
            # One replica per process; rank 0 writes the model and reports.
            codec = fit_distributed(WallocCodec(**params), [signals[f] for f in files])
        else:
            codec = WallocCodec(**params).fit([signals[f] for f in files])
    except ValueError as e:
        raise CliError(f"cannot fit: {e}") from None
    elapsed = time.perf_counter() - start
    codec.verbose = 0
    if not main:
        return 0
    try:
        common.write(out, codec.save, args.force)
    except common.OutputExists as e:
        raise CliError(str(e)) from None
    common.say(
        args.quiet,
        f"fitted on {len(files)} file(s) in {elapsed:.1f} s: {channels} channel(s), "
        f"levels={codec.levels}, latent_dim={codec.latent_dim} "
        f"({reduction(codec):.3g}x fewer values)\n{training_line(codec)}"
        f"\nwrote {out}",
    )
    return 0


def add_fit(sub):
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
        help="model file to write (default: %(default)s); its folder is created "
        "and checked for writing before the fit",
    )
    p.add_argument(
        "--latent-dim",
        type=positive_int,
        help="latent channels (default: from --reduction)",
    )
    p.add_argument(
        "--reduction",
        type=positive_float,
        help="target dimensionality "
        "reduction when --latent-dim is not given (default: 16 for images, "
        "4 for audio)",
    )
    p.add_argument(
        "--levels", type=positive_int, help="wavelet packet levels (default: 3)"
    )
    p.add_argument(
        "--max-iter",
        type=nonneg_int,
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
        "--learning-rate", type=positive_float, help="Adam's step (default: 3e-4)"
    )
    p.add_argument(
        "--n-iter-no-change",
        type=positive_int,
        help="validations (one per 10 steps) without improvement before training "
        "stops (default: 10)",
    )
    p.add_argument(
        "--signal-ndim",
        type=int,
        choices=(1, 2),
        help="1 = audio, 2 = images (default: from the file types)",
    )
    p.add_argument("--decoder-width", type=nonneg_int)
    p.add_argument("--decoder-depth", type=nonneg_int)
    p.add_argument("--latent-bits", type=positive_int)
    p.add_argument("--wavelet")
    p.add_argument("--crop-size", type=positive_int)
    p.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, ... (default: auto)"
    )
    p.add_argument(
        "-f", "--force", action="store_true", help="overwrite the model file"
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or report"
    )
    p.set_defaults(func=cmd_fit)
