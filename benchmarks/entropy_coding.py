"""Benchmark of the latent entropy coder on the shipped model's photo latents.

Latents: ``WallocTransformer(latent_dim=12, levels=3, max_iter=0,
random_state=0)`` (the closed-form 16x model of ``WallocCodec``) fitted on the
bundled "fit" photos, ``transform`` of the held-out photos
(``load_photos(split="holdout")``): integer latents in [-127, 127], 12 channels
at 1/8 of each photo's size, channels first as the coder takes them. The same
latents ``WallocCodec.compress`` codes.

Compared, in bits: (a) empirical per-channel entropy, (b) the coder's ideal code
length, (c) the coded payload in blob format 3 (batched order, what
``compress`` writes) and (c2) in the interlaced order of formats 1 and 2, (d)
lossless WebP of the channels tiled as a uint8 grayscale mosaic (the paper's
storage format). Speed: M latents/s of both orders, encode and decode, on each
photo's whole grid, interleaved in one process (median of 5 after a warm-up).

With ``--against REV`` (a git revision of this repository, e.g. ``4254ecd``),
the format-3 coder as of ``REV`` (its ``_entropy_batched`` module, read with
``git show``) is timed too, interleaved with today's through the same
``encode_latents`` / ``decode_latents`` calls, and its payloads are checked to be
byte for byte today's.

Run: ``python benchmarks/entropy_coding.py [--against REV] [--repeats N]`` (under
a minute; writes ``entropy_coding.{md,json,csv}`` into ``--out``).
"""

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import (
    BenchmarkRun,
    Timer,
    benchmark_parser,
    latent_webp_bits,
    markdown_table,
)
from _machine import machine_line

from sklearn_walloc import WallocTransformer, metrics
from sklearn_walloc.datasets import load_photos


def photo_latents():
    """Integer latents ``(12, H/8, W/8)`` of the held-out photos, by name."""
    model = WallocTransformer(latent_dim=12, levels=3, max_iter=0, random_state=0)
    model.fit(load_photos(split="fit"))
    photos, names = load_photos(split="holdout", return_names=True)
    return {
        name: np.moveaxis(model.transform(p[None])[0], -1, 0).astype(np.int32)
        for name, p in zip(names, photos)
    }


def _private_coder(against=None):
    """``(encode, decode, ideal_bits, coders)``: the entropy coder alone.

    Private on purpose: the public API only codes latents inside a blob, with
    the transform around them; this benchmark times and sizes the coder by
    itself, in both orders, and optionally as of git revision ``against``.
    ``coders`` maps a label to a context that routes format 3 through a coder.
    """
    import sklearn_walloc
    from sklearn_walloc import _entropy

    coders = {2: contextlib.nullcontext, 3: contextlib.nullcontext}
    if against:
        root = Path(__file__).resolve().parent.parent
        src = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "show",
                f"{against}:sklearn_walloc/_entropy_batched.py",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # Revisions before the shared model module read it from _entropy.
        for mod in ("_entropy_model", "_entropy"):
            src = src.replace(f"from . import {mod} as _e",
                              f"from sklearn_walloc import {mod} as _e")  # fmt: skip
        path = Path(tempfile.mkdtemp()) / f"_entropy_batched_{against}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)

        @contextlib.contextmanager
        def routed():
            name = "sklearn_walloc._entropy_batched"
            saved = sys.modules[name]
            sys.modules[name] = sklearn_walloc._entropy_batched = reference
            try:
                yield
            finally:
                sys.modules[name] = sklearn_walloc._entropy_batched = saved

        coders["ref"] = routed
    return (_entropy.encode_latents, _entropy.decode_latents,
            _entropy.ideal_code_length_bits, coders)  # fmt: skip


def sizes(latents, encode, decode, ideal_bits):
    rows = []
    for name, q in latents.items():
        payload, old = encode(q, 8), encode(q, 8, version=2)
        assert np.array_equal(decode(payload, q.shape, 8), q)
        assert np.array_equal(decode(old, q.shape, 8, version=2), q)
        rows.append({
            "photo": name,
            "shape": "x".join(map(str, q.shape)),
            "n": q.size,
            "entropy": metrics.entropy_bits(q, channel_axis=0),
            "ideal": ideal_bits(q, 8),
            "coded": 8 * len(payload),
            "coded_v2": 8 * len(old),
            "webp": latent_webp_bits(q),
        })  # fmt: skip
    return rows


def speeds(latents, encode, decode, coders, repeats):
    """M latents/s by (coder, op), median over repeats of each repeat's total;
    every repeat times every photo with every coder, interleaved."""
    times = {(v, op): np.zeros(repeats) for v in coders for op in ("enc", "dec")}
    for r in range(-1, repeats):  # r = -1: warm-up (schedules, tables)
        for q in latents.values():
            for v, ctx in coders.items():
                version = 2 if v == 2 else 3
                with ctx(), Timer() as te:
                    p = encode(q, 8, version=version)
                with ctx(), Timer() as td:
                    decode(p, q.shape, 8, version=version)
                if r >= 0:
                    times[v, "enc"][r] += te.s
                    times[v, "dec"][r] += td.s
    n = sum(q.size for q in latents.values())
    rates = {f"{v}_{op}": n / float(np.median(t)) / 1e6 for (v, op), t in times.items()}
    if "ref" in coders:  # median over repeats of the reference's time / today's
        for op in ("enc", "dec"):
            rates[f"speedup_{op}"] = float(np.median(times["ref", op] / times[3, op]))
    return rates


def _ratios(r, n):
    c = r["coded"]
    return [f"{c / r['coded_v2']:.4f}", f"{c / r['ideal']:.4f}",
            f"{c / r['entropy']:.3f}", f"{c / r['webp']:.3f}",
            f"{c / n:.3f}"]  # fmt: skip


def markdown(report):
    rows, s, against = report["rows"], report["speed"], report["against"]
    keys = ("entropy", "ideal", "coded", "coded_v2", "webp")
    tot = {k: sum(r[k] for r in rows) for k in keys}
    n_total = sum(r["n"] for r in rows)
    table = [
        [r["photo"], r["shape"], f"{r['entropy']:.0f}", f"{r['ideal']:.0f}",
         r["coded"], r["coded_v2"], r["webp"], *_ratios(r, r["n"])]
        for r in rows
    ]  # fmt: skip
    table.append(["**total**", "", *(f"{tot[k]:.0f}" for k in keys),
                  *_ratios(tot, n_total)])  # fmt: skip
    orders = {3: "format 3 (batched)", 2: "formats 1-2 (interlaced)"}
    if against:
        orders["ref"] = f"format 3, coder of `{against}`"
    speed = [[o, f"{s[f'{v}_enc']:.2f}", f"{s[f'{v}_dec']:.2f}"]
             for v, o in orders.items()]  # fmt: skip
    load = ", ".join(f"{a:.1f}" for a in report["machine_end"]["load_average"])
    lines = [
        "# Entropy coding of the shipped model's photo latents (12 channels, 8 bits)",
        "",
        "Latents: `WallocTransformer(latent_dim=12, levels=3, max_iter=0, "
        "random_state=0)` fitted on the bundled fit photos, `transform` of the "
        f"held-out photos. Machine: {machine_line(report['machine'])}.",
        "",
        markdown_table(
            ["photo", "grid", "entropy (a)", "ideal (b)", "coded, format 3 (c)",
             "coded, format 2 (c2)", "WebP (d)", "c/c2", "c/b", "c/a", "c/d",
             "coded bits/latent"], table),
        "",
        f"Speed, M latents/s over the {len(rows)} whole grids ({n_total} latents), "
        f"median of {report['repeats']} interleaved repeats (load average at the "
        f"end: {load}; the machine was shared):",
        "",
        markdown_table(["order", "encode", "decode"], speed),
    ]  # fmt: skip
    if against:
        lines += [
            "",
            f"Today's format-3 coder against `{against}`'s (same bytes, checked): "
            f"encode {s['speedup_enc']:.2f}x, decode {s['speedup_dec']:.2f}x faster "
            "(median over the repeats of the per-repeat time ratio).",
        ]
    return "\n".join([*lines, ""])


def main(argv=None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--against", help="git revision whose format-3 coder to time")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    run = BenchmarkRun("entropy_coding", args)
    latents = photo_latents()
    encode, decode, ideal_bits, coders = _private_coder(args.against)
    rows = sizes(latents, encode, decode, ideal_bits)
    if args.against:
        for q in latents.values():
            with coders["ref"]():
                old = encode(q, 8)
            assert old == encode(q, 8), "bytes differ from the reference"
    report = {
        "machine": run.machine,
        "against": args.against,
        "repeats": args.repeats,
        "rows": rows,
        "speed": speeds(latents, encode, decode, coders, args.repeats),
    }
    run.finish(report, markdown, rows)


if __name__ == "__main__":
    main()
