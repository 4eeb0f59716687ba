"""``walloc demo``: fit on the bundled photos, code held-out ones, report."""

import os
import statistics
import time
from pathlib import Path

from . import _cli_common as common
from ._cli_common import CliError, nonneg_int, positive_int
from ._cli_models import reduction

#: Timed calls per photo and direction, after one untimed warm-up call.
REPEATS = 3


def _median_seconds(call, repeats=REPEATS):
    """Median wall time of ``repeats`` calls of ``call`` (already warm)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _load_note():
    """A warning when other processes compete for the CPUs: torch's threads
    then wait on each other and the speeds drop several-fold, run to run."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return ""
    cpus = os.cpu_count() or 1
    if load <= cpus:
        return ""
    return (
        f" This machine is busy (load average {load:.1f} on {cpus} CPUs): the "
        "speeds are lower and vary between runs."
    )


def cmd_demo(args):
    import numpy as np
    import torch
    from PIL import Image

    from . import metrics
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
    common.make_folder(outdir)
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
        f"latent_dim={codec.latent_dim}: {reduction(codec):.3g}x fewer values "
        f"than RGB pixels ({codec.module_.encoder.weight.numel()} encoder weights)"
    )
    print(f"\nheld-out photos (24-bit RGB source), side-by-side PNGs in {outdir}/")
    header = (
        f"{'photo':<10} {'size':>9} {'bytes':>7} {'bpp':>6} {'ratio':>6} "
        f"{'PSNR dB':>7} {'enc MP/s':>8} {'dec MP/s':>8}"
    )
    print(header)
    print("-" * len(header))
    total_bytes = total_pixels = 0
    enc_seconds = dec_seconds = 0.0
    for name, x in zip(names, held):
        h, w = x.shape[:2]
        # The first call of each size builds the fused filters and the
        # least-squares edge systems; the timed calls are the warm ones.
        (blob,) = codec.compress([x])
        (y,) = codec.decompress([blob], restore=True)
        enc = _median_seconds(lambda x=x: codec.compress([x]))
        dec = _median_seconds(lambda b=blob: codec.decompress([b], restore=True))
        mp = h * w / 1e6
        bpp = metrics.bits_per_pixel([blob], x)
        psnr = metrics.psnr(x, y)
        print(
            f"{name:<10} {f'{w}x{h}':>9} {len(blob):>7} {bpp:>6.3f} {24 / bpp:>6.1f} "
            f"{psnr:>7.2f} {mp / enc:>8.1f} {mp / dec:>8.1f}"
        )
        total_bytes += len(blob)
        total_pixels += h * w
        enc_seconds += enc
        dec_seconds += dec
        gap = np.full((h, 8, 3), 255, np.uint8)
        side = np.concatenate([x, gap, y], axis=1)
        out = outdir / f"{name}_original_vs_walloc.png"
        common.write(
            out, lambda tmp, s=side: Image.fromarray(s).save(tmp, format="PNG"), True
        )
    bpp = 8 * total_bytes / total_pixels
    print(
        f"\nall: {bpp:.3f} bits per pixel, compression ratio {24 / bpp:.1f}:1, "
        f"encode {total_pixels / 1e6 / enc_seconds:.1f} MP/s, "
        f"decode {total_pixels / 1e6 / dec_seconds:.1f} MP/s"
    )
    print(
        f"speeds: median of {REPEATS} warm calls per photo, one photo per call, "
        f"{torch.get_num_threads()} torch thread(s); enc = compress() (wavelet "
        "analysis, encoder, entropy coding to bytes), dec = decompress() (entropy "
        "decoding, decoder, synthesis, uint8 output). The encoder alone is faster "
        f"(docs/benchmarks.md).{_load_note()}"
    )
    print(f"wrote {len(held)} side-by-side PNGs (original | WaLLoC) to {outdir}/")
    return 0


def add_demo(sub):
    p = sub.add_parser(
        "demo",
        help="quick start on the bundled photos",
        description="Fit a 16x model on the photos bundled with scikit-image and "
        "scikit-learn, compress held-out photos, report rate, quality and speed "
        f"(median of {REPEATS} warm calls), and write side-by-side PNGs "
        "(re-running replaces them).",
    )
    p.add_argument(
        "-o", "--output-dir", default="walloc_demo", help="(default: %(default)s)"
    )
    p.add_argument(
        "--max-iter",
        type=nonneg_int,
        default=0,
        help="training steps (default: %(default)s, the closed form)",
    )
    p.add_argument("--latent-dim", type=positive_int, default=12)
    p.add_argument("--levels", type=positive_int, default=3)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
