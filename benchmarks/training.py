"""Training: wavelet-domain vs pixel-domain steps per second, and what gains.

Three parts, each writing to ``--out``:

- ``--part speed``: optimiser steps per second of the pixel-domain loop
  (analysis, encoder, noisy bottleneck, decoder, synthesis every step) and of
  the wavelet-domain loop (coefficients computed once), at equal batch content
  (16 crops of 128x128 RGB), interleaved in one process; and how close the
  band-weighted coefficient MSE is to the pixel MSE on held-out photos.
- ``--part sweep``: from one closed form fitted on the bundled fit photos,
  train with each named configuration and record, every ``--eval-every``
  steps, the internal validation score and the PSNR of the decoded uint8
  photos of both held-out sets (bundled holdout, mate-backgrounds nature
  photos at 512 px): curves of steps and seconds against held-out dB.
  ``--data wallpapers`` fits on the pretrained models' 32 training photos
  (``_pretrain_data``) instead of the 8 bundled fit photos; the
  ``wall-decoder`` / ``wall-joint`` configurations are their recipe, and each
  run also records the kept state's blob bytes and the bundled closed form's
  scores (``reference``).
- ``--part check``: the issue's check on both held-out sets: a
  ``WallocCodec(latent_dim=12, levels=3, random_state=0)`` with default
  training, with ``max_iter=0`` and with ``max_iter=--steps``: PSNR of
  decoded uint8 photos, blob bytes, fit time.
- ``--part report``: merges sweep files into a table and a plot.

The machine is shared with other jobs: timings are ratios measured
interleaved, absolute seconds are pessimistic.
"""

import copy
import json
import math

import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    as_uint8,
    benchmark_parser,
    load_mate_photos,
    markdown_table,
    save_figure,
    write_json,
)
from _pretrain_data import load_training_photos

from sklearn_walloc import WallocCodec, metrics
from sklearn_walloc.datasets import load_photos

SEED = 0

_WALL = {
    "least_squares_start": True,
    "learning_rate": 1e-3,
    "flips": True,
    "warmup": 100,
}
# name -> (optimise keyword arguments, model overrides)
CONFIGS = {
    "lr3e-4": ({"learning_rate": 3e-4}, {}),
    "lr1e-3": ({"learning_rate": 1e-3}, {}),
    "lr3e-3": ({"learning_rate": 3e-3}, {}),
    "lr1e-3-flips": ({"learning_rate": 1e-3, "flips": True}, {}),
    "lr3e-4-flips": ({"learning_rate": 3e-4, "flips": True}, {}),
    "lr1e-3-flips-warmup": (
        {"learning_rate": 1e-3, "flips": True, "warmup": 100},
        {},
    ),
    "lr1e-3-flips-wd": (
        {"learning_rate": 1e-3, "flips": True, "weight_decay": 0.05},
        {},
    ),
    "lr1e-3-flips-round": (
        {"learning_rate": 1e-3, "flips": True, "round_from": 0.6},
        {},
    ),
    "lr1e-3-flips-crop256": (
        {"learning_rate": 1e-3, "flips": True, "crop_size": 256, "batch_size": 4},
        {},
    ),
    "lr1e-3-flips-crop64": (
        {"learning_rate": 1e-3, "flips": True, "crop_size": 64, "batch_size": 64},
        {},
    ),
    "lr1e-3-flips-linear": ({"learning_rate": 1e-3, "flips": True}, {"width": 0}),
    "lr1e-3-flips-w32d1": (
        {"learning_rate": 1e-3, "flips": True},
        {"width": 32, "depth": 1},
    ),
    "lr1e-3-flips-w128": ({"learning_rate": 1e-3, "flips": True}, {"width": 128}),
    "lr1e-3-flips-val3": ({"learning_rate": 1e-3, "flips": True}, {"n_val": 3}),
    "lsq-only": ({"least_squares_start": True, "learning_rate": 1e-12}, {}),
    "lsq-lr1e-4-flips": (
        {"least_squares_start": True, "learning_rate": 1e-4, "flips": True},
        {},
    ),
    "lsq-lr3e-4-flips": (
        {"least_squares_start": True, "learning_rate": 3e-4, "flips": True},
        {},
    ),
    "pixel-lr1e-3": ({"learning_rate": 1e-3, "domain": "pixel"}, {}),
    # The pretrained models' recipe (``--data wallpapers``): 48x2 decoder,
    # 3 validation photos, joint or decoder alone.
    "wall-joint": (_WALL, {"width": 48, "n_val": 3}),
    "wall-decoder": ({**_WALL, "train_encoder": False}, {"width": 48, "n_val": 3}),
}


def _trainer_internals():
    """``(optimise, band_weights, pad_to_multiple)`` from the library's trainer.

    Private on purpose: this script times the training loop in its two domains
    and scores the module between optimiser steps, neither of which ``fit``
    exposes.
    """
    from sklearn_walloc._signal import pad_to_multiple
    from sklearn_walloc._trainer import band_weights
    from sklearn_walloc._training import optimise

    return optimise, band_weights, pad_to_multiple


def _layout(photos):
    pad_to_multiple = _trainer_internals()[2]
    return [
        pad_to_multiple(np.moveaxis(p, -1, 0)[None].astype(np.float32), 8)
        for p in photos
    ]


@torch.no_grad()
def heldout_psnr(module, photos):
    """PSNR (dB) of each photo decoded to uint8 by the module's round trip."""
    module.eval()
    out = []
    for p, x in zip(photos, _layout(photos)):
        y = module.decode(module.encode(torch.from_numpy(x), "symbols"))
        y = y[0, :, : p.shape[0], : p.shape[1]].permute(1, 2, 0).numpy()
        out.append(metrics.psnr(p, as_uint8(y)))
    return out


def _closed_form(photos, width=64, depth=2):
    codec = WallocCodec(
        latent_dim=12,
        levels=3,
        decoder_width=width,
        decoder_depth=depth,
        max_iter=0,
        random_state=SEED,
    )
    return codec.fit(photos)


def _split(fit, names, n_val):
    """Validation: ``n_val`` fit photos (the first in a seeded permutation)."""
    order = np.random.RandomState(SEED).permutation(len(fit))
    val = [fit[i] for i in order[:n_val]]
    train = [fit[i] for i in order[n_val:]]
    return train, val, [names[i] for i in order[:n_val]]


def _training_photos(data):
    """The photos a sweep fits on, and their names."""
    if data == "wallpapers":
        photos, sources = load_training_photos()
        return photos, [s["file"] for s in sources]
    return load_photos(split="fit", return_names=True)


def _held_out_bytes(codec, module, sets):
    """Blob bytes of each set coded with ``codec`` carrying ``module``'s
    weights. Private on purpose: the sweep trains the module outside
    ``fit``; the codec's cached inference kernels are dropped with it."""
    codec = copy.deepcopy(codec)
    codec.module_.load_state_dict(module.state_dict())
    codec._runtime = {}
    return {k: int(sum(len(b) for b in codec.compress(v))) for k, v in sets.items()}


def run_sweep(args, sets):
    fit, names = _training_photos(args.data)
    results = []
    starts = {}
    # Gains are over each configuration's own closed form; ``reference`` is
    # the closed form fitted on the bundled fit photos (the baseline).
    reference = _closed_form(load_photos(split="fit"))
    ref = {
        "psnr": {
            k: float(np.mean(heldout_psnr(reference.module_, v)))
            for k, v in sets.items()
        },
        "bytes": _held_out_bytes(reference, reference.module_, sets),
    }
    for name in args.configs:
        kwargs, model = CONFIGS[name]
        kwargs = dict(kwargs)
        key = (model.get("width", 64), model.get("depth", 2))
        if key not in starts:
            starts[key] = _closed_form(fit, *key)
        codec = starts[key]
        module = copy.deepcopy(codec.module_)
        train, val, val_names = _split(fit, names, model.get("n_val", 1))
        start = {k: float(np.mean(heldout_psnr(module, v))) for k, v in sets.items()}
        curve = []
        spent = [0.0]

        def callback(trainer, record, module=module, curve=curve, spent=spent):
            if record["step"] % args.eval_every:
                return
            before = spent[0]
            with Timer() as t:
                scores = {
                    k: float(np.mean(heldout_psnr(module, v))) for k, v in sets.items()
                }
                module.train()
            spent[0] += t.s
            curve.append(
                {
                    "step": record["step"],
                    "seconds": record["seconds"] - before,
                    "validation": record["score"],
                    **{f"{k}_gain": scores[k] - start[k] for k in scores},
                }
            )
            print(name, json.dumps(curve[-1]), flush=True)

        opts = {
            "max_iter": args.steps,
            "batch_size": 16,
            "crop_size": 128,
            "learning_rate": 1e-3,
            "n_iter_no_change": 10**6,
            "tol": 0.0,
            "device": torch.device("cpu"),
            "seed": SEED,
            "data_range": 255.0,
            "validation_interval": args.eval_every,
            "callbacks": [callback],
        }
        opts.update(kwargs)
        optimise = _trainer_internals()[0]
        with Timer() as t:
            history = optimise(module, _layout(train), _layout(val), **opts)
        best = history["best_iter"]
        kept = next(c for c in curve if c["step"] == best)
        results.append(
            {
                "config": name,
                "data": args.data,
                "options": dict(kwargs),
                "model": model,
                "validation_photos": val_names,
                "wall_s": t.s,
                "start": start,
                "curve": curve,
                "kept_step": best,
                "kept": kept,
                "kept_bytes": _held_out_bytes(codec, module, sets),
                "start_bytes": _held_out_bytes(codec, codec.module_, sets),
                "reference": ref,
            }
        )
        suffix = "" if args.data == "bundled" else f"_{args.data}"
        write_json(args.out / f"training_sweep{suffix}.json", results)
    return results


def run_speed(args, run):
    optimise, band_weights, _ = _trainer_internals()
    fit = load_photos(split="fit")
    arrays = _layout(fit)
    rates = {}
    for width, depth in ((64, 2), (32, 1), (0, 0)):
        codec = _closed_form(fit, width, depth)
        steps = {"pixel": 0, "wavelet": 0}
        seconds = {"pixel": 0.0, "wavelet": 0.0}
        modules = {d: copy.deepcopy(codec.module_) for d in steps}
        for _ in range(args.repeats):
            for domain in steps:
                h = optimise(
                    modules[domain],
                    arrays,
                    [],
                    max_iter=args.speed_steps,
                    batch_size=16,
                    crop_size=128,
                    learning_rate=1e-4,
                    n_iter_no_change=10**6,
                    tol=0.0,
                    device=torch.device("cpu"),
                    seed=SEED,
                    domain=domain,
                    validation_interval=10**6,
                )
                steps[domain] += h["n_iter"]
                seconds[domain] += h["seconds"]
        rate = {d: steps[d] / seconds[d] for d in steps}
        rate["speedup"] = rate["wavelet"] / rate["pixel"]
        rates[f"decoder {width}x{depth}"] = rate
        print(width, depth, rate, flush=True)
    codec = _closed_form(fit)
    # Coefficient MSE vs pixel MSE of the rounded round trip, whole photos.
    module = codec.module_
    w = band_weights(module.wpt, 3)
    rows = []
    for k, photos in (("holdout", load_photos(split="holdout")),):
        for p, x in zip(photos, _layout(photos)):
            with torch.no_grad():
                t = torch.from_numpy(x)
                y = module.analysis(t)
                q = module.encode(t, "symbols")
                yhat = module.decoder(module.bottleneck.expand(q) / module.latent_scale)
                coef = float((w.view(1, -1, 1, 1) * (yhat - y) ** 2).mean())
                plain = float(((yhat - y) ** 2).mean())
                pix = float((((module.decode(q) - t) / module.data_scale) ** 2).mean())
            rows.append(
                {
                    "set": k,
                    "shape": list(p.shape),
                    "pixel_mse": pix,
                    "weighted_coef_mse": coef,
                    "plain_coef_mse": plain,
                    "weighted_db_diff": 10 * math.log10(pix / coef),
                    "plain_db_diff": 10 * math.log10(pix / plain),
                }
            )
    report = {
        "machine": run.machine,
        "steps_per_s": rates,
        "batch": "16 crops of 128x128 RGB (16x16 latent positions each)",
        "mse": rows,
        "threads": torch.get_num_threads(),
    }
    run.finish(report, _speed_markdown)


def _speed_markdown(report):
    return "\n".join([
        f"# Training steps per second ({report['batch']}), "
        f"{report['threads']} threads",
        "",
        markdown_table(["decoder", "pixel domain", "wavelet domain", "speed-up"], [
            [k, f"{r['pixel']:.2f}", f"{r['wavelet']:.2f}", f"{r['speedup']:.1f}x"]
            for k, r in report["steps_per_s"].items()
        ]),
        "",
        markdown_table(["photo", "pixel MSE", "weighted coef MSE (dB diff)",
                        "plain coef MSE (dB diff)"], [
            [r["shape"], f"{r['pixel_mse']:.4g}",
             f"{r['weighted_coef_mse']:.4g} ({r['weighted_db_diff']:+.2f})",
             f"{r['plain_coef_mse']:.4g} ({r['plain_db_diff']:+.2f})"]
            for r in report["mse"]
        ]),
        "",
    ])  # fmt: skip


def run_check(args, sets):
    fit = load_photos(split="fit")
    rows = []
    for label, kw in (
        ("default", {}),
        ("max_iter=0", {"max_iter": 0}),
        (f"max_iter={args.steps}", {"max_iter": args.steps}),
    ):
        codec = WallocCodec(latent_dim=12, levels=3, random_state=SEED, **kw)
        with Timer() as t:
            codec.fit(fit)
        row = {
            "model": label,
            "fit_s": t.s,
            "n_iter": codec.n_iter_,
            "n_iter_kept": codec.n_iter_kept_,
            "validation_gain": codec.validation_gain_,
        }
        for k, photos in sets.items():
            blobs = codec.compress(list(photos))
            dec = codec.decompress(blobs, restore=True)
            row[f"{k}_psnr"] = float(
                np.mean([metrics.psnr(p, d) for p, d in zip(photos, dec)])
            )
            row[f"{k}_bytes"] = int(sum(len(b) for b in blobs))
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_json(args.out / "training_check.json", rows)


def run_report(args):
    """Merge sweep JSON files into ``training_sweep.json``, a Markdown table
    and a plot of held-out gain against steps."""
    runs = []
    for path in args.inputs:
        with open(path) as f:
            runs += json.load(f)
    write_json(args.out / "training_sweep.json", runs)
    rows = []
    for r in runs:
        c = r["curve"]
        last = c[-1]
        kept = r["kept"]
        rows.append(
            [
                r["config"],
                str(last["step"]),
                f"{last['seconds']:.0f}",
                f"{last['holdout_gain']:+.3f}",
                f"{last['mate_gain']:+.3f}",
                f"{max(x['holdout_gain'] for x in c):+.3f}",
                f"{min(x['mate_gain'] for x in c):+.3f}",
                str(r["kept_step"]),
                f"{kept['holdout_gain']:+.3f}",
                f"{kept['mate_gain']:+.3f}",
            ]
        )
    header = [
        "config",
        "steps",
        "train s",
        "holdout gain (last)",
        "mate gain (last)",
        "best holdout gain",
        "worst mate gain",
        "kept step (val)",
        "holdout gain (kept)",
        "mate gain (kept)",
    ]
    text = markdown_table(header, rows) + "\n"
    (args.out / "training_sweep.md").write_text(text)
    print(text)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = plt.get_cmap("tab20").colors
    for i, r in enumerate(runs):
        steps = [x["step"] for x in r["curve"]]
        label = f"{r['config']} ({steps[-1]})"
        for ax, k in zip(axes, ("holdout", "mate")):
            gains = [x[f"{k}_gain"] for x in r["curve"]]
            ax.plot(steps, gains, label=label, color=colours[i % 20])
    for ax, k in zip(axes, ("bundled holdout (3 photos)", "mate nature (12)")):
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(k)
        ax.set_xlabel("optimiser steps")
    axes[0].set_ylabel("PSNR gain over the closed form (dB)")
    axes[1].legend(fontsize=7)
    save_figure(fig, args.out / "training_sweep.png")


def main():
    parser = benchmark_parser(__doc__, threads=2)
    parser.add_argument(
        "--part", choices=["speed", "sweep", "check", "report"], required=True
    )
    parser.add_argument("--inputs", nargs="*", default=[], help="sweep JSON files")
    parser.add_argument("--configs", nargs="+", default=["lr1e-3-flips"])
    parser.add_argument(
        "--data",
        choices=["bundled", "wallpapers"],
        default="bundled",
        help="sweep: fit on the bundled fit photos or on the pretrained models' "
        "training photos (_pretrain_data)",
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--speed-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run = BenchmarkRun(f"training_{args.part}", args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "speed":
        return run_speed(args, run)
    if args.part == "report":
        return run_report(args)
    mate, _ = load_mate_photos(limit=4 if args.quick else None)
    sets = {"holdout": load_photos(split="holdout"), "mate": mate}
    if args.part == "sweep":
        run_sweep(args, sets)
    else:
        run_check(args, sets)


if __name__ == "__main__":
    main()
