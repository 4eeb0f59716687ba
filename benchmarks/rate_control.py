"""Rate control of the shipped rgb-16x: targets met, quality against JPEG, cost.

What it measures
----------------
``WallocCodec.from_pretrained("rgb-16x")`` at its own rate (gain 0), at the
default gain it loads with (``_pretrained.DEFAULT_GAINS``, chosen on the fit
photos by ``default_gain.py``), through ``compress(X, target_bpp=b)`` for
several ``b`` and ``target_psnr``, and the ladder of shipped RGB models
(rgb-16x, rgb-4x; ``_rate.best_of``, what the CLI does without ``-m``), on
photos no model was fitted on (issue #21's check):

- the bundled held-out photos (astronaut 512x512, coffee 600x400, china
  640x427);
- the 12 mate-backgrounds nature photos (evaluation only, never fitted), each
  downscaled with Lanczos to a different short side of 512 to 640 pixels, odd
  sizes among them (``_common.load_mate_photos_varied``);
- 8 classic test photographs of OpenCV's samples (opencv-doc), downscaled by
  3/4 with Lanczos (``_common.load_opencv_photos``).

Per photo and setting: the blob's bits per pixel against the target (every
blob must be at most the target; the mean ratio should be at least 0.85), the
PSNR of ``decompress(blobs)`` (uint8, as the photos went in) and the PSNR of
the Pillow JPEG (4:2:0, quality 1..95) whose size is closest to the blob's
without exceeding it. Cost: ``compress`` of each photo alone, timed with the
setting and at gain 0 in the same loop, and the number of candidate gains coded.

Run: ``python benchmarks/rate_control.py`` (a few minutes; ``--quick``: the
bundled photos and two targets). Writes ``rate_control.md`` / ``.json`` /
``.csv`` in ``--out``.
"""

import io
import time
import warnings

import numpy as np
from _common import (
    BenchmarkRun,
    benchmark_parser,
    load_mate_photos_varied,
    load_opencv_photos,
    markdown_table,
    psnr,
)
from _machine import machine_line
from PIL import Image

from sklearn_walloc import WallocCodec, _rate
from sklearn_walloc._pretrained import DEFAULT_GAINS
from sklearn_walloc.datasets import load_photos

TARGETS_BPP = (0.15, 0.3, 0.45, 0.6, 0.9, 1.5)  # 1.5: enhancement channels
LADDER_BPP = (0.45, 0.6, 0.9)
TARGET_PSNR = 27.0
QUALITIES = range(1, 96)


def _jpeg_ladder(x):
    """(bytes, PSNR) of Pillow's JPEG (4:2:0) at qualities 1..95."""
    out = []
    for q in QUALITIES:
        buffer = io.BytesIO()
        Image.fromarray(x).save(buffer, "JPEG", quality=q, subsampling=2)
        data = buffer.getvalue()
        out.append((len(data), psnr(x, np.asarray(Image.open(io.BytesIO(data))))))
    return out


def _jpeg_at(ladder, size):
    """PSNR of the largest JPEG not above ``size`` bytes (None if none fits)."""
    fits = [(n, db) for n, db in ladder if n <= size]
    return max(fits)[1] if fits else None


class _Counter:
    """Counts the candidate gains rate control codes per signal."""

    def __init__(self):
        self.n = 0
        self._orig = _rate._Candidates._latents

        def counted(this, gain):
            if gain not in this._coded:
                self.n += 1
            return self._orig(this, gain)

        _rate._Candidates._latents = counted


def _settings(quick):
    """(label, compress's targets, through the ladder?)"""
    targets = (0.3, 0.9) if quick else TARGETS_BPP
    return (
        [("own rate (gain 0)", {"gain": 0}, False)]
        + [(f"default gain ({DEFAULT_GAINS['rgb-16x']})", {}, False)]
        + [(f"target_bpp={b}", {"target_bpp": b}, False) for b in targets]
        + [(f"target_psnr={TARGET_PSNR}", {"target_psnr": TARGET_PSNR}, False)]
        + [(f"ladder, target_bpp={b}", {"target_bpp": b}, True) for b in LADDER_BPP]
    )


def _code(codec, models, x, target, through_ladder):
    """The codec that coded ``x`` for a setting (``gain``: that codec
    parameter), and the blob."""
    if through_ladder:
        return _rate.best_of(models, x, target)[:2]
    if "gain" in target:
        saved = codec.gain
        try:
            return codec, codec.set_params(gain=target["gain"]).compress([x])[0]
        finally:
            codec.gain = saved
    return codec, codec.compress([x], **target)[0]


def main():
    parser = benchmark_parser(__doc__, threads=2)
    args = parser.parse_args()
    run = BenchmarkRun("rate_control", args)
    codec = WallocCodec.from_pretrained("rgb-16x")
    models = [codec, WallocCodec.from_pretrained("rgb-4x")]
    sets = {"bundled holdout": (load_photos(split="holdout"), None)}
    if not args.quick:
        mate, _ = load_mate_photos_varied()
        opencv, _, _ = load_opencv_photos(limit=8)
        for name, photos in (("mate nature", mate), ("opencv", opencv)):
            if photos:
                sets[name] = (photos, None)
    counter = _Counter()
    codec.compress(sets["bundled holdout"][0][:1])  # warm-up: first-call costs
    rows, summary = [], []
    for set_name, (photos, _) in sets.items():
        ladders = [_jpeg_ladder(x) for x in photos]
        for label, target, through_ladder in _settings(args.quick):
            per = []
            for x, ladder in zip(photos, ladders):
                pixels = x.shape[0] * x.shape[1]
                t0 = time.perf_counter()
                _code(codec, models, x, {"gain": 0}, False)
                own_s = time.perf_counter() - t0
                counter.n = 0
                t0 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    coder, blob = _code(codec, models, x, target, through_ladder)
                target_s = time.perf_counter() - t0
                (y,) = coder.decompress([blob])
                db = psnr(x, y)
                jpeg = _jpeg_at(ladder, len(blob))
                row = {
                    "set": set_name,
                    "setting": label,
                    "shape": "x".join(map(str, x.shape[:2])),
                    "bpp": 8 * len(blob) / pixels,
                    "target_bpp": target.get("target_bpp"),
                    "psnr": db,
                    "jpeg_psnr": jpeg,
                    "candidates": counter.n,
                    "time_s": target_s,
                    "own_time_s": own_s,
                    "out_of_reach": bool(caught),
                }
                per.append(row)
                rows.append(row)
            bpp = np.array([r["bpp"] for r in per])
            jpeg = [r["jpeg_psnr"] for r in per]
            delta = [r["psnr"] - j for r, j in zip(per, jpeg) if j is not None]
            tb = target.get("target_bpp")
            summary.append(
                {
                    "set": set_name,
                    "setting": label,
                    "photos": len(per),
                    "mean_bpp": float(bpp.mean()),
                    "max_over_target": float((bpp / tb).max()) if tb else None,
                    "mean_over_target": float((bpp / tb).mean()) if tb else None,
                    "psnr": float(np.mean([r["psnr"] for r in per])),
                    "jpeg_psnr": float(np.mean([j for j in jpeg if j is not None]))
                    if delta
                    else None,
                    "delta_db": float(np.mean(delta)) if delta else None,
                    "jpeg_wins": int(sum(d < 0 for d in delta)),
                    "no_jpeg_fits": int(sum(j is None for j in jpeg)),
                    "candidates": float(np.mean([r["candidates"] for r in per])),
                    "out_of_reach": int(sum(r["out_of_reach"] for r in per)),
                    "time_ratio": float(
                        np.sum([r["time_s"] for r in per])
                        / np.sum([r["own_time_s"] for r in per])
                    ),
                }
            )
    report = {"summary": summary, "machine": machine_line(run.machine)}
    run.finish(report, _markdown, rows)


def _markdown(report):
    def f(v, spec):
        return "" if v is None else format(v, spec)

    rows = [
        [
            s["set"],
            s["setting"],
            str(s["photos"]),
            f(s["mean_bpp"], ".3f"),
            f(s["max_over_target"], ".3f"),
            f(s["mean_over_target"], ".3f"),
            f(s["psnr"], ".2f"),
            f(s["jpeg_psnr"], ".2f"),
            f(s["delta_db"], "+.2f"),
            f"{s['jpeg_wins']}"
            + (f" ({s['no_jpeg_fits']} none fit)" if s["no_jpeg_fits"] else ""),
            f(s["candidates"], ".1f")
            + (f" ({s['out_of_reach']} out of reach)" if s["out_of_reach"] else ""),
            f(s["time_ratio"], ".2f"),
        ]
        for s in report["summary"]
    ]
    header = [
        "set",
        "setting",
        "photos",
        "mean bpp",
        "max bpp/target",
        "mean bpp/target",
        "WaLLoC PSNR",
        "JPEG PSNR (<= bytes)",
        "WaLLoC - JPEG",
        "JPEG wins",
        "gains coded",
        "time / own rate",
    ]
    return (
        "# rgb-16x rate control on held-out photos\n\n"
        + markdown_table(header, rows)
        + f"\n\nMachine: {report['machine']}; runtime {report['runtime_s']:.0f} s.\n"
    )


if __name__ == "__main__":
    main()
