"""Train the pretrained models shipped in ``sklearn_walloc/data/pretrained``.

What it does
------------
Data (public, from Debian packages that no test or benchmark evaluates on),
fetched with ``apt-get download`` + ``dpkg -x`` into ``$WALLOC_PRETRAIN_CACHE``
or ``~/.cache/sklearn-walloc/pretrained-data`` (nothing is installed):

- photos: the photographs among the Ubuntu community wallpapers of
  ``lomiri-wallpapers-16.04`` / ``-20.04`` (CC-BY-4.0 and CC-BY-SA-3.0/4.0,
  per file in the package's ``copyright``; drawings and renders left out),
  each downscaled (Lanczos) to each long side in ``PHOTO_SIDES`` pixels (1280;
  ``WALLOC_PHOTO_SIDES=1280,640`` adds a second scale: no change on the
  held-out sets, +0.007 / +0.039 dB at 16x, measured once), plus the
  bundled fit photos (``load_photos(split="fit")``);
- music: ``singularity-music`` (CC-BY-SA-3.0, Max McCracken; Ogg Vorbis at
  48 kHz, resampled to 44.1 kHz with ``resample_poly(147, 160)``), ``CLIP_S``
  seconds from each track (after its first 10 s), as int16; mono models get
  the channel average.

Evaluation data stays out: the bundled hold-out photos, the mate-backgrounds
nature photos and the sonic-pi-samples clips are only scored, never fitted.

Models (``random_state=0``, ``decoder_width=48``): ``rgb-16x`` (levels=3,
latent_dim=12), ``rgb-4x`` (levels=2, latent_dim=12), ``stereo-5x``
(signal_ndim=1, levels=5, latent_dim=13), ``mono-5x`` (levels=6,
latent_dim=13); the library's trainer (closed form, then ``--max-iter`` steps
of joint training with early stopping on a validation split of the *training*
signals; the default is each model's entry in ``MODELS``). Each is saved with
``WallocTransformer.save``; ``TRAINING.json`` and ``TRAINING.md`` beside them
record sources, licences, parameters, steps, time, validation scores and the
held-out comparison against a closed form fitted on the bundled fit photos
(images) or on the sonic-pi fit clips (audio), with PSNR/SNR and coded bytes.

Run ``python benchmarks/train_pretrained.py`` (CPU; about 30 minutes on 2
shared cores) or ``--only rgb-16x`` for one model; ``--quick`` trains a few
steps into ``--out`` (a smoke test, never shipped).
"""

import copy
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from _audio_data import load_samples
from _common import BenchmarkRun, Timer, benchmark_parser, load_mate_photos
from _machine import machine_line
from PIL import Image
from scipy.signal import resample_poly

from sklearn_walloc import WallocCodec, WallocTransformer, metrics
from sklearn_walloc.datasets import load_photos

SEED = 0
# Long sides the wallpapers are downscaled to: each photo at each scale.
PHOTO_SIDES = tuple(
    int(v) for v in os.environ.get("WALLOC_PHOTO_SIDES", "1280").split(",")
)
CLIP_S = 40.0
PACKAGES = {
    "photos": ["lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"],
    "music": ["singularity-music"],
}
# The photographs among the wallpapers (the rest are drawings and renders).
PHOTOS = (
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Infinite-Sea_by_Aury88.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
    "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "analogpattern_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)
MUSIC_LICENCE = "CC-BY-SA-3.0 (Max McCracken), see singularity-music's copyright"
# A decoder of width 48 keeps every file near 400 kB (64 would make rgb-16x
# 0.7 MB); a closed form does not use it, and training at CPU budgets does not
# need more.
_DECODER = dict(decoder_width=48, decoder_depth=2)
MODELS = {
    # name -> (data, parameters, training steps)
    "rgb-16x": ("photos", dict(levels=3, latent_dim=12, **_DECODER), 0),
    "rgb-4x": ("photos", dict(levels=2, latent_dim=12, **_DECODER), 0),
    "stereo-5x": (
        "stereo",
        dict(signal_ndim=1, levels=5, latent_dim=13, **_DECODER),
        0,
    ),
    "mono-5x": ("mono", dict(signal_ndim=1, levels=6, latent_dim=13, **_DECODER), 0),
}
OUT = Path(__file__).resolve().parents[1] / "sklearn_walloc" / "data" / "pretrained"


# ------------------------------------------------------------------- data
def _cache():
    env = os.environ.get("WALLOC_PRETRAIN_CACHE")
    return Path(env) if env else Path.home() / ".cache/sklearn-walloc/pretrained-data"


def fetch(package):
    """Unpack the Debian package into the cache; return (root, version)."""
    root = _cache() / package
    stamp = root / ".version"
    if not stamp.exists():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
            (deb,) = glob.glob(os.path.join(tmp, f"{package}_*.deb"))
            subprocess.run(["dpkg", "-x", deb, str(root)], check=True)
            stamp.write_text(Path(deb).name.split("_")[1])
    return root, stamp.read_text()


def _licences(copyright_text):
    """File name -> licence, from a machine-readable Debian copyright file."""
    out = {}
    for stanza in re.split(r"\n\s*\n", copyright_text):
        files = re.search(r"^Files:\s*(.+)$", stanza, re.M)
        lic = re.search(r"^License:\s*(.+)$", stanza, re.M)
        if files and lic:
            for f in files.group(1).split():
                out.setdefault(Path(f).name, lic.group(1).strip())
    return out


def load_training_photos():
    sources, photos = [], []
    for package in PACKAGES["photos"]:
        root, version = fetch(package)
        text = (root / f"usr/share/doc/{package}/copyright").read_text()
        licences = _licences(text)
        for name in PHOTOS:
            hits = list(root.rglob(name))
            if not hits or any(s["file"] == name for s in sources):
                continue
            img = Image.open(hits[0]).convert("RGB")
            used = []
            for side in PHOTO_SIDES:
                scale = side / max(img.size)
                size = (round(img.size[0] * scale), round(img.size[1] * scale))
                photos.append(np.asarray(img.resize(size, Image.LANCZOS)))
                used.append(list(size))
            sources.append(
                {
                    "package": f"{package} {version}",
                    "file": name,
                    "licence": licences.get(name, "see the package's copyright"),
                    "original_size": list(img.size),
                    "used_sizes": used,
                }
            )
    bundled, names = load_photos(split="fit", return_names=True)
    for p, n in zip(bundled, names):
        photos.append(p)
        sources.append(
            {
                "package": "scikit-image / scikit-learn (bundled)",
                "file": n,
                "licence": "see skimage.data / sklearn.datasets",
            }
        )
    return photos, sources


def load_training_music():
    import soundfile as sf

    root, version = fetch(PACKAGES["music"][0])
    clips, sources = [], []
    for path in sorted(root.rglob("*.ogg")):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        start = int(10 * rate)
        data = data[start : start + int(CLIP_S * rate)]
        if rate != 44100:
            g = np.gcd(44100, rate)
            data = resample_poly(data, 44100 // g, rate // g, axis=0)
        clips.append(np.clip(np.round(data * 32768), -32768, 32767).astype(np.int16))
        sources.append(
            {
                "package": f"singularity-music {version}",
                "file": path.name,
                "licence": MUSIC_LICENCE,
                "seconds": round(len(clips[-1]) / 44100, 1),
                "original_rate": rate,
            }
        )
    return clips, sources


# -------------------------------------------------------------- evaluation
def evaluate_images(codec, sets):
    out = {}
    for name, photos in sets.items():
        blobs = codec.compress(photos)
        recs = codec.decompress(blobs, restore=True)
        out[name] = {
            "psnr_db": [metrics.psnr(p, r) for p, r in zip(photos, recs)],
            "bytes": int(sum(len(b) for b in blobs)),
        }
        out[name]["mean_psnr_db"] = float(np.mean(out[name]["psnr_db"]))
    return out


def evaluate_audio(codec, clips):
    blobs = codec.compress(clips)
    recs = codec.decompress(blobs, restore=True)
    recs = [y.reshape(x.shape) for x, y in zip(clips, recs)]
    snrs = [metrics.snr(x, y) for x, y in zip(clips, recs)]
    values = sum(x.size for x in clips)
    n_bytes = sum(len(b) for b in blobs)
    return {
        "holdout": {
            "pooled_snr_db": metrics.snr(np.concatenate(clips), np.concatenate(recs)),
            "mean_clip_snr_db": float(np.mean(snrs)),
            "bytes": int(n_bytes),
            "compression_ratio": 16 * values / (8 * n_bytes),
        }
    }


def image_sets(quick):
    sets = {"bundled holdout": load_photos(split="holdout")}
    sets["mate-backgrounds nature"] = load_mate_photos()[0]
    if quick:
        sets = {k: [p[:256, :256] for p in v[:2]] for k, v in sets.items()}
    return sets


def audio_holdout(channels, quick):
    fit = [x for _, x, _ in load_samples("fit", channels, 2.0 if quick else None)]
    hold = [x for _, x, _ in load_samples("holdout", channels, 2.0 if quick else None)]
    return fit, hold


# ------------------------------------------------------------------- main
def train(name, data, args):
    kind, params, steps = MODELS[name]
    if args.max_iter is not None:
        steps = args.max_iter
    if args.quick:
        steps = min(steps, 3)
    coefficients = args.trainer == "coefficients"
    model = WallocTransformer(
        **params,
        max_iter=0 if coefficients else steps,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        random_state=SEED,
        device="cpu",
        n_iter_no_change=10,
    )
    with Timer() as t:
        model.fit(data[kind])
        history = None
        if coefficients and steps:
            side = 16 if params.get("signal_ndim", 2) == 2 else 256
            history = train_in_coefficients(
                model, data[kind], steps, SEED, lr=args.lr, side=side
            )
    seconds = t.s
    # The step whose state was kept (0: the closed form validated best).
    kept = history["best_step"] if history else None
    return model, seconds, kept


# ------------------------------------------- coefficient-domain training
# Private on purpose (the module's transform, encoder, bottleneck and decoder,
# and the library's padding): this trainer works on cached wavelet packet
# coefficients, which the public ``fit`` does not expose.
def _band_weights(module):
    """Pixel energy of each band's unit coefficient (synthesis filter norms),
    so a weighted coefficient MSE approximates the pixel MSE of bior4.4."""
    wpt = module.wpt
    bands = module.encoder.in_channels
    ndim = module.signal_ndim
    side = 8
    grid = torch.zeros((bands, bands) + (side,) * ndim)
    idx = torch.arange(bands)
    grid[(idx, idx) + (side // 2,) * ndim] = 1.0
    with torch.no_grad():
        y = wpt.inverse(grid)
    return (y**2).flatten(1).sum(1)


def _coefficient_grids(module, signals, stride):
    from sklearn_walloc._signal import pad_to_multiple

    out = []
    with torch.no_grad():
        for x in signals:
            a = np.moveaxis(
                np.asarray(x, np.float32).reshape(x.shape[0], *x.shape[1:]), -1, 0
            )
            a = pad_to_multiple(a[None], stride)
            out.append(module.analysis(torch.from_numpy(a))[0])
    return out


def train_in_coefficients(model, signals, steps, seed, lr=5e-4, batch=32, side=16):
    """Joint encoder/decoder training on cached wavelet packet coefficients.

    The packet transform is fixed, so the training signals are transformed
    once; each step trains the 1x1 encoder, the bottleneck (noise proxy) and
    the decoder on random ``side``-position crops of the coefficient grids,
    with the coefficient MSE weighted by each band's synthesis energy (close
    to the pixel MSE for near-orthogonal bior4.4). A validation split of the
    training signals (rounded latents, same weighted MSE) picks the state
    kept, the closed-form start included. Returns the history.
    """
    module = model.module_
    module.requires_grad_(True).train()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    grids = _coefficient_grids(module, signals, module.stride)
    order = rng.permutation(len(grids))
    n_val = max(2, len(grids) // 8)
    val = [grids[i] for i in order[:n_val]]
    train = [grids[i] for i in order[n_val:]]
    weights = _band_weights(module).view(1, -1, *[1] * module.signal_ndim)
    weights = weights / weights.mean()
    ndim = module.signal_ndim
    sizes = np.array([g[0].numel() for g in train], dtype=np.float64)
    prob = sizes / sizes.sum()

    def loss_of(y, mode):
        z = module.encoder(y) * module.latent_scale
        q = module.bottleneck.quantize(z, mode, gen if mode == "noise" else None)
        zh = module.bottleneck.expand(q) / module.latent_scale
        return (weights * (module.decoder(zh) - y) ** 2).mean()

    def validate():
        with torch.no_grad():
            total = sum(float(loss_of(v[None], "symbols")) * v[0].numel() for v in val)
        return -10 * np.log10(total / sum(v[0].numel() for v in val))

    params = [p for n, p in module.named_parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + np.cos(np.pi * min(t, steps) / steps))
    )
    best, best_state = validate(), copy.deepcopy(module.state_dict())
    history = {"validation_scores": [best], "loss_curve": [], "best_step": 0}
    with Timer() as clock:
        for step in range(1, steps + 1):
            crops = []
            for gi in rng.choice(len(train), batch, p=prob):
                g = train[gi]
                window = [slice(None)]
                for axis in range(ndim):
                    n = g.shape[1 + axis]
                    lo = int(rng.integers(0, max(1, n - side + 1)))
                    window.append(slice(lo, lo + side))
                crops.append(g[tuple(window)])
            y = torch.stack(crops)
            opt.zero_grad(set_to_none=True)
            loss = loss_of(y, "noise")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            history["loss_curve"].append(float(loss.detach()))
            if step % 100 == 0 or step == steps:
                score = validate()
                history["validation_scores"].append(score)
                if score > best:
                    best, best_state = score, copy.deepcopy(module.state_dict())
                    history["best_step"] = step
                print(
                    f"step {step}: loss {float(loss.detach()):.5f}, validation "
                    f"{score:.3f} dB (start {history['validation_scores'][0]:.3f}), "
                    f"{clock.elapsed():.0f} s",
                    flush=True,
                )
    module.load_state_dict(best_state)
    module.requires_grad_(False).eval()
    model._runtime = {}
    model.n_iter_ = steps
    model.loss_curve_ = history["loss_curve"]
    model.validation_scores_ = [float(v) for v in history["validation_scores"]]
    model.best_validation_score_ = float(best)
    history["seconds"] = clock.s
    return history

def main():
    parser = benchmark_parser(__doc__)
    parser.set_defaults(out=OUT)
    parser.add_argument("--only", nargs="*", default=list(MODELS))
    parser.add_argument(
        "--max-iter", type=int, help="training steps (default: each model's)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--trainer",
        choices=("coefficients", "library"),
        default="coefficients",
        help="coefficients: joint training on cached wavelet packet coefficients "
        "(this script's train_in_coefficients); library: WallocTransformer.fit",
    )
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--crop-size", type=int, help="default: the library's")
    args = parser.parse_args()
    run = BenchmarkRun("train_pretrained", args)
    torch.manual_seed(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "TRAINING.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record.setdefault("models", {})
    data, sources = {}, {}
    if any(MODELS[n][0] == "photos" for n in args.only):
        data["photos"], sources["photos"] = load_training_photos()
        if args.quick:
            data["photos"] = [p[:256, :256] for p in data["photos"][:4]]
    if any(MODELS[n][0] != "photos" for n in args.only):
        music, sources["music"] = load_training_music()
        if args.quick:
            music = [m[: 44100 * 2] for m in music[:3]]
        data["stereo"] = music
        data["mono"] = [
            np.round(m.astype(np.float32).mean(axis=1, keepdims=True)).astype(np.int16)
            for m in music
        ]
    record["sources"] = {**record.get("sources", {}), **sources}
    for name in args.only:
        kind, params, _ = MODELS[name]
        print(f"== {name}: training on {len(data[kind])} {kind} signals", flush=True)
        model, seconds, kept = train(name, data, args)
        model.save(args.out / f"{name}.npz")
        codec = WallocCodec.from_pretrained(name) if args.out == OUT else None
        if codec is None:
            codec = WallocCodec.load(args.out / f"{name}.npz")
        base = WallocCodec(**params, max_iter=0, random_state=SEED, device="cpu")
        if kind == "photos":
            sets = image_sets(args.quick)
            base.fit(load_photos(split="fit"))
            scores = evaluate_images(codec, sets)
            baseline = evaluate_images(base, sets)
            baseline_name = "closed form fitted on the bundled fit photos"
        else:
            fit, hold = audio_holdout(2 if kind == "stereo" else 1, args.quick)
            base.fit(fit)
            scores = evaluate_audio(codec, hold)
            baseline = evaluate_audio(base, hold)
            baseline_name = "closed form fitted on the sonic-pi-samples fit clips"
        record["models"][name] = {
            "data": kind,
            "parameters": {**model.get_params(), "verbose": 0},
            "n_training_signals": len(data[kind]),
            "trainer": args.trainer if model.n_iter_ else "closed form",
            "steps_run": model.n_iter_,
            "step_kept": kept,
            "learning_rate": args.lr if args.trainer == "coefficients" else None,
            "fit_seconds": round(seconds, 1),
            "validation_scores_db": model.validation_scores_,
            "best_validation_score_db": model.best_validation_score_,
            "file_bytes": (args.out / f"{name}.npz").stat().st_size,
            "held_out": scores,
            "baseline": baseline_name,
            "baseline_held_out": baseline,
            "quick": args.quick,
            "machine": machine_line(run.machine),
        }
        print(json.dumps(record["models"][name]["held_out"], indent=1), flush=True)
        print(json.dumps(baseline, indent=1), flush=True)
        record_path.write_text(json.dumps(record, indent=1, default=float))
        (args.out / "TRAINING.md").write_text(markdown(record))


def markdown(record):
    lines = [
        "# How the pretrained models were trained",
        "",
        "Written by `benchmarks/train_pretrained.py` (see its docstring); the "
        "numbers in `TRAINING.json`. Machine: 2 CPU cores shared with other jobs "
        "(times are indicative).",
        "",
        "## Data",
        "",
        "| data | package | file | licence |",
        "|---|---|---|---|",
    ]
    for kind, items in record["sources"].items():
        for s in items:
            lines.append(f"| {kind} | {s['package']} | {s['file']} | {s['licence']} |")
    lines += ["", "## Models", ""]
    for name, m in record["models"].items():
        lines += [
            f"### {name}",
            "",
            f"{m['n_training_signals']} training signals ({m['data']}); "
            f"trainer: {m.get('trainer', 'closed form')}; {m['steps_run']} steps in "
            f"{m['fit_seconds']} s, state kept: step {m.get('step_kept', 0)} (0 is "
            "the closed form); validation "
            f"(training data's own split) {m['validation_scores_db'][:1]} -> best "
            f"{m['best_validation_score_db']}; file {m['file_bytes']} bytes.",
            "",
            f"Held out, against the {m['baseline']}:",
            "",
        ]
        for set_name, s in m["held_out"].items():
            b = m["baseline_held_out"][set_name]
            if "mean_psnr_db" in s:
                gain = s["mean_psnr_db"] - b["mean_psnr_db"]
                lines.append(
                    f"- {set_name}: PSNR {s['mean_psnr_db']:.3f} dB vs "
                    f"{b['mean_psnr_db']:.3f} dB ({gain:+.3f} dB); bytes "
                    f"{s['bytes']} vs {b['bytes']} "
                    f"({100 * (s['bytes'] / b['bytes'] - 1):+.1f}%)"
                )
            else:
                lines.append(
                    f"- {set_name}: pooled SNR {s['pooled_snr_db']:.3f} dB vs "
                    f"{b['pooled_snr_db']:.3f} dB, mean clip SNR "
                    f"{s['mean_clip_snr_db']:.3f} vs {b['mean_clip_snr_db']:.3f} dB; "
                    f"CR {s['compression_ratio']:.2f} vs {b['compression_ratio']:.2f}"
                )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    shutil.which("apt-get") or print("warning: apt-get not found")
    main()
