"""Quality, rate and speed of WaLLoC on held-out photos.

What it measures
----------------
Quality and rate. Every model is fitted on the eight bundled "fit" photos
(``load_photos(split="fit")``: scikit-image and scikit-learn sample photos) and
evaluated on the three held-out ones (``HOLDOUT_PHOTOS``: astronaut, coffee,
china), at two dimensionality reductions of RGB images with a 3-level
``bior4.4`` wavelet packet transform (192 coefficients per 8x8 block):
16x (``latent_dim=12``) and 4x (``latent_dim=48``). Three models each:

- PCA: scikit-learn ``PCA`` of the 192-dim wavelet packet coefficient vectors,
  reconstructed through the inverse transform, *without* quantisation (a
  reference for what the closed form can reach);
- WaLLoC closed form: ``WallocTransformer(max_iter=0)``;
- WaLLoC trained: ``WallocTransformer(max_iter=300)``, other parameters default.

Per photo: PSNR in dB (peak 255) of the reconstruction, clipped to [0, 255] and
cropped to the original size. For WaLLoC, also the ideal entropy-coded rate of
its integer latents: the empirical per-channel entropy of each photo's latents
(sum over channels of ``count * H(histogram)``, i.e. ideal tables adapted to
the photo and free to send) divided by the photo's pixels, in bits per pixel,
and the compression ratio ``24 / bpp``. Fit times are wall-clock seconds.

Speed. Megapixels per second (median of repeated runs after a warm-up) to
encode (``transform``) and decode (``inverse_transform``) a batch of RGB
512x512 images (astronaut repeated), on the CPU and on CUDA when available;
the encoder alone as the fused composite filter (``encode_fused``) and as
the two-step path (wavelet packet transform, then the 1x1 layer); and the
decoder of a paper-sized model (``decoder_width=768, decoder_depth=2``).

Outputs ``quality.md``, ``quality.json`` and ``quality.png`` in ``--out``.
Everything is seeded (``random_state=0``); CPU fits are bit-reproducible.

Run: ``python benchmarks/quality.py`` (about 15 minutes on 2 CPU cores), or
``python benchmarks/quality.py --quick`` (a smoke test: 20 training steps,
small speed batches; its numbers are not the results).
"""

import copy
import sys

import matplotlib
import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    activate_refinement,
    benchmark_parser,
    device_sync,
    fmt,
    markdown_table,
    median_time,
    save_figure,
)
from _machine import machine_line
from sklearn.decomposition import PCA

from sklearn_walloc import WallocTransformer, metrics
from sklearn_walloc.datasets import load_photos

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SEED = 0
LEVELS = 3
WAVELET = "bior4.4"
STRIDE = 2**LEVELS
PEAK = 255.0
SOURCE_BPP = 24.0
RATIOS = {"16x": 12, "4x": 48}  # dimensionality reduction -> latent_dim
METHODS = ("PCA (no quantisation)", "WaLLoC closed form", "WaLLoC trained")
# The paper (arXiv:2412.09405), trained models, on LSDIR: (PSNR dB, CR).
PAPER = {"16x": (27.45, 35.0), "4x": (33.55, 8.5)}
PAPER_DECODER = {"latent_dim": 12, "decoder_width": 768, "decoder_depth": 2}
CROP = ("astronaut", slice(40, 200), slice(170, 330))  # photo, rows, columns
DESIGN_NOTES = (
    "DESIGN.md scoping (closed form, four other bundled photos, 6-10 fit photos): "
    "16x ≈ 28.0 dB at ≈ 0.6 bpp (CR ≈ 38); 4x ≈ 33 dB at ≈ 1.5 bpp; a width-64 "
    "residual decoder gained +0.14 dB after 2 min of CPU training; WebP q30 "
    "30.7 dB at 0.49 bpp; encoder 8x3x512x512: strided-conv cascade 10-21 MP/s, "
    "fused conv ≈ 31 MP/s; paper-width (768) decoder ≈ 0.1 MP/s on CPU."
)


# ------------------------------------------------------------------ PCA in WPT
def _crop_clip(reconstruction, original):
    """The reconstruction at the original's size, clipped to [0, 255]."""
    h, w = original.shape[:2]
    return np.clip(reconstruction[:h, :w].astype(np.float64), 0.0, PEAK)


def evaluate_pca(fit_photos, test_photos, latent_dim):
    """PCA of wavelet packet coefficients, reconstructed without quantisation.

    Private on purpose: the public estimators always quantise their latents;
    this reference needs the library's wavelet packet transform by itself.
    """
    from sklearn_walloc._wavelets import WaveletPacket

    wpt = WaveletPacket(LEVELS, WAVELET, 2)

    def coefficients(image):  # (h*w, 192) float64 vectors of a padded image
        pad = [(0, -s % STRIDE) for s in image.shape[:2]] + [(0, 0)]
        x = np.pad(image.astype(np.float64), pad, mode="symmetric")
        with torch.no_grad():
            y = wpt(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0]
        return y.flatten(1).T.numpy(), y.shape

    def reconstruct(vectors, shape):
        y = torch.from_numpy(np.ascontiguousarray(vectors.T)).reshape(1, *shape)
        with torch.no_grad():
            return wpt.inverse(y)[0].numpy().transpose(1, 2, 0)

    with Timer() as t:
        vectors = np.concatenate([coefficients(p)[0] for p in fit_photos])
        pca = PCA(latent_dim, svd_solver="full", random_state=SEED).fit(vectors)
    scores = []
    for image in test_photos:
        coefs, shape = coefficients(image)
        rec = reconstruct(pca.inverse_transform(pca.transform(coefs)), shape)
        scores.append(metrics.psnr(image, _crop_clip(rec, image)))
    return {"psnr": scores, "bpp": None, "fit_s": t.s, "n_iter": None}


# ---------------------------------------------------------------------- WaLLoC
def fit_walloc(fit_photos, **params):
    model = WallocTransformer(levels=LEVELS, random_state=SEED, **params)
    with Timer() as t:
        model.fit(fit_photos)
    return model, t.s


def evaluate_walloc(model, fit_s, test_photos):
    latents = model.transform(test_photos)
    recs = model.inverse_transform(latents)
    return {
        "psnr": [metrics.psnr(p, _crop_clip(r, p)) for p, r in zip(test_photos, recs)],
        # ideal static per-channel code length of the latents, per pixel
        "bpp": [
            metrics.bits_per_pixel(metrics.entropy_bits(z), p)
            for z, p in zip(latents, test_photos)
        ],
        "fit_s": fit_s,
        "n_iter": model.n_iter_,
        "best_validation_score": model.best_validation_score_,
        "validation_scores": model.validation_scores_,
    }


def quality(fit_photos, test_photos, max_iter):
    """Results by ratio and method, and the fitted WaLLoC models."""
    results, models = {}, {}
    for ratio, latent_dim in RATIOS.items():
        print(f"[{ratio}] PCA, closed form, trained ({max_iter} steps)", flush=True)
        pca = evaluate_pca(fit_photos, test_photos, latent_dim)
        closed, closed_s = fit_walloc(fit_photos, latent_dim=latent_dim, max_iter=0)
        trained, trained_s = fit_walloc(
            fit_photos, latent_dim=latent_dim, max_iter=max_iter
        )
        results[ratio] = dict(
            zip(
                METHODS,
                [
                    pca,
                    evaluate_walloc(closed, closed_s, test_photos),
                    evaluate_walloc(trained, trained_s, test_photos),
                ],
            )
        )
        models[ratio] = {"closed": closed, "trained": trained}
    return results, models


# ----------------------------------------------------------------- throughput
def megapixels_per_s(fn, megapixels, repeats, device):
    """Median rate of ``fn`` over ``repeats`` runs after one warm-up run."""
    return megapixels / median_time(fn, repeats, sync=device_sync(device))


_ENCODE, _DECODE = "encode (transform)", "decode (inverse_transform)"


def _api_rates(model, batch, device, repeats, paths):
    """``transform`` / ``inverse_transform`` rates of a fitted model."""
    old = model.device
    model.set_params(device=str(device))
    mp = batch.shape[0] * batch.shape[1] * batch.shape[2] / 1e6
    latents = model.transform(batch)
    calls = {
        _ENCODE: lambda: model.transform(batch),
        _DECODE: lambda: model.inverse_transform(latents),
    }
    rates = {p: megapixels_per_s(calls[p], mp, repeats, device) for p in paths}
    model.set_params(device=old)
    return rates


def _module_rates(model, batch, device, repeats, encoders=True):
    """The torch module alone, on a float32 tensor (no numpy, no chunking).

    The encoder as the fused composite filter (one strided convolution per
    axis) and as the two-step path
    (wavelet packet transform, then the 1x1 layer), rounding included; the
    decoder (inverse companding, decoder network, inverse transform).
    Private on purpose: the fitted ``module_``'s own methods, since the public
    ``transform`` / ``inverse_transform`` include numpy conversion and chunking.
    """
    module = copy.deepcopy(model.module_).to(device)
    fused = module.fused_encoder().to(device)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().contiguous().to(device)
    with torch.inference_mode():
        q = module.encode_fused(x, fused)
    mp = batch.shape[0] * batch.shape[1] * batch.shape[2] / 1e6

    def run(fn):
        def call():
            with torch.inference_mode():
                fn()

        return megapixels_per_s(call, mp, repeats, device)

    rates = {"decoder only (module.decode)": run(lambda: module.decode(q))}
    if encoders:
        rates["encoder only, fused conv (encode_fused)"] = run(
            lambda: module.encode_fused(x, fused)
        )
        rates["encoder only, two-step (WPT then 1x1)"] = run(
            lambda: module.encode(x, "symbols")
        )
    return rates


def _speed_rows(model, rates, device):
    return [
        {"model": model, "path": p, "device": str(device), "mp_per_s": r}
        for p, r in rates.items()
    ]


def throughput(models, fit_photos, batch, paper_batch, repeats):
    """Rows ``{model, path, device, mp_per_s}``."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    paper, _ = fit_walloc(fit_photos[:1], max_iter=0, **PAPER_DECODER)
    activate_refinement(paper)  # else a closed form skips the 768-wide path
    rows = []
    for device in devices:
        for ratio, pair in models.items():
            print(f"[speed] {ratio} on {device}", flush=True)
            model = pair["trained"]
            rates = _api_rates(model, batch, device, repeats, [_ENCODE, _DECODE])
            rates.update(_module_rates(model, batch, device, repeats))
            rows += _speed_rows(f"{ratio} (decoder width 64)", rates, device)
        print(f"[speed] paper-sized decoder on {device}", flush=True)
        few = max(1, repeats // 2)
        rates = _api_rates(paper, paper_batch, device, few, [_DECODE])
        rates.update(_module_rates(paper, paper_batch, device, few, encoders=False))
        rows += _speed_rows("16x, paper decoder (width 768)", rates, device)
    return rows


# ------------------------------------------------------------------- reporting
def _mean(values):
    return None if values is None else float(np.mean(values))


def summary_rows(results):
    """One dict per (ratio, method) with means and the compression ratio."""
    rows = []
    for ratio, by_method in results.items():
        for method, r in by_method.items():
            bpp = _mean(r["bpp"])
            rows.append(
                {
                    "ratio": ratio,
                    "method": method,
                    "psnr": r["psnr"],
                    "mean_psnr": _mean(r["psnr"]),
                    "mean_bpp": bpp,
                    "compression_ratio": None if bpp is None else SOURCE_BPP / bpp,
                    "fit_s": r["fit_s"],
                    "n_iter": r["n_iter"],
                }
            )
    return rows


def quality_table(rows, names):
    head = ["ratio", "method", *names, "mean PSNR", "bpp", "CR", "fit (s)", "steps"]
    return markdown_table(head, [
        [r["ratio"], r["method"], *[f"{v:.2f}" for v in r["psnr"]],
         f"**{r['mean_psnr']:.2f}**", fmt(r["mean_bpp"], ".3f"),
         fmt(r["compression_ratio"], ".1f"), f"{r['fit_s']:.1f}",
         fmt(r["n_iter"], "d")]
        for r in rows
    ])  # fmt: skip


def speed_table(rows):
    return markdown_table(["model", "path", "device", "MP/s"], [
        [r["model"], r["path"], r["device"], f"{r['mp_per_s']:.2f}"] for r in rows
    ])  # fmt: skip


def _load(info):
    load = info.get("load_average")
    return "n/a" if load is None else f"{load[0]:.1f}"


def markdown(report):
    names = report["data"]["holdout"]["names"]
    args = report["parameters"]
    paper = "; ".join(f"{k}: {p} dB at CR {c}" for k, (p, c) in PAPER.items())
    mode = " (QUICK SMOKE RUN, not the results)" if args["quick"] else ""
    return "\n".join(
        [
            f"# WaLLoC quality, rate and speed on held-out photos{mode}",
            "",
            f"Machine: {machine_line(report['machine'])}. "
            f"Total runtime {report['runtime_s']:.0f} s.",
            "",
            f"Fit on {len(report['data']['fit']['names'])} bundled photos "
            f"({', '.join(report['data']['fit']['names'])}); evaluated on "
            f"{', '.join(names)}. PSNR in dB (peak 255, output clipped to "
            "[0, 255], original size); bpp: ideal per-channel entropy of each "
            "photo's integer latents (tables adapted to the photo, not sent), "
            "mean over photos; CR = 24 / bpp. PCA is a reference without "
            f"quantisation, so it has no rate. Trained: max_iter={args['max_iter']}, "
            f"other parameters default, random_state={SEED} ('steps' = n_iter_, "
            "early stopping on 1 of the fit photos keeps the best validated state).",
            "",
            quality_table(report["summary"], names),
            "",
            f"Paper (trained models, LSDIR photos, not comparable data): {paper}.",
            "",
            DESIGN_NOTES,
            "",
            f"## Speed (batch of {args['batch']} RGB 512x512, astronaut repeated; "
            f"paper decoder: batch of {args['paper_batch']}; median of "
            f"{args['repeats']} runs after a warm-up; torch threads: "
            f"{report['machine']['torch_threads']})",
            "",
            speed_table(report["speed"]),
            "",
            "Encode/decode go through the estimator (numpy in and out, padding, "
            "layout, fixed-size chunks: a last partial chunk is zero-padded to full "
            "size for batch invariance); 'encoder only' / 'decoder only' rows time "
            "the torch module on a float32 tensor, rounding included. The machine "
            "was shared with other jobs (1-minute load average "
            f"{_load(report['machine'])} at the start, "
            f"{_load(report['machine_end'])} at the end on "
            f"{report['machine']['usable_cores']} cores): treat times as rough.",
            "",
        ]
    )


def plot(results, models, test_photos, names, path):
    """PSNR per held-out photo, and a crop: original vs 16x reconstructions."""
    fig, ax = plt.subplot_mosaic(
        [["16x"] * 3 + ["4x"] * 3, ["orig"] * 2 + ["closed"] * 2 + ["trained"] * 2],
        figsize=(12, 8.5),
        height_ratios=[1, 1.2],
    )
    x = np.arange(len(names))
    for ratio in RATIOS:
        values = [results[ratio][m]["psnr"] for m in METHODS]
        for k, (method, v) in enumerate(zip(METHODS, values)):
            ax[ratio].bar(x + (k - 1) * 0.27, v, 0.27, label=method)
        lo, hi = np.min(values), np.max(values)
        ax[ratio].set_ylim(lo - 1.0, hi + 0.6)
        ax[ratio].set_xticks(x, names)
        ax[ratio].set_ylabel("PSNR (dB)")
        ax[ratio].set_title(f"{ratio} dimensionality reduction, held-out photos")
        ax[ratio].grid(axis="y", alpha=0.3)
    ax["16x"].legend(fontsize=8, loc="upper right")
    name, rows, cols = CROP
    image = test_photos[names.index(name)]
    panels = {"orig": ("original", image)}
    for key, label in (("closed", "closed form"), ("trained", "trained")):
        model = models["16x"][key]
        rec = _crop_clip(model.inverse_transform(model.transform([image]))[0], image)
        dB = metrics.psnr(image, rec)
        panels[key] = (f"16x {label}: {dB:.2f} dB (whole photo)", rec)
    for key, (title, img) in panels.items():
        ax[key].imshow(img[rows, cols].astype(np.uint8))
        ax[key].set_title(title, fontsize=9)
        ax[key].axis("off")
    save_figure(fig, path, dpi=110)


# ------------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--max-iter", type=int, default=300, help="training steps")
    return parser.parse_args(argv)


def _describe(photos, names):
    return {"names": names, "shapes": [list(p.shape) for p in photos]}


def main(argv=None):
    args = parse_args(argv)
    run = BenchmarkRun("quality", args)
    torch.manual_seed(SEED)
    max_iter = min(args.max_iter, 20) if args.quick else args.max_iter
    batch_n, paper_n, repeats = (2, 1, 2) if args.quick else (8, 8, 5)
    fit_photos, fit_names = load_photos(split="fit", return_names=True)
    test_photos, names = load_photos(split="holdout", return_names=True)
    results, models = quality(fit_photos, test_photos, max_iter)
    astronaut = test_photos[names.index("astronaut")]
    speed = throughput(
        models,
        fit_photos,
        np.stack([astronaut] * batch_n),
        np.stack([astronaut] * paper_n),
        repeats,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, models, test_photos, names, args.out / "quality.png")
    report = {
        "machine": run.machine,
        "parameters": {
            "quick": args.quick,
            "max_iter": max_iter,
            "random_state": SEED,
            "levels": LEVELS,
            "wavelet": WAVELET,
            "latent_dim": RATIOS,
            "batch": batch_n,
            "paper_batch": paper_n,
            "repeats": repeats,
            "paper_decoder": PAPER_DECODER,
        },
        "data": {
            "fit": _describe(fit_photos, fit_names),
            "holdout": _describe(test_photos, names),
        },
        "results": results,
        "summary": summary_rows(results),
        "speed": speed,
        "paper": PAPER,
        "design_notes": DESIGN_NOTES,
    }
    run.finish(report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
