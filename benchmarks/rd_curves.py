"""Rate-distortion curves of WaLLoC against the image codecs users have.

What it measures
----------------
Per photo, rate-distortion points from about 0.1 to 2 bits per pixel for:

- **JPEG 4:2:0** and **JPEG 4:4:4** (libjpeg via Pillow, ``optimize=True``),
  quality 1..95 (the equal-bytes check below uses every quality; the curves
  and MS-SSIM use a subset);
- **WebP** (libwebp via Pillow, ``method=6``), **AVIF** (libavif via Pillow,
  its default speed and 4:2:0), **JPEG XL** (libjxl via imagecodecs, its
  default effort, over a sweep of Butteraugli distances) and **JPEG 2000**
  (OpenJPEG via Pillow, irreversible wavelet, one layer at a target rate);
- **WaLLoC**: the shipped ``rgb-16x`` and ``rgb-4x``
  (``WallocCodec.from_pretrained``) at their default rate, and a ladder of
  closed-form models (``WallocCodec(levels=..., latent_dim=..., max_iter=0)``)
  fitted on the 8 bundled fit photos (``load_photos(split="fit")``); where
  ``WallocCodec.compress`` takes ``target_bpp`` (checked with
  :func:`inspect.signature`), also ``rgb-16x`` and ``rgb-4x`` traced through a
  grid of ``target_bpp``. Rate: the whole blob; reconstruction:
  ``decompress(..., restore=True)`` (uint8).

Held-out photos (no model here was fitted on any of them; the training
sources are listed in ``sklearn_walloc/data/pretrained/TRAINING.md``):

- ``bundled``: ``load_photos(split="holdout")`` (astronaut 512x512, coffee
  400x600, china 427x640);
- ``mate``: the 12 nature photographs of the Debian package
  ``mate-backgrounds`` (GPL-2+), Lanczos-downscaled, uncropped, to shorter
  sides of 512 to 640 pixels that differ from photo to photo (odd ones among
  them): :func:`_common.load_mate_photos_varied`;
- ``opencv``: the 14 photographs among OpenCV's sample images (Debian
  ``opencv-doc``, Apache-2.0 AND BSD-3-Clause): baboon, fruits, building,
  aerial and street shots, ...; each Lanczos-downscaled by 3/4, which sheds
  the source's JPEG grid (:func:`_common.load_opencv_photos`).

Metrics: bits per pixel (``8 * bytes / (H * W)``); PSNR of the 8-bit RGB
output (peak 255) per photo, then averaged; MS-SSIM (pytorch-msssim's
definition, :func:`sklearn_walloc.metrics.ms_ssim`), also in dB as
``-10 log10(1 - MS-SSIM)``. Curves: the mean over the photos of a set at each
codec setting (mean bpp against mean PSNR), as codec comparisons plot them.

Bjøntegaard deltas (:func:`sklearn_walloc.metrics.bd_rate` and ``bd_psnr``,
piecewise cubic, over 0.15-1.0 bpp of the reference's curve): per set, of
each WaLLoC curve against JPEG 4:2:0 and against each peer, on the mean
curves, in PSNR and in MS-SSIM dB; also the median of the per-photo BD-rates.
Dominated points (another setting of the same codec with fewer bits and more
quality) are dropped first, as the deltas need monotone curves.
The worst point: each WaLLoC curve's points inside 0.15-1.0 bpp against JPEG
4:2:0's mean curve at the same rate (the goal: none more than 0.3 dB below).

The issue's check (#21, "How it will be checked"): for each WaLLoC point and
each photo, the JPEG 4:2:0 file of that photo closest to the WaLLoC blob's
bytes without exceeding them (quality 1..95; Pillow with ``optimize=True``,
and also with Pillow's defaults); WaLLoC's mean PSNR minus that JPEG's, the
photos where JPEG wins, and the photos where no JPEG is that small.

Outputs ``rd_curves.{md,json,csv,png}`` in ``--out``. ``python
benchmarks/rd_curves.py`` (about 10-15 minutes on 2 shared CPU cores);
``--quick`` is a smoke run (fewer photos, settings and models; its numbers
are not the results); ``--replot`` redraws from the JSON.
"""

import inspect
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    benchmark_parser,
    fmt,
    load_held_out_sets,
    load_text,
    markdown_table,
    ms_ssim,
    psnr,
    save_figure,
)
from _machine import machine_line
from PIL import Image, features

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos
from sklearn_walloc.metrics import bd_psnr, bd_rate

SEED = 0
BD_RANGE = (0.15, 1.0)  # bpp, the issue's goal window
# Quality settings per peer, chosen to span about 0.1-2 bpp on these photos.
SWEEPS = {
    "JPEG 4:2:0": [3, 6, 10, 15, 25, 40, 60, 80, 92],
    "JPEG 4:4:4": [4, 8, 15, 25, 40, 60, 80, 92],
    "WebP": [0, 10, 30, 55, 80, 95],
    "AVIF": [10, 30, 50, 70, 85],
    "JPEG XL": [12.0, 6.0, 3.5, 2.0, 1.2],  # Butteraugli distance
    "JPEG 2000": [0.1, 0.2, 0.4, 0.7, 1.2, 2.0],  # target bpp
}
QUICK_SWEEPS = {
    "JPEG 4:2:0": [5, 12, 25, 50, 75, 92],
    "JPEG 4:4:4": [5, 12, 25, 50, 75, 92],
    "WebP": [5, 25, 55, 80, 95],
    "AVIF": [15, 40, 70, 90],
    "JPEG XL": [10.0, 5.0, 2.5, 1.2],
    "JPEG 2000": [0.15, 0.4, 0.9, 2.0],
}
JPEG_CHECK_QUALITIES = range(1, 96)
# (levels, latent_dim) of the closed-form ladder; RGB reduction 3*4**J/dim.
LADDER = [(3, 3), (3, 4), (3, 6), (3, 8), (3, 12), (3, 16), (3, 24), (2, 12)]
QUICK_LADDER = [(3, 3), (3, 4), (3, 6), (3, 12)]
# rgb-16x's enhancement channels (format 5) carry it past 0.9 bpp: its trace
# spans the issue's 0.1-2 bpp, and 1.0 closes the BD window.
TARGETS = {
    "rgb-16x": [0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.9, 1.0, 1.4, 2.0],
    "rgb-4x": [0.6, 0.9, 1.4, 2.0],
}
QUICK_TARGETS = {"rgb-16x": [0.15, 0.3, 0.6, 0.9], "rgb-4x": [1.0, 2.0]}
BASE = "JPEG 4:2:0"


# ----------------------------------------------------------------- codecs
def _pillow(img, fmt_name, **kw):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt_name, **kw)
    return buf.getvalue()


def _pillow_decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def encode_peer(codec, setting, img):
    """``(bytes, decoded uint8)`` of one peer codec at one setting."""
    if codec.startswith("JPEG 4:"):
        sub = 2 if codec == "JPEG 4:2:0" else 0
        data = _pillow(img, "JPEG", quality=setting, optimize=True, subsampling=sub)
        return data, _pillow_decode(data)
    if codec == "WebP":
        data = _pillow(img, "WEBP", quality=setting, method=6)
        return data, _pillow_decode(data)
    if codec == "AVIF":
        data = _pillow(img, "AVIF", quality=setting)
        return data, _pillow_decode(data)
    if codec == "JPEG 2000":
        data = _pillow(
            img,
            "JPEG2000",
            quality_mode="rates",
            quality_layers=[24.0 / setting],
            irreversible=True,
        )
        return data, _pillow_decode(data)
    if codec == "JPEG XL":
        import imagecodecs

        data = imagecodecs.jpegxl_encode(img, distance=setting)
        return data, np.asarray(imagecodecs.jpegxl_decode(data))
    raise ValueError(codec)


def available_peers():
    out = ["JPEG 4:2:0", "JPEG 4:4:4", "WebP"]
    if features.check("avif"):
        out.append("AVIF")
    try:
        import imagecodecs

        if imagecodecs.JPEGXL.available:
            out.append("JPEG XL")
    except ImportError:
        print("[warn] imagecodecs is not installed: no JPEG XL (pip install .[bench])")
    out.append("JPEG 2000")
    return out


def codec_versions(peers):
    v = [f"Pillow {Image.__version__}", f"libjpeg {features.version('jpg')}"]
    v.append(f"libwebp {features.version('webp')}")
    if "AVIF" in peers:
        v.append(f"libavif {features.version('avif')}")
    v.append(f"OpenJPEG {features.version('jpg_2000')}")
    if "JPEG XL" in peers:
        import imagecodecs

        v.append(f"imagecodecs {imagecodecs.__version__}")
        v.append(imagecodecs.jpegxl_version())
    return ", ".join(v)


def takes_target_bpp():
    return "target_bpp" in inspect.signature(WallocCodec.compress).parameters


# ----------------------------------------------------------------- WaLLoC
def walloc_models(ladder, fit_photos):
    """``label -> (codec, info)``: the shipped models and the closed forms."""
    models = {}
    for name in ("rgb-16x", "rgb-4x"):
        # The model's own rate (gain 0); the default gain is a point of the
        # target_bpp traces.
        codec = WallocCodec.from_pretrained(name).set_params(gain=0)
        models[name] = (codec, {"kind": "shipped"})
    for levels, dim in ladder:
        label = f"CF J={levels} d={dim}"
        with Timer() as t:
            codec = WallocCodec(
                levels=levels, latent_dim=dim, max_iter=0, random_state=SEED
            ).fit(fit_photos)
        info = {"kind": "closed form", "levels": levels, "latent_dim": dim}
        info.update(reduction=3 * 4**levels / dim, fit_s=t.s)
        print(f"  fitted {label} ({info['reduction']:.1f}x): {t.s:.1f} s", flush=True)
        models[label] = (codec, info)
    return models


def walloc_point(codec, img, **kw):
    (blob,) = codec.compress([img], **kw)
    return blob, codec.decompress([blob], restore=True)[0]


# ---------------------------------------------------------------- metrics
def msssim_db(v):
    return math.inf if v >= 1 else -10 * math.log10(1 - v)


def _point(curve, setting, img, data, rec, with_msssim=True):
    h, w = img.shape[:2]
    m = ms_ssim(img, rec) if with_msssim else None
    return {
        "curve": curve,
        "setting": setting,
        "bytes": len(data),
        "bpp": 8 * len(data) / (h * w),
        "psnr": psnr(img, rec),
        "ms_ssim": m,
    }


def jpeg_check_sweep(img):
    """Bytes and PSNR of JPEG 4:2:0 at every quality 1..95, optimised Huffman
    tables and Pillow's defaults."""
    out = {}
    for optimize in (True, False):
        rows = []
        for q in JPEG_CHECK_QUALITIES:
            data = _pillow(img, "JPEG", quality=q, optimize=optimize, subsampling=2)
            rows.append((q, len(data), psnr(img, _pillow_decode(data))))
        out["optimize" if optimize else "default"] = rows
    return out


def evaluate_photo(img, peers, sweeps, models, targets):
    points = []
    for codec in peers:
        for s in sweeps[codec]:
            data, rec = encode_peer(codec, s, img)
            points.append(_point(codec, s, img, data, rec))
    for label, (codec, _) in models.items():
        blob, rec = walloc_point(codec, img)
        points.append(_point("WaLLoC " + label, "default", img, blob, rec))
    points += evaluate_targets(img, models, targets)
    return points


def evaluate_targets(img, models, targets):
    """The shipped models traced through ``compress(X, target_bpp=b)``."""
    points = []
    for name, grid in targets.items():
        codec = models[name][0]
        for b in grid:
            with Timer() as t:
                blob, rec = walloc_point(codec, img, target_bpp=b)
            p = _point(f"WaLLoC {name} target_bpp", b, img, blob, rec)
            p["compress_s"] = t.s
            points.append(p)
    return points


# ---------------------------------------------------------------- curves
def pareto(points):
    """Points sorted by rate with the dominated ones dropped."""
    out = []
    for r, d in sorted(points):
        if out and r == out[-1][0]:
            out[-1] = (r, max(d, out[-1][1]))
        elif not out or d > out[-1][1]:
            out.append((r, d))
    return out


def mean_curves(per_photo):
    """``curve -> list of (setting, mean bpp, mean PSNR, mean MS-SSIM dB)``."""
    curves = {}
    n = len(per_photo)
    keys = []
    for p in per_photo[0]["points"]:
        if (p["curve"], p["setting"]) not in keys:
            keys.append((p["curve"], p["setting"]))
    for curve, setting in keys:
        pts = [
            q
            for ph in per_photo
            for q in ph["points"]
            if q["curve"] == curve and q["setting"] == setting
        ]
        if len(pts) != n:
            continue
        row = {
            "setting": setting,
            "bpp": float(np.mean([q["bpp"] for q in pts])),
            "psnr": float(np.mean([q["psnr"] for q in pts])),
        }
        ms = [q["ms_ssim"] for q in pts]
        if all(m is not None for m in ms):
            row["ms_ssim"] = float(np.mean(ms))
            row["ms_ssim_db"] = msssim_db(row["ms_ssim"])
        curves.setdefault(curve, []).append(row)
    return curves


def walloc_curves(curves):
    """The WaLLoC curves that a BD delta is computed for: the closed-form
    ladder, every target_bpp trace, and the envelope of all WaLLoC points."""
    out = {}
    ladder_rows = [
        dict(r, setting=c[len("WaLLoC ") :])
        for c, rows in curves.items()
        if c.startswith("WaLLoC CF")
        for r in rows
    ]
    if ladder_rows:
        out["WaLLoC closed-form ladder"] = ladder_rows
    for c, rows in curves.items():
        if c.endswith("target_bpp"):
            out[c] = rows
    every = [
        dict(r, setting=c[len("WaLLoC ") :])
        for c, rows in curves.items()
        if c.startswith("WaLLoC ")
        for r in rows
    ]
    if every:
        out["WaLLoC all models (envelope)"] = every
    return out


def _bd(ref_rows, test_rows, key):
    ref = pareto([(r["bpp"], r[key]) for r in ref_rows if key in r])
    test = pareto([(r["bpp"], r[key]) for r in test_rows if key in r])
    res = {}
    for name, fn in (("bd_rate", bd_rate), ("bd_psnr", bd_psnr)):
        try:
            res[name] = fn(*zip(*ref), *zip(*test), rate_range=BD_RANGE)
        except ValueError as e:
            res[name] = None
            res[f"{name}_error"] = str(e)
    lo = max(ref[0][0], test[0][0], BD_RANGE[0]) if ref and test else None
    hi = min(ref[-1][0], test[-1][0], BD_RANGE[1]) if ref and test else None
    res["bpp_interval"] = [lo, hi]
    return res


def bd_table(per_photo, curves, peers):
    """BD deltas of each WaLLoC curve against each peer (mean curves), and
    the median of the per-photo BD-rates against JPEG 4:2:0."""
    rows = []
    tests = walloc_curves(curves)
    for test, test_rows in tests.items():
        for peer in peers:
            row = {"walloc": test, "peer": peer}
            for key, tag in (("psnr", "psnr"), ("ms_ssim_db", "msssim")):
                r = _bd(curves[peer], test_rows, key)
                row[f"bd_rate_{tag}"] = r["bd_rate"]
                row[f"bd_{tag}"] = r["bd_psnr"]
                row[f"interval_{tag}"] = r["bpp_interval"]
            if peer == BASE:
                row["median_photo_bd_rate_psnr"] = _median_photo_bd(
                    per_photo, test, peer
                )
            rows.append(row)
    return rows


def _photo_rows(points, curve):
    if curve == "WaLLoC closed-form ladder":
        return [p for p in points if p["curve"].startswith("WaLLoC CF")]
    if curve == "WaLLoC all models (envelope)":
        return [p for p in points if p["curve"].startswith("WaLLoC ")]
    return [p for p in points if p["curve"] == curve]


def _median_photo_bd(per_photo, test, peer):
    vals = []
    for ph in per_photo:
        ref = _photo_rows(ph["points"], peer)
        r = _bd(ref, _photo_rows(ph["points"], test), "psnr")["bd_rate"]
        if r is not None:
            vals.append(r)
    return {"median": float(np.median(vals)) if vals else None, "n": len(vals)}


def jpeg_check(per_photo):
    """The issue's check for each WaLLoC point (model at its default rate, or
    one target_bpp): JPEG 4:2:0 at most as many bytes, per photo."""
    out = []
    first = per_photo[0]["points"]
    keys = [
        (p["curve"], p["setting"]) for p in first if p["curve"].startswith("WaLLoC")
    ]
    for curve, setting in keys:
        row = {"walloc": curve[len("WaLLoC ") :], "setting": setting}
        pts = [
            next(
                q
                for q in ph["points"]
                if (q["curve"], q["setting"]) == (curve, setting)
            )
            for ph in per_photo
        ]
        row["bpp"] = float(np.mean([q["bpp"] for q in pts]))
        row["psnr"] = float(np.mean([q["psnr"] for q in pts]))
        if curve.endswith("target_bpp"):  # the bytes against the target
            row["at_most_target"] = sum(q["bpp"] <= setting for q in pts)
            row["min_bpp_over_target"] = min(q["bpp"] for q in pts) / setting
        for variant in ("optimize", "default"):
            diffs, wins, none = [], 0, 0
            for ph, q in zip(per_photo, pts):
                fits = [r for r in ph["jpeg_check"][variant] if r[1] <= q["bytes"]]
                if not fits:
                    none += 1
                    continue
                best = max(fits, key=lambda r: r[1])
                d = q["psnr"] - best[2]
                diffs.append(d)
                wins += d < 0
            row[variant] = {
                "mean_psnr_diff": float(np.mean(diffs)) if diffs else None,
                "jpeg_wins": wins,
                "photos": len(diffs),
                "no_jpeg_that_small": none,
            }
        out.append(row)
    return out


def worst_vs_base(curves):
    """Per WaLLoC curve, its points in ``BD_RANGE`` against JPEG 4:2:0's mean
    curve at the same mean rate (PCHIP in log bpp); both curves without their
    dominated points, as for the deltas. The lowest ``PSNR - JPEG``, where,
    and how many points."""
    from scipy.interpolate import PchipInterpolator

    base = pareto([(r["bpp"], r["psnr"]) for r in curves[BASE]])
    jpeg = PchipInterpolator(np.log([b for b, _ in base]), [d for _, d in base])
    lo, hi = max(BD_RANGE[0], base[0][0]), min(BD_RANGE[1], base[-1][0])
    out = []
    for test, rows in walloc_curves(curves).items():
        front = set(pareto([(r["bpp"], r["psnr"]) for r in rows]))
        pts = [
            (r["bpp"], r["psnr"] - float(jpeg(math.log(r["bpp"]))), r["setting"])
            for r in rows
            if (r["bpp"], r["psnr"]) in front and lo <= r["bpp"] <= hi
        ]
        if pts:
            bpp, diff, setting = min(pts, key=lambda p: p[1])
            row = {"walloc": test, "points": len(pts), "worst_db": diff}
            out.append(dict(row, at_bpp=bpp, setting=setting))
    return out


# ----------------------------------------------------------------- report
def _fmt_bd(v, spec):
    return fmt(v, spec, missing="n/a")


def markdown(report):
    p = report["parameters"]
    mode = " (QUICK SMOKE RUN: not the results)" if p["quick"] else ""
    m0, m1 = report["machine"], report["machine_end"]
    lines = [
        f"# Rate-distortion curves against image codecs{mode}",
        "",
        f"Machine: {machine_line(m0)}; load average {load_text(m0)} at the start, "
        f"{load_text(m1)} at the end; runtime {report['runtime_s']:.0f} s"
        + (
            " (this report only assembles per-photo results measured by earlier, "
            "resumed runs: see their logs for their load and time). "
            if p.get("report_only")
            else ". "
        )
        + f"Codecs: {report['codec_versions']}.",
        "",
        "Held-out photos (never used in any fit):",
        "",
    ]
    for name, d in report["data"].items():
        sizes = ", ".join(f"{s[1]}x{s[0]}" for s in d["shapes"])
        lines.append(
            f"- **{name}**: {len(d['names'])} photos; {d['source']}. Sizes: {sizes}."
        )
    lines += [
        "",
        "Closed forms fitted on the bundled fit photos "
        f"({', '.join(report['fit_photos'])}). target_bpp traces: "
        + ("yes" if report["target_bpp"] else "no")
        + ".",
        "",
    ]
    for ds, res in report["results"].items():
        lines += [f"## {ds}", "", "### Bjøntegaard deltas over 0.15-1.0 bpp", ""]
        lines += [
            "Mean curves of the set (mean bpp against mean PSNR per setting); "
            "BD-rate in % (negative: WaLLoC needs fewer bytes), BD-PSNR in dB "
            "(positive: WaLLoC better); MS-SSIM in dB (-10 log10(1 - MS-SSIM)). "
            "`interval`: the bpp range both curves cover inside 0.15-1.0; n/a: "
            "no overlap. Median photo: the median of per-photo BD-rates (PSNR).",
            "",
        ]
        rows = []
        for r in res["bd"]:
            iv = r["interval_psnr"]
            med = r.get("median_photo_bd_rate_psnr") or {}
            rows.append(
                [
                    r["walloc"],
                    r["peer"],
                    _fmt_bd(r["bd_rate_psnr"], "+.1f"),
                    _fmt_bd(r["bd_psnr"], "+.2f"),
                    _fmt_bd(r["bd_rate_msssim"], "+.1f"),
                    _fmt_bd(r["bd_msssim"], "+.2f"),
                    f"{fmt(iv[0], '.2f')}-{fmt(iv[1], '.2f')}",
                    _fmt_bd(med.get("median"), "+.1f")
                    + (f" ({med['n']})" if med else ""),
                ]
            )
        head = ["WaLLoC", "against", "BD-rate PSNR %", "BD-PSNR dB"]
        head += ["BD-rate MS-SSIM %", "BD-MS-SSIM dB", "interval bpp"]
        head += ["median photo BD-rate %"]
        lines += [markdown_table(head, rows), ""]
        lines += [
            "### Worst point against JPEG 4:2:0's curve, 0.15-1.0 bpp",
            "",
            "Each point of the WaLLoC curve (mean bpp, mean PSNR of the set) "
            "inside the window, minus JPEG 4:2:0's mean curve (PCHIP in log bpp) "
            "at the same rate; the lowest (the goal: none below -0.3 dB).",
            "",
        ]
        rows = [
            [
                w["walloc"],
                str(w["points"]),
                f"{w['worst_db']:+.2f}",
                f"{w['at_bpp']:.3f}",
                str(w["setting"]),
            ]
            for w in worst_vs_base(res["curves"])
        ]
        head = ["WaLLoC", "points", "worst dB", "at bpp", "setting"]
        lines += [markdown_table(head, rows), ""]
        lines += [
            "### The issue's check: JPEG 4:2:0 at most WaLLoC's bytes, per photo",
            "",
            "For each WaLLoC point and photo, the JPEG (quality 1..95) of that "
            "photo with the most bytes not above the WaLLoC blob's; "
            "difference = WaLLoC PSNR minus that JPEG's, averaged over photos "
            "(negative: JPEG better). `optimize`: Pillow with optimised Huffman "
            "tables; `default`: Pillow's defaults.",
            "",
        ]
        rows = []
        for r in res["check"]:
            o, d = r["optimize"], r["default"]
            met = ""
            if "at_most_target" in r:
                met = (
                    f"{r['at_most_target']}/{o['photos'] + o['no_jpeg_that_small']}"
                    f", mean {r['bpp'] / r['setting']:.2f}x"
                )
            rows.append(
                [
                    r["walloc"],
                    r["setting"],
                    met,
                    f"{r['bpp']:.3f}",
                    f"{r['psnr']:.2f}",
                    _fmt_bd(o["mean_psnr_diff"], "+.2f"),
                    f"{o['jpeg_wins']}/{o['photos']}"
                    + (
                        f" ({o['no_jpeg_that_small']} none)"
                        if o["no_jpeg_that_small"]
                        else ""
                    ),
                    _fmt_bd(d["mean_psnr_diff"], "+.2f"),
                    f"{d['jpeg_wins']}/{d['photos']}",
                ]
            )
        head = ["WaLLoC", "setting", "blobs <= target", "mean bpp", "mean PSNR"]
        head += ["vs JPEG (optimize) dB", "JPEG wins", "vs JPEG (default) dB"]
        head += ["JPEG wins"]
        lines += [markdown_table(head, rows), ""]
        lines += ["### Mean curves", ""]
        rows = []
        for curve, pts in res["curves"].items():
            for q in pts:
                rows.append(
                    [
                        curve,
                        q["setting"],
                        f"{q['bpp']:.3f}",
                        f"{q['psnr']:.2f}",
                        fmt(q.get("ms_ssim"), ".4f"),
                    ]
                )
        lines += [
            "<details><summary>every setting</summary>",
            "",
            markdown_table(["curve", "setting", "bpp", "PSNR", "MS-SSIM"], rows),
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


STYLE = {
    "JPEG 4:2:0": ("tab:blue", "o-"),
    "JPEG 4:4:4": ("tab:cyan", "o--"),
    "WebP": ("tab:orange", "s-"),
    "AVIF": ("tab:purple", "v-"),
    "JPEG XL": ("tab:olive", "D-"),
    "JPEG 2000": ("tab:green", "^-"),
}


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    sets = list(report["results"])
    fig, axes = plt.subplots(len(sets), 2, figsize=(13, 5 * len(sets)), squeeze=False)
    for i, ds in enumerate(sets):
        curves = report["results"][ds]["curves"]
        for j, key in enumerate(["psnr", "ms_ssim_db"]):
            ax = axes[i, j]
            for curve, (color, style) in STYLE.items():
                if curve in curves:
                    c = [(q["bpp"], q.get(key)) for q in curves[curve]]
                    c = [v for v in c if v[1] is not None]
                    ax.plot(*zip(*c), style, color=color, label=curve, ms=3, lw=1)
            cf = sorted(
                (q["bpp"], q.get(key), name[len("WaLLoC CF ") :])
                for name, qs in curves.items()
                if name.startswith("WaLLoC CF")
                for q in qs
            )
            ax.plot(
                [c[0] for c in cf],
                [c[1] for c in cf],
                "o:",
                color="crimson",
                mfc="none",
                ms=6,
                label="WaLLoC closed forms",
            )
            for x, y, lab in cf:
                ax.annotate(
                    lab,
                    (x, y),
                    fontsize=6,
                    xytext=(3, -8),
                    textcoords="offset points",
                    color="crimson",
                )
            for name, marker, line in (("rgb-16x", "*", "-"), ("rgb-4x", "P", "--")):
                q = curves.get(f"WaLLoC {name}")
                if q:
                    ax.plot(
                        q[0]["bpp"],
                        q[0].get(key),
                        marker,
                        color="k",
                        ms=11,
                        label=f"WaLLoC {name} (shipped)",
                    )
                t = curves.get(f"WaLLoC {name} target_bpp")
                if t:
                    ax.plot(
                        [v["bpp"] for v in t],
                        [v.get(key) for v in t],
                        line,
                        color="k",
                        lw=2,
                        label=f"WaLLoC {name} target_bpp",
                    )
            ax.axvspan(*BD_RANGE, color="0.93", zorder=0)
            ax.set_xscale("log")
            ax.set_xlim(0.08, 2.6)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_locator(FixedLocator([0.1, 0.15, 0.2, 0.3, 0.5, 1, 2]))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.set_xlabel("bits per pixel (mean over the photos, log scale)")
            ax.set_ylabel("PSNR (dB)" if key == "psnr" else "MS-SSIM (dB)")
            ax.set_title(f"{ds}: {'PSNR' if key == 'psnr' else 'MS-SSIM'}")
            ax.grid(alpha=0.3, which="both")
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


# ------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = benchmark_parser(__doc__, threads=2, replot="rd_curves.json")
    parser.add_argument(
        "--sets", default="bundled,mate,opencv", help="comma-separated held-out sets"
    )
    parser.add_argument(
        "--max-photos",
        type=int,
        default=8,
        help="photos per Debian set, in name order (default 8; 0: all)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip the photos that --out/rd_curves.partial.json holds",
    )
    parser.add_argument(
        "--targets-only",
        action="store_true",
        help="measure only the target_bpp traces (saved for a later --resume)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="with --resume: report the saved photos only, measure nothing",
    )
    return parser.parse_args(argv)


class _Partial:
    """Per-photo results saved as they come (``rd_curves.partial.json``), so
    that ``--resume`` after an interrupted run skips the photos done with the
    same settings."""

    def __init__(self, path, settings, resume):
        self.path, self.settings, self.data = Path(path), settings, {}
        if resume and self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved.get("settings") == settings:
                self.data = saved["photos"]
                print(f"Resuming: {sum(map(len, self.data.values()))} photos done")

    def get(self, ds, name):
        return self.data.get(ds, {}).get(name)

    def put(self, ds, name, value):
        self.data.setdefault(ds, {})[name] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"settings": self.settings, "photos": self.data})
        self.path.write_text(text)


def main(argv=None):
    args = parse_args(argv)
    args.max_photos = args.max_photos or None
    if args.replot:
        BenchmarkRun.replot(args.out, "rd_curves", plot, markdown)
        return 0
    run = BenchmarkRun("rd_curves", args)
    torch.manual_seed(SEED)
    print(f"Machine: {machine_line(run.machine)}; load {load_text(run.machine)}")
    peers = available_peers()
    sweeps = {
        k: v for k, v in (QUICK_SWEEPS if args.quick else SWEEPS).items() if k in peers
    }
    ladder = QUICK_LADDER if args.quick else LADDER
    targets = (QUICK_TARGETS if args.quick else TARGETS) if takes_target_bpp() else {}
    sets, sources = load_held_out_sets(
        args.sets.split(","), args.quick, args.max_photos
    )
    fit_photos, fit_names = load_photos(split="fit", return_names=True)
    # The target_bpp traces are saved apart (their own partial file), so that
    # they can be added to photos measured before, or measured alone.
    settings = {"sweeps": sweeps, "ladder": ladder, "targets": {}}
    settings = json.loads(json.dumps(settings))
    models, results, rows = None, {}, []
    shipped = {n: (WallocCodec.from_pretrained(n), {}) for n in targets}
    tpartial = None
    if targets:
        tsettings = json.loads(json.dumps({"targets": targets}))
        tpath = args.out / "rd_curves_targets.partial.json"
        tpartial = _Partial(tpath, tsettings, args.resume)
    partial = _Partial(args.out / "rd_curves.partial.json", settings, args.resume)
    for ds, (photos, names) in list(sets.items()):
        per_photo = []
        for name, img in zip(names, photos):
            done = partial.get(ds, name)
            if done is None and (args.report_only or args.targets_only):
                pass  # nothing measured for the main curves
            elif done is None:
                if models is None:
                    print("Fitting closed forms on the bundled fit photos ...")
                    models = walloc_models(ladder, fit_photos)
                with Timer() as t:
                    points = evaluate_photo(img, peers, sweeps, models, {})
                    check = jpeg_check_sweep(img)
                done = {"name": name, "points": points, "jpeg_check": check}
                partial.put(ds, name, done)
                size = f"{img.shape[1]}x{img.shape[0]}"
                print(f"  {ds}/{name} {size}: {t.s:.1f} s", flush=True)
            extra = tpartial.get(ds, name) if tpartial else None
            if extra is None and targets and not args.report_only:
                with Timer() as t:
                    extra = {"points": evaluate_targets(img, shipped, targets)}
                tpartial.put(ds, name, extra)
                print(f"  targets {ds}/{name}: {t.s:.1f} s", flush=True)
            if done is None:
                continue
            if extra is not None:
                done = dict(done, points=done["points"] + extra["points"])
            per_photo.append(done)
            rows += [dict(dataset=ds, photo=name, **p) for p in done["points"]]
        if args.targets_only:
            continue
        if args.report_only:  # the report lists the photos it holds
            kept = {p["name"] for p in per_photo}
            keep = [i for i, n in enumerate(names) if n in kept]
            sets[ds] = ([photos[i] for i in keep], [names[i] for i in keep])
        if not per_photo:
            del sets[ds]
            continue
        curves = mean_curves(per_photo)
        results[ds] = {
            "curves": curves,
            "bd": bd_table(per_photo, curves, peers),
            "check": jpeg_check(per_photo),
            "per_photo": per_photo,
        }
    if args.targets_only:
        return 0
    for r in rows:
        r.setdefault("compress_s", None)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": run.machine,
        "parameters": {
            "quick": args.quick,
            "report_only": args.report_only,
            "threads": args.threads,
            "sweeps": sweeps,
            "ladder": ladder,
            "targets": targets,
            "bd_range_bpp": BD_RANGE,
            "bd_method": "pchip",
        },
        "codec_versions": codec_versions(peers),
        "target_bpp": any(
            p["curve"].endswith("target_bpp")
            for res in results.values()
            for ph in res["per_photo"]
            for p in ph["points"]
        ),
        "fit_photos": fit_names,
        "models": {k: info for k, (_, info) in (models or {}).items()},
        "data": {
            k: {
                "names": v[1],
                "shapes": [list(p.shape) for p in v[0]],
                "source": sources[k],
            }
            for k, v in sets.items()
        },
        "results": results,
    }
    plot_path = args.out / "rd_curves.png"
    report = run.finish(report, markdown, rows)
    plot(report, plot_path)
    if not args.report_only:
        for done in (partial, tpartial):
            if done is not None:
                done.path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
