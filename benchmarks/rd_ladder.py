"""Two side measurements of the closed-form ladder in ``rd_curves.py``.

- ``--part diagnose`` (``rd_ladder_diagnosis.{md,json}``): why the
  ``levels=3`` ladder jumps between ``latent_dim`` 4 and 5 (issue #21: "the
  ``latent_dim=4`` closed form looks broken"). The principal axes of the
  ``latent_dim=6`` closed form with their energy on the lowpass (LL) band of
  each colour; the models of ``latent_dim`` 3-6 on held-out photos (PSNR of
  the uint8 output and in model units, bpp, latent scale); and the
  ``latent_dim=6`` model with subsets of its latents zeroed.
- ``--part ceilings`` (``rd_ceilings.{md,json}``): each ladder model with
  16-bit latents (``transform`` + ``inverse_transform``, no entropy coding),
  about the most its projection allows at any rate, on the held-out sets of
  ``rd_curves.py`` (the same photos, :func:`_common.load_held_out_sets`).

Closed forms are fitted on the 8 bundled fit photos, as in ``rd_curves.py``.
``python benchmarks/rd_ladder.py`` runs both (a few minutes on 2 cores).
"""

import sys

import numpy as np
from _common import (
    BenchmarkRun,
    benchmark_parser,
    load_held_out_sets,
    load_mate_photos_varied,
    load_text,
    markdown_table,
    psnr,
)
from _machine import machine_line

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos

SEED = 0
# (levels, latent_dim) of rd_curves.py's ladder.
LADDER = [(3, 3), (3, 4), (3, 6), (3, 8), (3, 12), (3, 16), (3, 24), (2, 12)]
QUICK_LADDER = [(3, 3), (3, 4), (3, 6), (3, 12)]


def _encoder_components(codec):
    """The closed form's principal axes ``(latent_dim, C, bands)``.

    Private on purpose: the diagnosis reads which wavelet packet bands and
    colours each latent projects (the encoder's 1x1 weights); the public API
    has no accessor for them.
    """
    w = codec.module_.encoder.weight.detach().numpy()
    return w.reshape(w.shape[0], codec.n_channels_, -1)


def diagnose_ladder(fit_photos, photos, names, dims=(3, 4, 5, 6)):
    """Why the ``levels=3`` ladder jumps between ``latent_dim`` 4 and 5.

    For each principal axis of the ``latent_dim=6`` closed form: its energy on
    the lowpass (LL) band of each colour channel. Then the models of
    ``dims`` (PSNR restored and in model units, bpp, latent scale), and the
    ``latent_dim=6`` model with latent subsets zeroed before decoding (rate
    estimated from the per-channel entropy shares of its blob).
    """
    from sklearn_walloc.metrics import entropy_bits

    report = {"photos": names, "models": [], "axes": [], "subsets": []}
    big = WallocCodec(levels=3, latent_dim=max(dims), max_iter=0, random_state=SEED)
    big.fit(fit_photos)
    for k, comp in enumerate(_encoder_components(big)):
        ll = comp[:, 0]
        report["axes"].append(
            {
                "axis": k + 1,
                "ll_energy": float((ll**2).sum() / (comp**2).sum()),
                "ll_colour": [round(float(v), 3) for v in ll],
            }
        )
    for d in dims:
        codec = WallocCodec(levels=3, latent_dim=d, max_iter=0, random_state=SEED)
        codec.fit(fit_photos)
        row = {"latent_dim": d, "latent_scale": codec.latent_scale_, "photos": []}
        for img in photos:
            (blob,) = codec.compress([img])
            rec = codec.decompress([blob])[0]
            raw = codec.decompress([blob], restore=False)[0]
            row["photos"].append(
                {
                    "bpp": 8 * len(blob) / (img.shape[0] * img.shape[1]),
                    "psnr": psnr(img, rec),
                    "psnr_model_units": psnr(img.astype(np.float32), raw),
                }
            )
        report["models"].append(row)
    subsets = [(0, 1, 2), (0, 1, 4), (0, 1, 2, 3), (0, 1, 2, 4), (0, 1, 2, 3, 4)]
    for keep in subsets:
        bpp, db = [], []
        for img in photos:
            z = big.transform([img])[0].copy()
            h = [entropy_bits(z[..., k : k + 1]) for k in range(z.shape[-1])]
            (blob,) = big.compress([img])
            bits = 8 * len(blob) * sum(h[k] for k in keep) / sum(h)
            z[..., [k for k in range(z.shape[-1]) if k not in keep]] = 0
            rec = big.inverse_transform([z])[0][: img.shape[0], : img.shape[1]]
            rec = np.clip(np.rint(rec), 0, 255).astype(np.uint8)
            bpp.append(bits / (img.shape[0] * img.shape[1]))
            db.append(psnr(img, rec))
        report["subsets"].append(
            {
                "axes": [k + 1 for k in keep],
                "bpp": float(np.mean(bpp)),
                "psnr": float(np.mean(db)),
                "per_photo": db,
            }
        )
    return report


def diagnosis_markdown(rep):
    lines = [
        "# The closed-form ladder between latent_dim 4 and 5",
        "",
        f"Closed forms (`levels=3`, `max_iter=0`) fitted on the bundled fit photos; "
        f"evaluated on {', '.join(rep['photos'])}. Machine: "
        f"{machine_line(rep['machine'])}; load {load_text(rep['machine'])}.",
        "",
        "## The principal axes of the latent_dim=6 closed form",
        "",
        markdown_table(
            ["axis", "energy on the LL band", "LL weights (R, G, B)"],
            [[a["axis"], f"{a['ll_energy']:.3f}", a["ll_colour"]] for a in rep["axes"]],
        ),
        "",
        "## The models",
        "",
    ]
    head = ["latent_dim", "latent scale", "mean bpp", "mean PSNR (uint8)"]
    head += ["mean PSNR (model units)"] + [f"{n}" for n in rep["photos"]]
    rows = []
    for m in rep["models"]:
        ph = m["photos"]
        rows.append(
            [
                m["latent_dim"],
                f"{m['latent_scale']:.4f}",
                f"{np.mean([p['bpp'] for p in ph]):.3f}",
                f"{np.mean([p['psnr'] for p in ph]):.2f}",
                f"{np.mean([p['psnr_model_units'] for p in ph]):.2f}",
            ]
            + [f"{p['psnr']:.1f}" for p in ph]
        )
    lines += [markdown_table(head, rows), "", "## Subsets of the latent_dim=6 axes", ""]
    lines += [
        "Latents outside the subset set to 0 (the training mean of that axis) "
        "before decoding; bpp estimated as the blob's bits times the subset's "
        "share of the per-channel latent entropy.",
        "",
    ]
    head = ["axes kept", "est. bpp", "mean PSNR", *rep["photos"]]
    rows = [
        [", ".join(map(str, s["axes"])), f"{s['bpp']:.3f}", f"{s['psnr']:.2f}"]
        + [f"{v:.1f}" for v in s["per_photo"]]
        for s in rep["subsets"]
    ]
    lines += [markdown_table(head, rows), ""]
    return "\n".join(lines)


# ------------------------------------------------------- projection ceiling
def projection_ceilings(fit_photos, sets, ladder):
    """PSNR of each ladder model with 16-bit latents: about what its
    projection allows whatever the rate (``transform`` + ``inverse_transform``,
    no entropy coding), per set, mean over the photos."""
    out = []
    for levels, dim in ladder:
        model = WallocCodec(
            levels=levels, latent_dim=dim, latent_bits=16, max_iter=0, random_state=SEED
        ).fit(fit_photos)
        row = {"model": f"CF J={levels} d={dim}", "reduction": 3 * 4**levels / dim}
        for ds, (photos, _) in sets.items():
            vals = []
            for img in photos:
                z = model.transform([img])
                rec = model.inverse_transform(z)[0][: img.shape[0], : img.shape[1]]
                vals.append(psnr(img, np.clip(np.rint(rec), 0, 255).astype(np.uint8)))
            row[ds] = float(np.mean(vals))
        print(f"  ceiling {row}", flush=True)
        out.append(row)
    return out


def ceilings_markdown(rep):
    sets = rep["sets"]
    rows = [
        [r["model"], f"{r['reduction']:.1f}x", *(f"{r[s]:.2f}" for s in sets)]
        for r in rep["ceilings"]
    ]
    return "\n".join(
        [
            "# Projection ceilings of the closed-form ladder",
            "",
            f"Machine: {machine_line(rep['machine'])}; load "
            f"{load_text(rep['machine'])}. Photos: "
            + ", ".join(f"{k} {v}" for k, v in rep.get("photos", {}).items())
            + ". Closed forms fitted on the "
            "bundled fit photos with `latent_bits=16`; mean PSNR (uint8) of "
            "`inverse_transform(transform(X))` on each held-out set: about the most "
            "that model's projection allows at any rate.",
            "",
            markdown_table(["model", "reduction", *sets], rows),
            "",
        ]
    )


def _diagnose(args):
    run = BenchmarkRun("rd_ladder_diagnosis", args)
    held, names = load_photos(split="holdout", return_names=True)
    mate, mate_names = load_mate_photos_varied(limit=2 if args.quick else 6)
    photos, names = held + mate, names + mate_names
    report = diagnose_ladder(load_photos(split="fit"), photos, names)
    report["machine"] = run.machine
    run.finish(report, diagnosis_markdown)


def _ceilings(args):
    run = BenchmarkRun("rd_ceilings", args)
    sets, _ = load_held_out_sets(args.sets.split(","), args.quick, args.max_photos)
    ladder = QUICK_LADDER if args.quick else LADDER
    rep = {"sets": list(sets), "machine": run.machine}
    rep["photos"] = {k: len(v[0]) for k, v in sets.items()}
    rep["ceilings"] = projection_ceilings(load_photos(split="fit"), sets, ladder)
    run.finish(rep, ceilings_markdown)


def main(argv=None):
    parser = benchmark_parser(__doc__, threads=2)
    parser.add_argument(
        "--part", choices=["diagnose", "ceilings", "all"], default="all"
    )
    parser.add_argument(
        "--sets", default="bundled,opencv,mate", help="held-out sets (ceilings)"
    )
    parser.add_argument(
        "--max-photos", type=int, default=8, help="photos per Debian set (0: all)"
    )
    args = parser.parse_args(argv)
    args.max_photos = args.max_photos or None
    if args.part in ("diagnose", "all"):
        _diagnose(args)
    if args.part in ("ceilings", "all"):
        _ceilings(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
