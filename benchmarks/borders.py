"""Image borders before and after the symmetric boundary rule.

What it measures
----------------
16x closed-form codecs (``latent_dim=12, levels=3, max_iter=0,
random_state=0``) fitted on the eight bundled "fit" photos, in three variants:
"periodization", the periodic wavelet packets of model format 1 (borders wrap
around); "symmetric", the whole-sample symmetric extension at every level of
format 2 with the fused encoder alone, as first released; and "symmetric + end
LS", the same model encoding with least-squares latents at the end of each axis
(``sklearn_walloc._edges``), what ``transform`` and ``compress`` do now. All
code photos that none saw:

- the three bundled held-out photos (astronaut, coffee, china);
- the 12 "nature" photos of the Debian package ``mate-backgrounds`` (resized to
  512 x 768), when ``apt-get download`` can fetch it;

each cropped to sides that are multiples of 8 ("aligned") and by 3 more rows
and 5 more columns ("odd": the padded path). For every decoded uint8 photo
(``decompress(restore=True)``) it reports the PSNR of the first and last row and
column, of the 8-pixel border ring and of the interior (32 pixels in from every
side), and the blob bytes; and, averaged over photos and the four sides, the PSNR
of the line at each distance from the edge (figure). For the last variant it
also codes each photo flipped, so that its last row and column are coded at the
start of their axis: the same content at the other position. Writes
``benchmarks/results/borders.{md,json,csv,png}`` and corner crops
(``borders_corner.png``, original | periodization | symmetric | symmetric + end
LS, 4x).

Run: ``python benchmarks/borders.py`` (about 3 minutes on 2 idle CPU cores).
"""

import copy
import math

import numpy as np
from _common import (
    BenchmarkRun,
    benchmark_parser,
    load_mate_photos,
    markdown_table,
    save_figure,
)
from _machine import machine_line

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos
from sklearn_walloc.metrics import psnr

MARGIN = 32  # interior: this many pixels in from every side
RING = 8
SYM_LS = "symmetric + end LS"


def _fit(photos, boundary):
    """A closed-form codec whose wavelet packets use ``boundary``.

    Private on purpose: the public API fits the symmetric rule only; the
    periodic packets of model format 1 are the "before" this script measures.
    """
    from sklearn_walloc import _wavelets

    original = _wavelets.default_boundary
    _wavelets.default_boundary = lambda wavelet: boundary
    try:
        codec = WallocCodec(
            latent_dim=12, levels=3, max_iter=0, decoder_width=0, random_state=0
        ).fit(photos)
    finally:
        _wavelets.default_boundary = original
    assert codec.module_.wpt.boundary == boundary
    return codec


def _plain_encoder(codec):
    """The same codec encoding with the fused encoder alone (no end-of-axis
    least squares): the symmetric rule as first released.

    Private on purpose: the public API always solves the last latents; the
    release without that step is the reference, set in the runtime cache.
    """
    plain = copy.deepcopy(codec)
    module, _, device = plain._runtime_model()
    plain._runtime[str(device)] = (module, module.fused_encoder().to(device), device)
    return plain


def _line_psnr(x, y, d):
    """Mean over the four sides of the PSNR of the line ``d`` pixels in."""
    return float(
        np.mean(
            [
                psnr(x[d], y[d]),
                psnr(x[-1 - d], y[-1 - d]),
                psnr(x[:, d], y[:, d]),
                psnr(x[:, -1 - d], y[:, -1 - d]),
            ]
        )
    )


def _without_profile(m):
    return {k: v for k, v in m.items() if k != "profile"}


def _roundtrip(codec, x):
    (blob,) = codec.compress([x])
    (y,) = codec.decompress([blob], restore=True)
    return blob, y


def _measure(codec, x, flipped=False):
    blob, y = _roundtrip(codec, x)
    extra = {"last_row_at_start": math.nan, "last_col_at_start": math.nan}
    if flipped:
        # The last row (column) coded as the first one of the flipped photo:
        # the same content at the start of the axis, a reference that
        # separates the position's effect from the content's.
        _, yr = _roundtrip(codec, np.ascontiguousarray(x[::-1]))
        _, yc = _roundtrip(codec, np.ascontiguousarray(x[:, ::-1]))
        extra = {
            "last_row_at_start": psnr(x[-1], yr[0]),
            "last_col_at_start": psnr(x[:, -1], yc[:, 0]),
        }
    ring = np.ones(x.shape[:2], bool)
    ring[RING:-RING, RING:-RING] = False
    inner = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    return {
        "bytes": len(blob),
        "first_row": psnr(x[0], y[0]),
        "last_row": psnr(x[-1], y[-1]),
        "first_col": psnr(x[:, 0], y[:, 0]),
        "last_col": psnr(x[:, -1], y[:, -1]),
        "ring": psnr(x[ring], y[ring]),
        "interior": psnr(x[inner], y[inner]),
        "whole": psnr(x, y),
        **extra,
        "profile": [_line_psnr(x, y, d) for d in range(MARGIN)],
    }, y


def main():
    args = benchmark_parser(__doc__).parse_args()
    run = BenchmarkRun("borders", args)
    fit = load_photos(split="fit")
    held, names = load_photos(split="holdout", return_names=True)
    sets = {"bundled held-out": (held, names)}
    mate, mate_names = load_mate_photos(limit=3 if args.quick else None)
    if mate:
        sets["mate-backgrounds nature"] = (mate, mate_names)
    symmetric = _fit(fit, "symmetric")
    codecs = {
        "periodization": _fit(fit, "periodization"),
        "symmetric": _plain_encoder(symmetric),
        SYM_LS: symmetric,
    }
    rows, summary, profiles, corners = [], [], {}, {}
    for set_name, (photos, photo_names) in sets.items():
        for size in ("aligned", "odd"):
            per = {b: [] for b in codecs}
            for x, name in zip(photos, photo_names):
                x = x[: x.shape[0] // 8 * 8, : x.shape[1] // 8 * 8]
                x = x if size == "aligned" else x[:-3, :-5]
                for b, codec in codecs.items():
                    m, y = _measure(codec, x, flipped=b == SYM_LS)
                    per[b].append(m)
                    rows.append({"set": set_name, "size": size, "photo": name,
                                 "boundary": b, **_without_profile(m)})  # fmt: skip
                    if name == "astronaut" and size == "odd":
                        corners[b] = y[-64:, -64:]
                        corners["original"] = x[-64:, -64:]
            for b, ms in per.items():
                mean = {k: float(np.mean([m[k] for m in ms]))
                        for k in _without_profile(ms[0])}  # fmt: skip
                mean["bytes"] = int(sum(m["bytes"] for m in ms))
                mean["worst_edge_deficit"] = max(
                    m["interior"]
                    - min(
                        m[k] for k in ("first_row", "last_row", "first_col", "last_col")
                    )
                    for m in ms
                )
                summary.append({"set": set_name, "size": size, "boundary": b,
                                "photos": len(ms), **mean})  # fmt: skip
                profiles[(set_name, size, b)] = np.mean(
                    [m["profile"] for m in ms], axis=0
                )

    def find(set_name, size, boundary):
        return next(
            s
            for s in summary
            if (s["set"], s["size"], s["boundary"]) == (set_name, size, boundary)
        )

    changes = []
    for after, before in ((SYM_LS, "periodization"), (SYM_LS, "symmetric")):
        changes.append(f"Change from {before} to {after}:")
        changes.append("")
        for s_after in summary:
            if s_after["boundary"] != after:
                continue
            s_before = find(s_after["set"], s_after["size"], before)
            changes.append(
                f"- {s_after['set']}, {s_after['size']}: bytes "
                f"{100 * (s_after['bytes'] / s_before['bytes'] - 1):+.2f}%, "
                f"whole-image PSNR {s_after['whole'] - s_before['whole']:+.2f} dB, "
                f"8-px ring {s_after['ring'] - s_before['ring']:+.2f} dB, last row "
                f"{s_after['last_row'] - s_before['last_row']:+.2f} dB, last col "
                f"{s_after['last_col'] - s_before['last_col']:+.2f} dB"
            )
        changes.append("")
    table = [
        [f"{s['set']} ({s['photos']})", s["size"], s["boundary"],
         *(f"{s[k]:.2f}" for k in ("first_row", "last_row", "first_col", "last_col",
                                   "ring", "interior", "worst_edge_deficit")),
         s["bytes"]]
        for s in summary
    ]  # fmt: skip
    reference = [
        [s["set"], s["size"], *(f"{s[k]:.2f}" for k in ("last_row", "last_row_at_start",
         "last_col", "last_col_at_start", "interior"))]
        for s in summary if s["boundary"] == SYM_LS
    ]  # fmt: skip
    text = "\n".join(
        [
            "# Borders: periodic (model format 1), symmetric (format 2), and "
            "symmetric with least-squares latents at the end of each axis",
            "",
            f"Machine: {machine_line(run.machine)}",
            "",
            "Mean PSNR in dB (peak 255) of decoded uint8 photos, by line; "
            "'worst edge deficit' is the largest gap, over photos, between the "
            "interior and the worst of its four edge lines. Bytes: all blobs of "
            "the set.",
            "",
            markdown_table(
                [
                    "photos",
                    "size",
                    "boundary",
                    "first row",
                    "last row",
                    "first col",
                    "last col",
                    "8-px ring",
                    "interior",
                    "worst edge deficit",
                    "bytes",
                ],
                table,
            ),
            "",
            *changes,
            "Position against content: the last row (column) of each photo, "
            f"coded by '{SYM_LS}' at the end of its axis and, flipped, at its "
            "start (mean PSNR, dB). The start is the lowpass-centred, easy end; "
            "the gap left between the two columns is what the position still "
            "costs, the gap to the interior is the lines' content.",
            "",
            markdown_table(
                [
                    "photos",
                    "size",
                    "last row",
                    "same, at the start",
                    "last col",
                    "same, at the start",
                    "interior",
                ],
                reference,
            ),
        ]
    )
    report = {
        "machine": run.machine,
        "summary": summary,
        "profiles": {" / ".join(k): v.tolist() for k, v in profiles.items()},
    }
    run.finish(report, lambda report: text, rows)
    _plot(profiles, args.out / "borders.png")
    if corners:
        from PIL import Image

        strip = np.concatenate(
            [
                corners["original"],
                np.full((64, 4, 3), 255, np.uint8),
                corners["periodization"],
                np.full((64, 4, 3), 255, np.uint8),
                corners["symmetric"],
                np.full((64, 4, 3), 255, np.uint8),
                corners[SYM_LS],
            ],
            axis=1,
        )
        Image.fromarray(strip).resize(
            (strip.shape[1] * 4, strip.shape[0] * 4), Image.NEAREST
        ).save(args.out / "borders_corner.png")


def _plot(profiles, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k[:2] for k in profiles})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), sharey=True)
    for ax, key in zip(np.atleast_1d(axes), keys):
        for b, style in (
            ("periodization", "r--"),
            ("symmetric", "b:"),
            (SYM_LS, "g-"),
        ):
            p = profiles[(*key, b)]
            ax.plot(np.arange(len(p)), p, style, label=b)
        ax.set_title(f"{key[0]}, {key[1]}", fontsize=9)
        ax.set_xlabel("pixels from the edge")
    np.atleast_1d(axes)[0].set_ylabel("line PSNR (dB), mean of 4 sides")
    np.atleast_1d(axes)[0].legend()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
