"""Helpers shared by the benchmark scripts.

Every script in ``benchmarks/`` is built from these: the command-line options
(:func:`benchmark_parser`: ``--quick``, ``--out``, ``--threads``,
``--replot``); the run around it (:class:`BenchmarkRun`: torch threads, the
machine at the start and the end, the runtime, and ``finish``, which writes
``name.{md,json,csv}`` with :func:`write_report`); the one timing loop
(:func:`time_calls`, with :func:`best_time` and :func:`median_time` on top,
:class:`Timer` for one block or a stopwatch, :func:`device_sync` for CUDA);
Markdown tables, figures and the CSV/JSON writers; image quality through
:mod:`sklearn_walloc.metrics` (:func:`psnr`, :func:`ms_ssim` at peak 255); the
bits of Pillow's lossless coders and of latents as a lossless WebP mosaic
(:func:`latent_webp_bits`); and the extra photo collections the image
benchmarks evaluate on, never a training source: the "nature" photos of the
Debian package ``mate-backgrounds`` (GPL-2+, 12 JPEG photographs of 1280x1024
to 2560x1920) and the photographs among OpenCV's sample images (``opencv-doc``,
Apache-2.0 AND BSD-3-Clause, 14 classic test photos), fetched with ``apt-get
download`` and unpacked with ``dpkg -x`` into a cache folder (nothing is
installed system-wide). Scripts import these helpers (and ``_machine``,
``_peers``, ``_audio_data``), never each other.

Benchmarks go through the public API (``WallocTransformer``, ``WallocCodec``,
``metrics``, ``datasets``). Where a script measures a private component on
purpose, the import sits in one function that says why:

- ``codec.py``, ``_entropy_coder_alone``: the entropy coder's share of
  ``compress`` / ``decompress``;
- ``entropy_coding.py``, ``_private_coder``: the coder alone, both payload
  orders, optionally as of an older git revision;
- ``quality.py``, ``evaluate_pca`` (the wavelet packet transform without a
  quantiser) and ``_module_rates`` (the fitted module without numpy/chunking);
- ``rate_distortion.py``, ``_walloc_quantiser``: the pixel-PCA baseline
  quantised and coded with WaLLoC's own bottleneck and coder;
- ``borders.py``, ``_fit`` and ``_plain_encoder``: the periodic packets of
  model format 1 and the encoder without the end-of-axis least squares;
- ``speed.py``, ``single_conv_kernel`` / ``_single_conv_encoder``: the former
  single-kernel encoder, the reference for the fused one;
- ``gpu_check.py``, ``_encoder_module_seconds``: the encoder on a device tensor;
- ``decode_memory.py``: hostile blobs made with the coder and the container;
- ``training.py``, ``_trainer_internals``: the training loop's internals, and
  ``_held_out_bytes``: a codec carrying weights trained outside ``fit``;
  ``train_pretrained.py``, ``_validation_interval``: the estimator's steps per
  validation, to label its recorded validation curve;
- ``rd_ladder.py``, ``_encoder_components``: the closed form's principal
  axes (its encoder's 1x1 weights), for the ladder diagnosis;
- :func:`activate_refinement` here: weights for the residual decoder path that
  a closed-form fit leaves at zero.
"""

import argparse
import csv
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PEAK = 255.0
SOURCE_BPP = 24.0  # 8-bit RGB
MATE_PACKAGE = "mate-backgrounds"
MATE_NATURE = "usr/share/backgrounds/mate/nature"


# ------------------------------------------------------------------ scripts
def benchmark_parser(doc, threads=None, replot=None):
    """An argument parser with the options every benchmark script shares.

    ``--quick`` and ``--out``; ``--threads`` (torch threads, default
    ``threads``) and ``--replot`` (redraw from ``--out/<replot>``) where given.
    Scripts add their own options to it.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    if threads is not None:
        parser.add_argument(
            "--threads", type=int, default=threads, help="torch threads"
        )
    if replot is not None:
        parser.add_argument(
            "--replot",
            action="store_true",
            help=f"only redraw the plot and Markdown from --out/{replot}",
        )
    return parser


class BenchmarkRun:
    """One run of a benchmark script: threads, machine, runtime and report files.

    ``run = BenchmarkRun("name", args)`` sets torch's threads (``args.threads``
    where the parser has it) and records the machine; ``run.finish(report,
    markdown, rows)`` adds the machine at the end and the runtime to ``report``
    and writes ``name.md`` (``markdown(report)``), ``.json`` and ``.csv`` into
    ``args.out``.
    ``BenchmarkRun.replot(...)`` redraws a committed report without running.
    """

    def __init__(self, name, args):
        from _machine import machine_info

        self.name, self.out = name, Path(args.out)
        if getattr(args, "threads", None) is not None:
            torch.set_num_threads(args.threads)
        self.machine = machine_info()
        self._clock = Timer()

    def finish(self, report, markdown, rows=()):
        """Complete ``report``, then write it with ``markdown(report)`` as text."""
        from _machine import machine_info

        report["machine_end"] = machine_info()
        report["runtime_s"] = self._clock.elapsed()
        write_report(self.out, self.name, report, markdown(report), rows)
        return report

    @staticmethod
    def replot(out, name, plot, markdown):
        """Redraw ``name.png`` and rewrite ``name.md`` from ``out/name.json``."""
        out = Path(out)
        report = json.loads((out / f"{name}.json").read_text())
        plot(report, out / f"{name}.png")
        text = markdown(report)
        (out / f"{name}.md").write_text(text, encoding="utf-8")
        print(text)
        return report


def save_figure(fig, path, dpi=100):
    """Lay out, write and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


# ------------------------------------------------------------------ metrics
def psnr(ref, rec):
    """PSNR in dB (peak 255): :func:`sklearn_walloc.metrics.psnr`."""
    # Imported here: decode_memory.py's children load this module against an
    # older tree of the library, which has no metrics module.
    from sklearn_walloc import metrics

    return metrics.psnr(ref, rec, data_range=PEAK)


def ms_ssim(ref, rec):
    """MS-SSIM (peak 255): :func:`sklearn_walloc.metrics.ms_ssim`."""
    from sklearn_walloc import metrics

    return metrics.ms_ssim(ref, rec, data_range=PEAK)


def check_ms_ssim(ref, rec):
    """Largest gap between :func:`ms_ssim` and pytorch-msssim on one pair."""
    from pytorch_msssim import ms_ssim as reference

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).permute(2, 0, 1)[None]

    with torch.no_grad():
        expected = float(reference(t(ref), t(rec), data_range=PEAK))
    return abs(expected - ms_ssim(ref, rec)), expected


def as_uint8(x):
    """Round and clip a reconstruction to uint8 (what a user would store)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, 255).astype(np.uint8)


# -------------------------------------------------------------------- models
def activate_refinement(model, scale=1e-3, seed=0):
    """Give a fitted model's residual decoder path small random weights.

    A closed-form fit leaves that path exactly zero, and inference then skips
    it; a benchmark that times a decoder of some width must make the path run,
    as in a trained model. The output moves by about ``scale`` of the data's
    standard deviation. Returns the model.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.module_.decoder.refine.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    model._runtime = {}
    return model


# -------------------------------------------------------------------- timing
def device_sync(device):
    """A function that waits for ``device``'s queued work (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_calls(fn, repeat=3, *, warmup=1, min_time=0.0, max_repeat=None, sync=None):
    """Seconds taken by each timed call of ``fn``, a list.

    ``warmup`` untimed calls first (kernels, caches, runtime models); then at
    least ``repeat`` timed calls, going on while fewer than ``min_time`` seconds
    have passed, up to ``max_repeat`` calls. ``sync`` (see :func:`device_sync`)
    is called after every call, so that an asynchronous device is timed whole.
    This is the one timing loop of the benchmarks: scripts take the minimum
    (:func:`best_time`), the median (:func:`median_time`) or the whole list.
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
        sync()
    max_repeat = max(repeat, max_repeat or repeat)
    times, clock = [], Timer()
    while len(times) < max_repeat and (
        len(times) < repeat or clock.elapsed() < min_time
    ):
        with Timer(sync) as t:
            fn()
        times.append(t.s)
    return times


def best_time(fn, repeat=3, *, warmup=0, **kwargs):
    """Fastest of ``repeat`` calls of ``fn``, in seconds (:func:`time_calls`)."""
    return min(time_calls(fn, repeat, warmup=warmup, **kwargs))


def median_time(fn, repeat=5, *, warmup=1, **kwargs):
    """Median of ``repeat`` calls of ``fn`` after ``warmup``, in seconds."""
    return statistics.median(time_calls(fn, repeat, warmup=warmup, **kwargs))


class Timer:
    """``with Timer() as t: ...``; then ``t.s`` holds the elapsed seconds.

    ``Timer(sync)`` calls ``sync()`` (see :func:`device_sync`) before reading
    the clock at the end.
    """

    def __init__(self, sync=None):
        self._sync = sync
        self._t = time.perf_counter()  # so that Timer().elapsed() is a stopwatch

    def __enter__(self):
        self._t = time.perf_counter()
        return self

    def elapsed(self):
        """Seconds since the block began, or since creation outside a block."""
        return time.perf_counter() - self._t

    def __exit__(self, *exc):
        if self._sync is not None:
            self._sync()
        self.s = time.perf_counter() - self._t


# ---------------------------------------------------------------------- data
def _cache_dir():
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "sklearn_walloc_bench"


def debian_package_dir(package):
    """Root of the unpacked Debian ``package`` in the cache, or None.

    ``apt-get download`` + ``dpkg -x`` into ``<cache>/<package>`` on first use
    (nothing is installed system-wide); None where apt or the network is not
    there.
    """
    cache = _cache_dir() / package
    if (cache / "usr").is_dir():
        return cache
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        return None
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["apt-get", "download", package],
            cwd=cache,
            check=True,
            capture_output=True,
            timeout=300,
        )
        (deb,) = sorted(cache.glob(f"{package}_*.deb"))[-1:]
        subprocess.run(
            ["dpkg", "-x", str(deb), str(cache)], check=True, capture_output=True
        )
        deb.unlink()
    except (subprocess.SubprocessError, OSError, ValueError) as e:
        print(f"[warn] could not fetch {package}: {e}")
        return None
    return cache


def debian_package_version(root, package):
    """The version in the first line of an unpacked package's Debian changelog."""
    import gzip

    path = Path(root) / "usr/share/doc" / package / "changelog.Debian.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            line = f.readline()
    except OSError:
        return "unknown"
    return line.split("(", 1)[-1].split(")", 1)[0] if "(" in line else "unknown"


def mate_nature_dir():
    """Folder holding the ``mate-backgrounds`` nature photos, or None.

    Uses the installed package if present, else a cached unpacked copy, else
    ``apt-get download mate-backgrounds`` + ``dpkg -x`` into the cache.
    """
    installed = Path("/") / MATE_NATURE
    if installed.is_dir():
        return installed
    root = debian_package_dir(MATE_PACKAGE)
    target = None if root is None else root / MATE_NATURE
    return target if target is not None and target.is_dir() else None


def load_mate_photos(short_side=512, aspect=1.5, limit=None):
    """The ``mate-backgrounds`` nature photos, resized and centre-cropped.

    Each photo is downscaled with Lanczos so that its shorter side is
    ``short_side`` (which also removes most of its own JPEG artefacts), then
    centre-cropped to ``short_side x round(short_side * aspect)`` (landscape).
    Returns ``(photos, names)``; empty lists when the package is unavailable.
    """
    folder = mate_nature_dir()
    if folder is None:
        return [], []
    photos, names = [], []
    for path in sorted(folder.glob("*.jpg"))[:limit]:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        s = short_side / min(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.LANCZOS)
        w, h = img.size
        cw, ch = min(w, round(short_side * aspect)), min(h, short_side)
        left, top = (w - cw) // 2, (h - ch) // 2
        photos.append(np.asarray(img.crop((left, top, left + cw, top + ch))))
        names.append(path.stem)
    return photos, names


# Shorter sides of the held-out photos in rd_curves.py: varied, odd ones too,
# so that no codec is measured at one block-aligned size only.
HELD_OUT_SHORT_SIDES = (512, 517, 544, 575, 601, 640, 659, 683, 704, 711, 736, 768)
# The photographs among OpenCV's sample images (opencv-doc: Apache-2.0 AND
# BSD-3-Clause, Intel and the OpenCV contributors); the rest are drawings,
# renders, charts, logos, stereo twins and calibration shots.
OPENCV_PACKAGE = "opencv-doc"
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
OPENCV_PHOTOS = (
    "aero3.jpg",
    "aloeL.jpg",
    "baboon.jpg",
    "board.jpg",
    "building.jpg",
    "butterfly.jpg",
    "ela_original.jpg",
    "fruits.jpg",
    "graf1.png",
    "home.jpg",
    "leuvenA.jpg",
    "messi5.jpg",
    "rubberwhale1.png",
    "squirrel_cls.jpg",
)
OPENCV_SCALE = 0.75


def _lanczos(img, scale):
    w, h = img.size
    return img.resize((round(w * scale), round(h * scale)), Image.LANCZOS)


def load_mate_photos_varied(limit=None, sides=HELD_OUT_SHORT_SIDES[:6]):
    """The ``mate-backgrounds`` nature photos at varied sizes, uncropped.

    Photo ``i`` (sorted by name) is downscaled with Lanczos so that its
    shorter side is ``sides[i % len(sides)]`` (by default 512-640 pixels, odd
    sizes among them; ``HELD_OUT_SHORT_SIDES`` goes up to 768; the originals
    are 1280x1024 to 2560x1920, so this also sheds most of their own JPEG
    artefacts). Returns ``(photos, names)``; empty
    lists when the package is unavailable.
    """
    folder = mate_nature_dir()
    if folder is None:
        return [], []
    photos, names = [], []
    for i, path in enumerate(sorted(folder.glob("*.jpg"))[:limit]):
        img = Image.open(path).convert("RGB")
        img = _lanczos(img, sides[i % len(sides)] / min(img.size))
        photos.append(np.asarray(img))
        names.append(path.stem)
    return photos, names


def load_opencv_photos(limit=None, scale=OPENCV_SCALE):
    """The photographs among OpenCV's sample images (``opencv-doc``).

    Classic test photos (baboon, fruits, building, ...) of 493x356 to
    1282x1110 pixels, most stored as JPEG; each is downscaled by ``scale``
    with Lanczos (a non-integer factor, so the source's 8x8 JPEG grid and most
    of its artefacts do not survive), which leaves varied, odd sizes of 267
    to 832 pixels on the shorter side. Returns ``(photos, names, version)``;
    empty lists and None when the package is unavailable.
    """
    root = debian_package_dir(OPENCV_PACKAGE)
    if root is None or not (root / OPENCV_DATA).is_dir():
        return [], [], None
    photos, names = [], []
    for name in OPENCV_PHOTOS[:limit]:
        img = Image.open(root / OPENCV_DATA / name).convert("RGB")
        photos.append(np.asarray(_lanczos(img, scale)))
        names.append(Path(name).stem)
    return photos, names, debian_package_version(root, OPENCV_PACKAGE)


def load_held_out_sets(names, quick=False, max_photos=None):
    """The held-out photo sets of ``rd_curves.py`` / ``rd_ladder.py``.

    ``names`` among ``"bundled"`` (``load_photos(split="holdout")``),
    ``"mate"`` (:func:`load_mate_photos_varied`) and ``"opencv"``
    (:func:`load_opencv_photos`), in the order given; ``max_photos`` per
    Debian set (``quick``: 2, 2 and 3 photos). Returns ``(sets, sources)``:
    ``name -> (photos, names)`` and ``name -> a line on the source``; a set
    whose package cannot be fetched is left out with a warning.
    """
    from sklearn_walloc.datasets import load_photos

    sets, sources = {}, {}
    if "bundled" in names:
        photos, ids = load_photos(split="holdout", return_names=True)
        sets["bundled"] = (photos[:2] if quick else photos, ids[:2] if quick else ids)
        sources["bundled"] = "scikit-image/scikit-learn, `load_photos(split='holdout')`"
    if "mate" in names:
        photos, ids = load_mate_photos_varied(limit=2 if quick else max_photos)
        if photos:
            root = debian_package_dir(MATE_PACKAGE)
            version = debian_package_version(root, MATE_PACKAGE) if root else "?"
            sets["mate"] = (photos, ids)
            sources["mate"] = (
                f"Debian `mate-backgrounds` {version} (GPL-2+), nature photos, "
                "Lanczos-downscaled to shorter sides of 512-640 px (odd ones among "
                "them), uncropped"
            )
    if "opencv" in names:
        photos, ids, version = load_opencv_photos(limit=3 if quick else max_photos)
        if photos:
            sets["opencv"] = (photos, ids)
            sources["opencv"] = (
                f"Debian `opencv-doc` {version} (Apache-2.0 AND BSD-3-Clause), the "
                "photographs among OpenCV's sample images, Lanczos-downscaled by 3/4"
            )
    for name in names:
        if name not in sets:
            print(f"[warn] held-out set {name!r} unavailable")
    return {k: sets[k] for k in names if k in sets}, sources


def png_bits(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", optimize=True)
    return 8 * buf.tell()


def latent_webp_bits(q, bound=127):
    """Bits of lossless WebP of integer latents ``(C, H, W)`` in
    ``[-bound, bound]``, the channels tiled as a uint8 grayscale mosaic
    (``method=6``: the paper's storage format)."""
    c, h, w = q.shape
    rows = int(np.ceil(np.sqrt(c)))
    cols = int(np.ceil(c / rows))
    mosaic = np.zeros((rows * h, cols * w), np.uint8)
    for k in range(c):  # a dozen channels: tiling, not a hot path
        a, b = divmod(k, cols)
        mosaic[a * h : (a + 1) * h, b * w : (b + 1) * w] = q[k] + bound
    buf = io.BytesIO()
    Image.fromarray(mosaic).save(buf, "WEBP", lossless=True, quality=100, method=6)
    return 8 * buf.tell()


def webp_lossless_bits(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "WEBP", lossless=True, quality=50, method=6)
    return 8 * buf.tell()


# ------------------------------------------------------------------- writers
def fmt(value, spec, missing="n/a"):
    """``format(value, spec)``, or ``missing`` for None and non-finite floats."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def load_text(info):
    """The load averages (1, 5, 15 min) of a :func:`machine_info` dict, as text."""
    load = info.get("load_average")
    return "n/a" if load is None else ", ".join(f"{v:.1f}" for v in load)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path, rows):
    """Rows: list of dicts with the same keys."""
    if not rows:
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def write_report(out, name, report, text, rows=()):
    """Write ``name.md`` (``text``), ``name.json`` (``report``) and, given rows,
    ``name.csv`` into ``out``; print ``text``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    write_json(out / f"{name}.json", report)
    write_csv(out / f"{name}.csv", list(rows))
    print(text)


def mean_ci95(values):
    """Mean and half-width of the 95% t confidence interval of the mean."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), 0.0
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)
