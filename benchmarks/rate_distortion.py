"""Rate-distortion of WaLLoC against image codecs, PCA and downsampling.

What it measures
----------------
Every learned model is fitted on the eight bundled "fit" photos
(``load_photos(split="fit")``) and evaluated on photos it never saw:

- ``bundled``: the three held-out bundled photos (``load_photos(split="holdout")``:
  astronaut 512x512, coffee 400x600, china 427x640);
- ``mate``: the 12 "nature" photographs of the Debian package ``mate-backgrounds``
  (fetched with ``apt-get download`` + ``dpkg -x`` into ``~/.cache``), each
  downscaled with Lanczos to a 512-pixel shorter side and centre-cropped to
  512x768.

Methods (one operating point = one row; all rates are real coded sizes):

- **WaLLoC** (``WallocCodec``, ``wavelet="bior4.4"``): closed form (``max_iter=0``)
  at several ``latent_dim``/``levels`` (RGB: 32x, 16x, 8x, 4x with ``levels=3``;
  16x and 4x with ``levels=2``), and trained for ``--max-iter`` Adam steps
  (default 100, batch 16 of 128x128 crops: CPU-sized, far less than the paper)
  at 16x and 4x, with ``rate_weight=0`` (pure MSE, as the paper), and at 16x with
  ``--rate-weight`` (default 0.02). Rate: the whole blob (header and checksum
  included); reconstruction: ``decompress(..., restore=True)`` (uint8).
- **JPEG** (libjpeg via Pillow, ``optimize=True``, 4:2:0), **WebP** (libwebp,
  ``method=6``), **JPEG 2000** (OpenJPEG, ``irreversible=True``,
  ``quality_mode="rates"``: one layer at a target compression ratio) and **AVIF**
  (libavif via Pillow, default speed, where Pillow has it) over a sweep of
  qualities.
- **PCA** in pixel space: the PCA of 8x8 RGB blocks (192 values) at the same
  reduction factors, quantised exactly like WaLLoC's closed form (same global
  normalisation, same Gaussian-CDF companding to 8-bit integers, same latent scale
  rule) and coded with the same entropy coder (``sklearn_walloc._entropy``); rate:
  payload only (a WaLLoC blob adds a ~60-byte header).
- **Downsampling**: Pillow bicubic (antialiased) resize to 1/f of the values
  (each side / sqrt(f)), bicubic upsampling back; rate: the downsampled image as
  lossless WebP (``method=6, quality=50``). A dimensionality reduction stored
  losslessly, not a tuned codec.

Metrics per image: bits per pixel (``8 * bytes / (H * W)``), compression ratio
``24 / bpp``, PSNR (dB, peak 255, on the uint8 output), MS-SSIM (pytorch-msssim's
algorithm, data range 255), encode and decode wall-clock time. Tables and plots average
over the photos of each set.

Outputs ``rate_distortion.{md,csv,json,png}`` in ``--out``. Run
``python benchmarks/rate_distortion.py`` (about 15 minutes on 2 CPU cores) or
``--quick`` (a smoke run of 1-3 minutes: fewer photos and qualities, 5 training
steps; its numbers are not the results).
"""

import io
import math
import sys

import numpy as np
import torch
from _common import (
    SOURCE_BPP,
    BenchmarkRun,
    Timer,
    as_uint8,
    benchmark_parser,
    check_ms_ssim,
    fmt,
    load_mate_photos,
    markdown_table,
    ms_ssim,
    png_bits,
    psnr,
    save_figure,
    webp_lossless_bits,
)
from _machine import machine_line
from PIL import Image, features

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos

SEED = 0
LATENT_BITS = 8
# The paper's published figures (trained models, LSDIR photos: other data).
PAPER = {"16x": (27.45, 35.0), "4x": (33.55, 8.5)}

# (label, latent_dim, levels, trained, rate_weight); RGB: 3 * 4**levels values
# per 2**levels x 2**levels block.
WALLOC_POINTS = [
    ("CF 32x", 6, 3, False, 0.0),
    ("CF 16x", 12, 3, False, 0.0),
    ("CF 8x", 24, 3, False, 0.0),
    ("CF 4x", 48, 3, False, 0.0),
    ("CF 16x J=2", 3, 2, False, 0.0),
    ("CF 4x J=2", 12, 2, False, 0.0),
    ("trained 16x", 12, 3, True, 0.0),
    ("trained 4x", 48, 3, True, 0.0),
    ("trained 16x +rate", 12, 3, True, None),  # None: --rate-weight
]
QUICK_WALLOC = {"CF 16x", "CF 4x", "trained 16x"}

SWEEPS = {
    "JPEG": [5, 10, 20, 30, 50, 75, 90, 95],
    "WebP": [0, 5, 10, 20, 30, 50, 75, 90, 95],
    "JPEG 2000": [240, 160, 96, 64, 48, 32, 16, 8],  # target compression ratios
    "AVIF": [10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
}
QUICK_SWEEPS = {
    "JPEG": [10, 50, 90],
    "WebP": [5, 30, 75],
    "JPEG 2000": [96, 32, 8],
    "AVIF": [20, 50, 80],
}
PCA_FACTORS = [32, 16, 8, 4]
DOWN_FACTORS = [64, 32, 16, 8, 4]


# ----------------------------------------------------------- image codecs
def _save_kwargs(codec, q):
    if codec == "JPEG":
        return "JPEG", {"quality": q, "optimize": True}
    if codec == "WebP":
        return "WEBP", {"quality": q, "method": 6}
    if codec == "JPEG 2000":
        return "JPEG2000", {
            "quality_mode": "rates",
            "quality_layers": [q],
            "irreversible": True,
        }
    if codec == "AVIF":
        return "AVIF", {"quality": q}
    raise ValueError(codec)


def run_image_codec(codec, q, img):
    fmt_name, kwargs = _save_kwargs(codec, q)
    buf = io.BytesIO()
    with Timer() as te:
        Image.fromarray(img).save(buf, fmt_name, **kwargs)
    data = buf.getvalue()
    with Timer() as td:
        rec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return 8 * len(data), rec, te.s, td.s


# --------------------------------------------------------------- pixel PCA
def _blocks(img, b=8):
    """(H, W, 3) -> (H/b * W/b, b*b*3) after symmetric padding to a multiple of b."""
    h, w, c = img.shape
    ph, pw = -h % b, -w % b
    x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    hb, wb = x.shape[0] // b, x.shape[1] // b
    x = x.reshape(hb, b, wb, b, c).transpose(0, 2, 1, 3, 4)
    return x.reshape(hb * wb, b * b * c), (hb, wb)


def _unblock(v, grid, shape, b=8):
    hb, wb = grid
    c = shape[2]
    x = v.reshape(hb, wb, b, b, c).transpose(0, 2, 1, 3, 4)
    return x.reshape(hb * b, wb * b, c)[: shape[0], : shape[1]]


def _walloc_quantiser():
    """``(bottleneck, encode_latents, decode_latents)`` of the library.

    Private on purpose: the pixel-PCA baseline is quantised and entropy coded
    with exactly WaLLoC's bottleneck and coder, so that only the transform
    differs; the public API applies them to WaLLoC latents only.
    """
    from sklearn_walloc._bottleneck import Bottleneck
    from sklearn_walloc._entropy import decode_latents, encode_latents

    return Bottleneck(LATENT_BITS), encode_latents, decode_latents


class PixelPCACodec:
    """PCA of 8x8 RGB blocks, quantised and coded exactly like WaLLoC's closed form."""

    def __init__(self, n_components, random_state=0, max_vectors=400_000):
        self.n_components = n_components
        self.random_state = random_state
        self.max_vectors = max_vectors
        self.bottleneck, self._encode, self._decode = _walloc_quantiser()

    def _quant_mse(self, proj, alpha):
        bn = self.bottleneck
        q = bn.quantize(proj * alpha, "symbols")
        return float(((bn.expand(q) / alpha - proj) ** 2).sum(dim=1).mean())

    @torch.no_grad()
    def fit(self, photos):
        data = [p.astype(np.float64) for p in photos]
        n = sum(d.size for d in data)
        self.mean_ = sum(d.sum() for d in data) / n
        self.std_ = math.sqrt(sum(((d - self.mean_) ** 2).sum() for d in data) / n)
        Y = np.concatenate([_blocks((d - self.mean_) / self.std_)[0] for d in data])
        rng = np.random.default_rng(self.random_state)
        if len(Y) > self.max_vectors:
            Y = Y[np.sort(rng.choice(len(Y), self.max_vectors, replace=False))]
        self.center_ = Y.mean(axis=0)
        Yc = Y - self.center_
        evals, evecs = np.linalg.eigh(Yc.T @ Yc / (len(Y) - 1))
        comps = evecs[:, np.argsort(evals)[::-1][: self.n_components]].T
        signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
        self.components_ = comps * np.where(signs == 0, 1.0, signs)[:, None]
        proj = torch.from_numpy(Yc @ self.components_.T)
        s = self.bottleneck.scale
        candidates = [
            0.75 * s / float(proj[:, 0].std()),
            2.0 * s / float(torch.quantile(proj[:, 0].abs().float(), 1 - 1e-5)),
        ]
        self.alpha_ = min(candidates, key=lambda a: self._quant_mse(proj, a))
        return self

    @torch.no_grad()
    def compress(self, img):
        v, grid = _blocks((img.astype(np.float64) - self.mean_) / self.std_)
        proj = torch.from_numpy((v - self.center_) @ self.components_.T * self.alpha_)
        q = self.bottleneck.quantize(proj, "symbols").numpy().astype(np.int32)
        q = q.T.reshape(self.n_components, *grid)
        return self._encode(q, LATENT_BITS), grid

    @torch.no_grad()
    def decompress(self, payload, grid, shape):
        q = self._decode(payload, (self.n_components, *grid), LATENT_BITS)
        q = torch.from_numpy(np.asarray(q, dtype=np.float64).reshape(len(q), -1).T)
        z = self.bottleneck.expand(q).numpy() / self.alpha_
        v = (z @ self.components_ + self.center_) * self.std_ + self.mean_
        return as_uint8(_unblock(v, grid, shape))


# ------------------------------------------------------------ downsampling
def run_downsample(factor, img):
    h, w = img.shape[:2]
    s = 1 / math.sqrt(factor)
    small_size = (max(1, round(w * s)), max(1, round(h * s)))
    with Timer() as te:
        small = Image.fromarray(img).resize(small_size, Image.BICUBIC)
        bits = webp_lossless_bits(np.asarray(small))
    with Timer() as td:
        rec = np.asarray(small.resize((w, h), Image.BICUBIC))
    values = small_size[0] * small_size[1] / (w * h)
    return bits, rec, te.s, td.s, png_bits(np.asarray(small)), values


# ------------------------------------------------------------------- runs
def _record(rows, dataset, name, img, method, setting, reduction, bits, rec, te, td):
    h, w = img.shape[:2]
    bpp = bits / (h * w)
    rows.append(
        {
            "dataset": dataset,
            "image": name,
            "method": method,
            "setting": setting,
            "reduction": reduction,
            "bpp": bpp,
            "compression_ratio": SOURCE_BPP / bpp,
            "psnr": psnr(img, rec),
            "ms_ssim": ms_ssim(img, rec),
            "encode_s": te,
            "decode_s": td,
            "pixels": h * w,
        }
    )
    return rows[-1]


def fit_walloc(points, fit_photos, max_iter, rate_weight):
    models = {}
    for label, latent_dim, levels, trained, rw in points:
        rw = rate_weight if rw is None else rw
        codec = WallocCodec(
            latent_dim=latent_dim,
            levels=levels,
            max_iter=max_iter if trained else 0,
            rate_weight=rw,
            random_state=SEED,
        )
        with Timer() as t:
            codec.fit(fit_photos)
        reduction = 3 * 4**levels / latent_dim
        info = {
            "latent_dim": latent_dim,
            "levels": levels,
            "max_iter": codec.max_iter,
            "rate_weight": rw,
            "n_iter": int(getattr(codec, "n_iter_", 0) or 0),
            "best_validation_psnr": getattr(codec, "best_validation_score_", None),
            "fit_s": t.s,
            "reduction": reduction,
        }
        print(
            f"  fitted WaLLoC {label}: {t.s:.1f} s, steps {info['n_iter']}",
            flush=True,
        )
        models[label] = (codec, info)
    return models


def evaluate(datasets, walloc, pca, sweeps, down_factors):
    rows = []
    for dataset, (photos, names) in datasets.items():
        for name, img in zip(names, photos):
            clock = Timer()
            for label, (codec, info) in walloc.items():
                with Timer() as te:
                    (blob,) = codec.compress([img])
                with Timer() as td:
                    rec = codec.decompress([blob], restore=True)[0]
                _record(rows, dataset, name, img, "WaLLoC", label,
                        info["reduction"], 8 * len(blob), rec, te.s, td.s)  # fmt: skip
            for factor, model in pca.items():
                with Timer() as te:
                    payload, grid = model.compress(img)
                with Timer() as td:
                    rec = model.decompress(payload, grid, img.shape, restore=False)
                _record(rows, dataset, name, img, "PCA (pixels)", f"{factor}x",
                        factor, 8 * len(payload), rec, te.s, td.s)  # fmt: skip
            for factor in down_factors:
                bits, rec, te, td, pbits, values = run_downsample(factor, img)
                r = _record(rows, dataset, name, img, "bicubic downsampling",
                            f"{factor}x", 1 / values, bits, rec, te, td)  # fmt: skip
                r["png_bpp"] = pbits / r["pixels"]
            for codec, qualities in sweeps.items():
                for q in qualities:
                    bits, rec, te, td = run_image_codec(codec, q, img)
                    setting = f"rate {q}" if codec == "JPEG 2000" else f"q {q}"
                    _record(rows, dataset, name, img, codec, setting, None, bits,
                            rec, te, td)  # fmt: skip
            print(f"  {dataset}/{name}: {clock.elapsed():.1f} s", flush=True)
    for r in rows:
        r.setdefault("png_bpp", None)
    return rows


def summarise(rows):
    """Mean over the photos of each set, per (dataset, method, setting)."""
    keys = []
    for r in rows:
        k = (r["dataset"], r["method"], r["setting"])
        if k not in keys:
            keys.append(k)
    out = []
    for k in keys:
        group = [r for r in rows if (r["dataset"], r["method"], r["setting"]) == k]
        mp = sum(r["pixels"] for r in group) / 1e6
        bpp = float(np.mean([r["bpp"] for r in group]))
        png = [r["png_bpp"] for r in group if r["png_bpp"] is not None]
        out.append(
            {
                "dataset": k[0],
                "method": k[1],
                "setting": k[2],
                "reduction": group[0]["reduction"],
                "n_images": len(group),
                "bpp": bpp,
                "compression_ratio": SOURCE_BPP / bpp,
                "psnr": float(np.mean([r["psnr"] for r in group])),
                "ms_ssim": float(np.mean([r["ms_ssim"] for r in group])),
                "encode_mp_s": mp / sum(r["encode_s"] for r in group),
                "decode_mp_s": mp / sum(r["decode_s"] for r in group),
                "png_bpp": float(np.mean(png)) if png else None,
            }
        )
    return out


CODECS = ["JPEG", "WebP", "JPEG 2000", "AVIF"]


def _curve(summary, dataset, method, metric):
    pts = sorted(
        (s["bpp"], s[metric])
        for s in summary
        if s["dataset"] == dataset and s["method"] == method
    )
    return np.array(pts).T if pts else None


def at_equal_rate(summary, dataset, bpp, method, metric):
    """A codec's mean metric at ``bpp``, interpolated linearly in log(bpp)."""
    c = _curve(summary, dataset, method, metric)
    if c is None or not (c[0].min() <= bpp <= c[0].max()):
        return None
    return float(np.interp(np.log(bpp), np.log(c[0]), c[1]))


def equal_rate_rows(summary, codecs):
    out = []
    for s in summary:
        if s["method"] != "WaLLoC" and s["method"] != "PCA (pixels)":
            continue
        row = {
            "dataset": s["dataset"],
            "method": s["method"],
            "setting": s["setting"],
            "bpp": s["bpp"],
            "psnr": s["psnr"],
            "ms_ssim": s["ms_ssim"],
        }
        for c in codecs:
            row[f"{c} psnr"] = at_equal_rate(summary, s["dataset"], s["bpp"], c, "psnr")
            row[f"{c} ms_ssim"] = at_equal_rate(
                summary, s["dataset"], s["bpp"], c, "ms_ssim"
            )
        out.append(row)
    return out


# ----------------------------------------------------------------- report
def summary_table(summary, dataset):
    rows = [
        [
            s["method"],
            s["setting"],
            fmt(s["reduction"], ".1f") + "x" if s["reduction"] else "",
            f"{s['bpp']:.3f}",
            f"{s['compression_ratio']:.1f}",
            f"{s['psnr']:.2f}",
            f"{s['ms_ssim']:.4f}",
            f"{s['encode_mp_s']:.2f}",
            f"{s['decode_mp_s']:.2f}",
        ]
        for s in summary
        if s["dataset"] == dataset
    ]
    head = ["method", "setting", "dim. reduction", "bpp", "CR", "PSNR dB"]
    head += ["MS-SSIM", "encode MP/s", "decode MP/s"]
    return markdown_table(head, rows)


def equal_rate_table(eq, dataset, codecs):
    rows = []
    for r in eq:
        if r["dataset"] != dataset:
            continue
        cells = [r["method"], r["setting"], f"{r['bpp']:.3f}", f"{r['psnr']:.2f}"]
        cells += [fmt(r[f"{c} psnr"], ".2f") for c in codecs]
        cells += [f"{r['ms_ssim']:.4f}"]
        cells += [fmt(r[f"{c} ms_ssim"], ".4f") for c in codecs]
        rows.append(cells)
    head = ["method", "setting", "bpp", "PSNR"]
    head += [f"{c} PSNR" for c in codecs] + ["MS-SSIM"]
    head += [f"{c} MS-SSIM" for c in codecs]
    return markdown_table(head, rows)


def fit_table(walloc):
    rows = [
        [
            label,
            info["latent_dim"],
            info["levels"],
            f"{info['reduction']:.0f}x",
            info["max_iter"],
            info["n_iter"],
            info["rate_weight"],
            fmt(info["best_validation_psnr"], ".2f"),
            f"{info['fit_s']:.1f}",
        ]
        for label, info in walloc.items()
    ]
    head = ["model", "latent_dim", "levels", "reduction", "max_iter", "steps run"]
    head += ["rate_weight", "best val. PSNR", "fit (s)"]
    return markdown_table(head, rows)


def markdown(report):
    p = report["parameters"]
    data = report["data"]
    codecs = p["codecs"]
    mode = " (QUICK SMOKE RUN: not the results)" if p["quick"] else ""
    lines = [
        f"# Rate-distortion on held-out photos{mode}",
        "",
        f"Machine: {machine_line(report['machine'])}. "
        f"Total runtime {report['runtime_s']:.0f} s "
        f"(1-minute load average {report['machine']['load_average'][0]:.1f} at the "
        f"start, {report['machine_end']['load_average'][0]:.1f} at the end: the "
        "machine is shared, so treat MP/s as rough).",
        "",
        "Data (none used for fitting): "
        + "; ".join(
            f"**{k}**: {len(v['names'])} photos ({v['source']})"
            for k, v in data.items()
        )
        + ". WaLLoC and PCA are fitted on the 8 bundled fit photos "
        f"({', '.join(report['fit_photos'])}).",
        "",
        "bpp: coded bits per pixel, mean over the photos; CR = 24 / bpp; PSNR "
        "(peak 255) and MS-SSIM of the uint8 output, means over the photos. "
        "MS-SSIM: pytorch-msssim's algorithm re-implemented in float64 NumPy for "
        "speed; it agrees with pytorch-msssim to "
        f"{report['ms_ssim_check']['abs_gap']:.0e} (checked each run). "
        "Codec versions: " + report["codec_versions"] + ".",
        "",
        "## WaLLoC models",
        "",
        fit_table(report["walloc"]),
        "",
        f"Trained models: {p['max_iter']} Adam steps at most (batch 16 of 128x128 "
        "crops, early stopping on one fit photo keeps the best validated state), a "
        "CPU budget far below the paper's training; `+rate`: "
        f"`rate_weight={p['rate_weight']}`.",
        "",
    ]
    for ds in data:
        lines += [
            f"## Equal-rate comparison, {ds} photos",
            "",
            "Each codec's mean PSNR / MS-SSIM interpolated (linearly in log bpp) "
            "at the WaLLoC or PCA point's mean bpp; n/a: outside the codec's sweep.",
            "",
            equal_rate_table(report["equal_rate"], ds, codecs),
            "",
        ]
    paper = "; ".join(
        f"{k}: {v[0]} dB at CR {v[1]} ({SOURCE_BPP / v[1]:.3f} bpp)"
        for k, v in PAPER.items()
    )
    lines += [
        f"Paper (trained WaLLoC, LSDIR photos, different data): {paper}.",
        "",
    ]
    for ds in data:
        lines += [
            f"## All operating points, {ds} photos",
            "",
            summary_table(report["summary"], ds),
            "",
        ]
    lines += [
        "Downsampling rows: rate = the downsampled image as lossless WebP; "
        "'dim. reduction' is the ratio of values (e.g. 16x = a quarter of each "
        "side). PCA rows: payload bits of the same entropy coder as WaLLoC.",
        "",
    ]
    return "\n".join(lines)


STYLE = {
    "JPEG": ("tab:blue", "o-"),
    "WebP": ("tab:orange", "s-"),
    "JPEG 2000": ("tab:green", "^-"),
    "AVIF": ("tab:purple", "v-"),
    "PCA (pixels)": ("tab:gray", "x--"),
    "bicubic downsampling": ("tab:brown", "d:"),
}


BPP_TICKS = [0.05, 0.1, 0.2, 0.5, 1, 2, 5]


def plot(summary, datasets, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    fig, axes = plt.subplots(
        len(datasets), 2, figsize=(13, 5.2 * len(datasets)), squeeze=False
    )
    for i, ds in enumerate(datasets):
        for j, metric in enumerate(["psnr", "ms_ssim"]):
            ax = axes[i, j]
            for method, (color, style) in STYLE.items():
                c = _curve(summary, ds, method, metric)
                if c is not None:
                    ax.plot(c[0], c[1], style, color=color, label=method, ms=4)
            for s in summary:
                if s["dataset"] != ds or s["method"] != "WaLLoC":
                    continue
                trained = s["setting"].startswith("trained")
                marker = "s" if trained else "o"
                color = "tab:red" if trained else "crimson"
                ax.plot(s["bpp"], s[metric], marker, color=color, ms=7, mfc="none")
                ax.annotate(
                    s["setting"].replace("trained", "T"),
                    (s["bpp"], s[metric]),
                    fontsize=7,
                    xytext=(4, -9 if trained else 3),
                    textcoords="offset points",
                    color=color,
                )
            ax.plot(
                [], [], "o", color="crimson", mfc="none", label="WaLLoC closed form"
            )
            ax.plot([], [], "s", color="tab:red", mfc="none", label="WaLLoC trained")
            if metric == "psnr" and i == 0:
                for k, (db, cr) in PAPER.items():
                    ax.plot(SOURCE_BPP / cr, db, "*", color="k", ms=10)
                    ax.annotate(
                        f"paper {k} (LSDIR)",
                        (SOURCE_BPP / cr, db),
                        fontsize=7,
                        xytext=(5, 3),
                        textcoords="offset points",
                    )
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_locator(FixedLocator(BPP_TICKS))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.set_xlabel("bits per pixel (log scale)")
            ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "MS-SSIM")
            if metric == "ms_ssim":
                ax.set_ylim(max(0.7, ax.get_ylim()[0]), 1.0)
            ax.set_title(f"{ds} photos: {'PSNR' if metric == 'psnr' else 'MS-SSIM'}")
            ax.grid(alpha=0.3, which="both")
            if i == 0 and j == 0:
                ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def _replot(report, path):
    plot(report["summary"], list(report["data"]), path)


# ------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = benchmark_parser(__doc__, threads=2, replot="rate_distortion.json")
    parser.add_argument("--max-iter", type=int, default=100, help="training steps")
    parser.add_argument("--rate-weight", type=float, default=0.02)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        BenchmarkRun.replot(args.out, "rate_distortion", _replot, markdown)
        return 0
    run = BenchmarkRun("rate_distortion", args)
    torch.manual_seed(SEED)
    max_iter = min(args.max_iter, 5) if args.quick else args.max_iter
    points = [p for p in WALLOC_POINTS if not args.quick or p[0] in QUICK_WALLOC]
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    if not features.check("avif"):
        sweeps = {k: v for k, v in sweeps.items() if k != "AVIF"}
    codecs = [c for c in CODECS if c in sweeps]
    pca_factors = [16, 4] if args.quick else PCA_FACTORS
    down_factors = [16, 4] if args.quick else DOWN_FACTORS

    fit_photos, fit_names = load_photos(split="fit", return_names=True)
    held, held_names = load_photos(split="holdout", return_names=True)
    mate, mate_names = load_mate_photos(limit=1 if args.quick else None)
    datasets = {"bundled": (held, held_names)}
    sources = {"bundled": "scikit-image/scikit-learn, held out from fitting"}
    if mate:
        datasets["mate"] = (mate, mate_names)
        sources["mate"] = (
            "Debian mate-backgrounds nature photos, Lanczos-resized to 512 px "
            "shorter side, centre crop 512x768"
        )
    else:
        print("[warn] mate-backgrounds unavailable: bundled photos only")

    _, ref = run_image_codec("JPEG", 50, held[0])[:2]
    gap, expected = check_ms_ssim(held[0], ref)
    print(f"MS-SSIM vs pytorch-msssim on {held_names[0]} JPEG q50: gap {gap:.1e}")

    print("Fitting WaLLoC models ...", flush=True)
    walloc = fit_walloc(points, fit_photos, max_iter, args.rate_weight)
    print("Fitting pixel PCA ...", flush=True)
    pca = {}
    for f in pca_factors:
        pca[f] = PixelPCACodec(192 // f, random_state=SEED).fit(fit_photos)
    print("Evaluating ...", flush=True)
    rows = evaluate(datasets, walloc, pca, sweeps, down_factors)
    summary = summarise(rows)
    eq = equal_rate_rows(summary, codecs)

    args.out.mkdir(parents=True, exist_ok=True)
    plot(summary, list(datasets), args.out / "rate_distortion.png")
    versions = [f"Pillow {Image.__version__}"]
    for name, feat in [("libjpeg", "jpg"), ("libwebp", "webp")]:
        versions.append(f"{name} {features.version(feat)}")
    versions.append(f"OpenJPEG {features.version('jpg_2000')}")
    if "AVIF" in sweeps:
        versions.append(f"libavif {features.version('avif')}")
    report = {
        "machine": run.machine,
        "parameters": {
            "quick": args.quick,
            "max_iter": max_iter,
            "rate_weight": args.rate_weight,
            "threads": args.threads,
            "random_state": SEED,
            "sweeps": sweeps,
            "codecs": codecs,
            "pca_factors": pca_factors,
            "down_factors": down_factors,
        },
        "codec_versions": ", ".join(versions),
        "ms_ssim_check": {"pytorch_msssim": expected, "abs_gap": gap},
        "fit_photos": fit_names,
        "data": {
            k: {
                "names": v[1],
                "shapes": [list(p.shape) for p in v[0]],
                "source": sources[k],
            }
            for k, v in datasets.items()
        },
        "walloc": {label: info for label, (_, info) in walloc.items()},
        "paper": PAPER,
        "summary": summary,
        "equal_rate": eq,
        "per_image": rows,
    }
    run.finish(report, markdown, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
