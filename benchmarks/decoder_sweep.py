"""What rgb-16x's trained decoder buys, and what it costs to decode (issues 19, 21).

What it measures
----------------
The shipped ``rgb-16x`` is the closed form of 32 photos (12 latents from 192
bands, ``levels=3``) with a trained decoder: the linear path plus a residual
network on the latent grid (``decoder_width=48``, ``decoder_depth=2``), which
is most of what decoding costs. This script trains the same model with other
decoders, by the same recipe as ``train_pretrained.py`` (the public
``WallocTransformer.fit``: the closed form, then 16000 steps that train the
decoder alone, lr 1e-3, batches of 16, the state that validates best on 15% of
the photos kept; ``random_state=0``), and for each:

- **quality**: PSNR of ``compress`` then ``decompress(restore=True)`` at the
  model's own rate (gain 0) on held-out photos, never a training source (the
  bundled held-out photos, mate-backgrounds' nature photos and OpenCV's sample
  photos at varied sizes, as ``rd_curves.py``), as the gain over the closed
  form of the same photos (width 0: no residual path) and against the shipped
  model;
- **cost**: the residual network's multiply-adds per pixel (its convolutions
  on the latent grid, 1/64 of the pixels) and the decoder's time
  (``inverse_transform`` of the mate photos' latents at 1080x768, uint8 out:
  the residual network, the synthesis and the output conversion; median of
  interleaved repeats, 2 threads);
- **data**: ``"photos"`` is the 32 training photos as shipped;
  ``"multiscale"`` adds each photo downscaled by 2 (Lanczos): more content per
  pixel at the same crop size (#21 asked whether more data pays).

Run: ``python benchmarks/decoder_sweep.py`` trains the missing
configurations into ``--models`` (default: the benchmark cache; about 10
minutes each on one core; ``--train`` names a subset, ``--threads`` the torch
threads) and then scores and times all
of them; ``--no-train`` only scores and times what is there, ``--train-only``
only trains (two at once on two cores: about 6 GB each). Time on a
quiet machine: the scores do not depend on the load, the times do. Writes
``decoder_sweep.md`` / ``.json`` / ``.png`` in ``--out``.
"""

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    _cache_dir,
    benchmark_parser,
    load_held_out_sets,
    load_mate_photos,
    psnr,
    save_figure,
)
from _machine import machine_line
from _pretrain_data import load_training_photos, recipe
from PIL import Image

from sklearn_walloc import WallocCodec

STEPS = 16000
#: name -> (decoder_width, decoder_depth, data); width 0 is the closed form.
#: The shipped model (w48 d2 on "photos", trained by an earlier version of the
#: library) is scored from its file too.
CONFIGS = {
    "closed form": (0, 0, "photos"),
    "w24 d2": (24, 2, "photos"),
    "w32 d1": (32, 1, "photos"),
    "w48 d1": (48, 1, "photos"),
    "w48 d2": (48, 2, "photos"),
    "w64 d2": (64, 2, "photos"),
    "w32 d1 multiscale": (32, 1, "multiscale"),
}
SHIPPED = "shipped rgb-16x (w48 d2)"
SETS = ("bundled", "mate", "opencv")


def _file(models, name):
    return Path(models) / (name.replace(" ", "_") + ".npz")


def training_data(kind, quick):
    photos, _ = load_training_photos()
    if quick:
        photos = [p[:256, :256] for p in photos[:4]]
    if kind == "multiscale":
        half = []
        for p in photos:
            img = Image.fromarray(p)
            w, h = img.size
            half.append(np.asarray(img.resize((w // 2, h // 2), Image.LANCZOS)))
        photos = photos + half
    return photos


def train(name, models, quick):
    width, depth, kind = CONFIGS[name]
    steps = 0 if width == 0 else (3 if quick else STEPS)
    model = recipe(
        steps,
        levels=3,
        latent_dim=12,
        train_encoder=False,
        decoder_width=width,
        decoder_depth=depth,
    )
    with Timer() as t:
        model.fit(training_data(kind, quick))
    model.loss_curve_ = []
    model.save(_file(models, name))
    meta = {
        "fit_s": t.s,
        "steps": steps,
        "kept": model.n_iter_kept_,
        "best_validation_db": model.best_validation_score_,
    }
    _file(models, name).with_suffix(".json").write_text(json.dumps(meta))
    print(f"trained {name}: {meta}", flush=True)


def residual_macs_per_pixel(codec):
    """Multiply-adds of the residual network's convolutions per output pixel
    (each runs once per latent position; ``2**(2 levels)`` pixels a position)."""
    refine = codec.module_.decoder.refine
    if refine is None or codec.n_iter_kept_ == 0:
        return 0.0
    # A convolution's weights are its multiply-adds per output position.
    macs = sum(
        m.weight.numel() for m in refine.modules() if isinstance(m, torch.nn.Conv2d)
    )
    return macs / 4**codec.levels


def scores(codec, sets):
    out = {}
    for set_name, (photos, _) in sets.items():
        blobs = codec.compress(photos)
        recs = codec.decompress(blobs, restore=True)
        out[set_name] = {
            "psnr_db": float(np.mean([psnr(p, r) for p, r in zip(photos, recs)])),
            "bpp": 8
            * sum(map(len, blobs))
            / sum(p.shape[0] * p.shape[1] for p in photos),
        }
    return out


def decode_times(codecs, photos, repeats):
    """Median seconds of ``inverse_transform`` of each codec's latents of
    ``photos`` (uint8 out), interleaved over repeats."""
    latents = {n: c.transform(photos) for n, c in codecs.items()}
    for n, c in codecs.items():  # warm-up: cached decoders, kernels
        c.inverse_transform(latents[n])
    times = {n: [] for n in codecs}
    for _ in range(repeats):
        for n, c in codecs.items():
            start = time.perf_counter()
            c.inverse_transform(latents[n])
            times[n].append(time.perf_counter() - start)
    return {n: statistics.median(ts) for n, ts in times.items()}


def measure(args):
    models = Path(args.models)
    models.mkdir(parents=True, exist_ok=True)
    wanted = args.train if args.train else list(CONFIGS)
    if not args.no_train:
        for name in wanted:
            if not _file(models, name).exists():
                train(name, models, args.quick)
    if args.train_only:
        return None
    names = [n for n in CONFIGS if _file(models, n).exists()]
    codecs = {n: WallocCodec.load(_file(models, n)).set_params(gain=0) for n in names}
    codecs[SHIPPED] = WallocCodec.from_pretrained("rgb-16x").set_params(gain=0)
    sets, sources = load_held_out_sets(SETS, quick=args.quick)
    report = {"configs": {}, "sources": sources, "steps": STEPS}
    for n, c in codecs.items():
        meta_path = _file(models, n).with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        width, depth, kind = CONFIGS.get(n, (48, 2, "photos"))
        if n == SHIPPED:
            meta = {"steps": STEPS, "kept": c.n_iter_kept_}
        report["configs"][n] = {
            "width": width,
            "depth": depth,
            "data": kind,
            **meta,
            "macs_per_pixel": residual_macs_per_pixel(c),
            "held_out": scores(c, sets),
        }
        print(n, json.dumps(report["configs"][n]["held_out"]), flush=True)
    photos, _ = load_mate_photos(short_side=768, aspect=1080 / 768, limit=4)
    if args.quick:
        photos = [p[:256, :256] for p in photos[:2]]
    if photos:
        seconds = decode_times(codecs, photos, 3 if args.quick else args.repeats)
        pixels = sum(p.shape[0] * p.shape[1] for p in photos)
        for n, s in seconds.items():
            report["configs"][n]["decode_ms_per_mp"] = 1e3 * s / (pixels / 1e6)
        report["timed_photos"] = [f"{p.shape[1]}x{p.shape[0]}" for p in photos]
    return report


def markdown(r):
    base = r["configs"].get("closed form")
    lines = [
        "# rgb-16x's decoder: quality against decoding cost",
        "",
        f"Machine: {machine_line(r['machine'])}, {r['threads']} torch threads; "
        f"load average {r['machine']['load_average'][0]:.1f} at the start, "
        f"{r['machine_end']['load_average'][0]:.1f} at the end.",
        "",
        "Each row is rgb-16x's closed-form encoder (the same 32 training photos) "
        f"with the decoder named, trained for {r['steps']} steps by the shipped "
        "recipe (`train_pretrained.py`); PSNR at gain 0 on held-out photos, as "
        "the gain over the closed form's decoder, dB. Decode: `inverse_transform` "
        f"of 4 mate photos' latents ({', '.join(r.get('timed_photos', []))}), ms "
        "per megapixel (residual network, synthesis, uint8 output).",
        "",
        "| decoder | data | MACs / pixel | decode ms / MP | kept step | "
        + " | ".join(f"{s} dB" for s in r["sources"])
        + " | mean gain |",
        "|---|---|---|---|---|" + "---|" * len(r["sources"]) + "---|",
    ]
    for n, c in r["configs"].items():
        cells = []
        gains = []
        for s in r["sources"]:
            p = c["held_out"][s]["psnr_db"]
            g = p - base["held_out"][s]["psnr_db"] if base else float("nan")
            gains.append(g)
            cells.append(f"{p:.2f} ({g:+.2f})")
        ms = c.get("decode_ms_per_mp")
        lines.append(
            f"| {n} | {c['data']} | {c['macs_per_pixel']:.0f} | "
            f"{'' if ms is None else f'{ms:.1f}'} | {c.get('kept', '')} | "
            + " | ".join(cells)
            + f" | {np.mean(gains):+.3f} |"
        )
    lines += ["", "Held-out sets:", ""]
    lines += [f"- {k}: {v}" for k, v in r["sources"].items()]
    lines.append("")
    return "\n".join(lines)


def plot(r, path):
    import matplotlib.pyplot as plt

    base = r["configs"]["closed form"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, c in r["configs"].items():
        if "decode_ms_per_mp" not in c:
            continue
        gain = np.mean(
            [
                c["held_out"][s]["psnr_db"] - base["held_out"][s]["psnr_db"]
                for s in r["sources"]
            ]
        )
        ax.scatter(c["decode_ms_per_mp"], gain)
        ax.annotate(n, (c["decode_ms_per_mp"], gain), fontsize=7)
    ax.set_xlabel("decode ms per megapixel (inverse_transform, 2 threads)")
    ax.set_ylabel("held-out PSNR gain over the closed form, dB")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv=None):
    parser = benchmark_parser(__doc__, threads=2)
    parser.add_argument(
        "--models",
        type=Path,
        default=_cache_dir() / "decoder_sweep",
        help="where the trained decoders are kept (default: the benchmark cache)",
    )
    parser.add_argument("--train", nargs="*", help="configurations to train")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument(
        "--train-only", action="store_true", help="train, then stop (no scores)"
    )
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    run = BenchmarkRun("decoder_sweep", args)
    report = measure(args)
    if report is None:
        return None
    report["machine"] = run.machine
    report["threads"] = torch.get_num_threads()
    run.finish(report, markdown)
    plot(report, Path(args.out) / "decoder_sweep.png")
    return report


if __name__ == "__main__":
    main()
