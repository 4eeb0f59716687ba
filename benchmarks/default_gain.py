"""The default quantiser gain of the shipped image models, and how it was chosen.

What it measures
----------------
Each shipped image model coded at its own rate (gain 0) keeps latents finer
than its projection can use: its last bits buy little. For gains 0, -1, -2,
... (quarter octaves, 1.5 dB coarser each), the mean bits per pixel and PSNR
of ``compress`` / ``decompress`` on the bundled *fit* photos (training data,
never reported as held out; grey-16x: their BT.601 luma), and the rule's
choice: the coarsest gain whose mean PSNR stays within ``LOSS_DB`` (0.5 dB)
of gain 0's. ``sklearn_walloc._pretrained.DEFAULT_GAINS`` holds the result,
which ``from_pretrained`` sets as the codec's ``gain``.

Run: ``python benchmarks/default_gain.py`` (a minute or two). Writes
``default_gain.md`` / ``.json`` in ``--out``.
"""

import numpy as np
from _common import BenchmarkRun, benchmark_parser, markdown_table, psnr
from _machine import machine_line
from _pretrain_data import to_grey

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos

LOSS_DB = 0.5
MODELS = ("rgb-16x", "rgb-4x", "grey-16x")


def _sweep(codec, photos, lowest=-12):
    rows = []
    for gain in range(0, lowest - 1, -1):
        codec.set_params(gain=gain)
        blobs = codec.compress(photos)
        decoded = codec.decompress(blobs)
        bpp = [8 * len(b) / (x.shape[0] * x.shape[1]) for b, x in zip(blobs, photos)]
        db = [psnr(x, y) for x, y in zip(photos, decoded)]
        rows.append(
            {"gain": gain, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(db))}
        )
        if rows[0]["psnr"] - rows[-1]["psnr"] > LOSS_DB + 0.5:
            break
    return rows


def main():
    args = benchmark_parser(__doc__, threads=2).parse_args()
    run = BenchmarkRun("default_gain", args)
    photos = load_photos(split="fit")
    report = {"loss_db": LOSS_DB, "models": {}}
    for name in MODELS:
        codec = WallocCodec.from_pretrained(name)
        data = [to_grey(x) for x in photos] if codec.n_channels_ == 1 else photos
        rows = _sweep(codec, data, -4 if args.quick else -12)
        ok = [r for r in rows if r["psnr"] >= rows[0]["psnr"] - LOSS_DB]
        report["models"][name] = {"rows": rows, "chosen": min(r["gain"] for r in ok)}
        print(name, report["models"][name]["chosen"], flush=True)
    report["machine"] = machine_line(run.machine)
    run.finish(report, _markdown)


def _markdown(report):
    lines = ["# Default quantiser gain of the shipped image models\n"]
    for name, m in report["models"].items():
        rows = [
            [str(r["gain"]), f"{r['bpp']:.3f}", f"{r['psnr']:.2f}"]
            + (["**chosen**"] if r["gain"] == m["chosen"] else [""])
            for r in m["rows"]
        ]
        lines.append(f"## {name}\n")
        lines.append(markdown_table(["gain", "bpp", "PSNR", ""], rows) + "\n")
    lines.append(
        f"Rule: the coarsest gain within {report['loss_db']} dB of gain 0, on the "
        f"bundled fit photos. Machine: {report['machine']}.\n"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
