"""Closed forms of small ``latent_dim``, with and without the lowpass colour axes.

What it measures
----------------
``WallocCodec(latent_dim=d, levels=3, max_iter=0)`` fitted on the 8 bundled
fit photos, for d = 3 to 6, with the closed form's lowpass colour rule
(``_training._keep_lowpass_colours``: every lowpass colour axis kept where the
principal axes lose one) and with plain PCA, on held-out photos: the 3 bundled
ones and the 12 mate-backgrounds nature photos at varied sizes. Mean and
worst PSNR of ``decompress(compress(X))`` (uint8) and mean bits per pixel.
Issue #21 found the ``latent_dim=4`` point 2-3 dB under its neighbours; the
cause was a lost colour axis (``rd_ladder_diagnosis.md``).

Run: ``python benchmarks/lowpass_colours.py`` (about a minute). Writes
``lowpass_colours.md`` / ``.json`` in ``--out``.
"""

import numpy as np
from _common import (
    BenchmarkRun,
    benchmark_parser,
    load_mate_photos_varied,
    markdown_table,
    psnr,
)
from _machine import machine_line

from sklearn_walloc import WallocCodec, _training
from sklearn_walloc.datasets import load_photos


def _score(d, keep, fit, photos):
    rule = _training._keep_lowpass_colours
    if not keep:  # plain PCA: the rule switched off for this fit
        _training._keep_lowpass_colours = lambda comps, *a, **k: comps
    try:
        codec = WallocCodec(latent_dim=d, levels=3, max_iter=0, random_state=0)
        codec.fit(fit)
    finally:
        _training._keep_lowpass_colours = rule
    blobs = codec.compress(photos)
    db = [psnr(x, y) for x, y in zip(photos, codec.decompress(blobs))]
    bpp = [8 * len(b) / (x.shape[0] * x.shape[1]) for b, x in zip(blobs, photos)]
    return {
        "d": d,
        "rule": keep,
        "psnr": float(np.mean(db)),
        "worst": float(min(db)),
        "bpp": float(np.mean(bpp)),
    }


def main():
    args = benchmark_parser(__doc__, threads=2).parse_args()
    run = BenchmarkRun("lowpass_colours", args)
    mate, _ = load_mate_photos_varied()
    photos = load_photos(split="holdout") + mate
    fit = load_photos(split="fit")
    rows = [
        _score(d, keep, fit, photos)
        for d in ((3, 4) if args.quick else (3, 4, 5, 6))
        for keep in (False, True)
    ]
    report = {"rows": rows, "photos": len(photos), "machine": machine_line(run.machine)}
    run.finish(report, _markdown, rows)


def _markdown(r):
    rows = [
        [
            str(x["d"]),
            "kept" if x["rule"] else "plain PCA",
            f"{x['psnr']:.2f}",
            f"{x['worst']:.2f}",
            f"{x['bpp']:.3f}",
        ]
        for x in r["rows"]
    ]
    return (
        f"# Closed forms of small latent_dim, {r['photos']} held-out photos\n\n"
        + markdown_table(
            ["latent_dim", "lowpass colours", "mean PSNR", "worst", "bpp"], rows
        )
        + f"\n\nMachine: {r['machine']}.\n"
    )


if __name__ == "__main__":
    main()
