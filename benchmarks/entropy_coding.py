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
``git show``) is timed too, interleaved with today's through the same public
``encode_latents`` / ``decode_latents`` calls, and its payloads are checked to be
byte for byte today's.

Run: ``python benchmarks/entropy_coding.py [--against REV] [--repeats N]`` (under
a minute; writes ``results/entropy_coding.md``).
"""

import argparse
import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line
from PIL import Image

import sklearn_walloc
from sklearn_walloc import WallocTransformer
from sklearn_walloc._entropy import (
    decode_latents,
    empirical_entropy_bits,
    encode_latents,
    ideal_code_length_bits,
)
from sklearn_walloc.datasets import load_photos

BOUND = 127
REPEATS = 5


def photo_latents():
    """Integer latents ``(12, H/8, W/8)`` of the held-out photos, by name."""
    model = WallocTransformer(latent_dim=12, levels=3, max_iter=0, random_state=0)
    model.fit(load_photos(split="fit"))
    photos, names = load_photos(split="holdout", return_names=True)
    return {
        name: np.moveaxis(model.transform(p[None])[0], -1, 0).astype(np.int32)
        for name, p in zip(names, photos)
    }


def webp_bits(q):
    """Bits of lossless WebP of the channels tiled as a grayscale mosaic."""
    c, h, w = q.shape
    rows = int(np.ceil(np.sqrt(c)))
    cols = int(np.ceil(c / rows))
    mosaic = np.zeros((rows * h, cols * w), np.uint8)
    for k in range(c):
        a, b = divmod(k, cols)
        mosaic[a * h : (a + 1) * h, b * w : (b + 1) * w] = q[k] + BOUND
    buf = io.BytesIO()
    Image.fromarray(mosaic).save(buf, "WEBP", lossless=True, quality=100, method=6)
    return 8 * len(buf.getvalue())


def _reference_coder(rev):
    """The ``_entropy_batched`` module as of git revision ``rev``, imported apart."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:sklearn_walloc/_entropy_batched.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    src = src.replace(
        "from . import _entropy as _e", "from sklearn_walloc import _entropy as _e"
    )
    path = Path(tempfile.mkdtemp()) / f"_entropy_batched_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _coder(module):
    """Route ``encode_latents``/``decode_latents`` format 3 through ``module``."""
    name = "sklearn_walloc._entropy_batched"
    saved = sys.modules[name]
    sys.modules[name] = module
    sklearn_walloc._entropy_batched = module
    try:
        yield
    finally:
        sys.modules[name] = saved
        sklearn_walloc._entropy_batched = saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", help="git revision whose format-3 coder to time")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    repeats = args.repeats
    latents = photo_latents()
    rows = []
    for name, q in latents.items():
        payload = encode_latents(q, 8)
        old = encode_latents(q, 8, version=2)
        assert np.array_equal(decode_latents(payload, q.shape, 8), q)
        assert np.array_equal(decode_latents(old, q.shape, 8, version=2), q)
        rows.append({
            "photo": name,
            "shape": "x".join(map(str, q.shape)),
            "n": q.size,
            "entropy": empirical_entropy_bits(q),
            "ideal": ideal_code_length_bits(q, 8),
            "coded": 8 * len(payload),
            "coded_v2": 8 * len(old),
            "webp": webp_bits(q),
        })  # fmt: skip
    # Speed, interleaved: each repeat times every photo in every order (and
    # with the reference coder, "ref", when asked).
    coders = {2: contextlib.nullcontext, 3: contextlib.nullcontext}
    if args.against:
        reference = _reference_coder(args.against)
        coders["ref"] = lambda: _coder(reference)
        for q in latents.values():
            with _coder(reference):
                old = encode_latents(q, 8)
            assert old == encode_latents(q, 8), "bytes differ from the reference"
    times = {(v, op): [] for v in coders for op in ("enc", "dec")}
    for q in latents.values():  # warm-up (schedules, tables)
        for v, ctx in coders.items():
            with ctx():
                version = 2 if v == 2 else 3
                payload = encode_latents(q, 8, version=version)
                decode_latents(payload, q.shape, 8, version=version)
    for _ in range(repeats):
        for q in latents.values():
            for v, ctx in coders.items():
                version = 2 if v == 2 else 3
                with ctx():
                    t = time.perf_counter()
                    p = encode_latents(q, 8, version=version)
                    times[v, "enc"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    decode_latents(p, q.shape, 8, version=version)
                    times[v, "dec"].append(time.perf_counter() - t)
    n_total = sum(q.size for q in latents.values())
    n_photos = len(latents)

    def rate(v, op):  # median of the repeats' totals
        per_rep = np.asarray(times[v, op]).reshape(repeats, n_photos).sum(axis=1)
        return n_total / float(np.median(per_rep)) / 1e6

    def speedup(op):  # median over repeats of the reference's time / today's
        new = np.asarray(times[3, op]).reshape(repeats, n_photos).sum(axis=1)
        old = np.asarray(times["ref", op]).reshape(repeats, n_photos).sum(axis=1)
        return float(np.median(old / new))

    lines = [
        "# Entropy coding of the shipped model's photo latents (12 channels, 8 bits)",
        "",
        "Latents: `WallocTransformer(latent_dim=12, levels=3, max_iter=0, "
        "random_state=0)` fitted on the bundled fit photos, `transform` of the "
        f"held-out photos. Machine: {machine_line()}.",
        "",
        "| photo | grid | entropy (a) | ideal (b) | coded, format 3 (c) "
        "| coded, format 2 (c2) | WebP (d) | c/c2 | c/b | c/a | c/d "
        "| coded bits/latent |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tot = dict.fromkeys(("entropy", "ideal", "coded", "coded_v2", "webp"), 0.0)
    for r in rows:
        for k in tot:
            tot[k] += r[k]
        lines.append(
            f"| {r['photo']} | {r['shape']} | {r['entropy']:.0f} | {r['ideal']:.0f} "
            f"| {r['coded']} | {r['coded_v2']} | {r['webp']} "
            f"| {r['coded'] / r['coded_v2']:.4f} | {r['coded'] / r['ideal']:.4f} "
            f"| {r['coded'] / r['entropy']:.3f} | {r['coded'] / r['webp']:.3f} "
            f"| {r['coded'] / r['n']:.3f} |"
        )
    lines.append(
        f"| **total** | | {tot['entropy']:.0f} | {tot['ideal']:.0f} "
        f"| {tot['coded']:.0f} | {tot['coded_v2']:.0f} | {tot['webp']:.0f} "
        f"| {tot['coded'] / tot['coded_v2']:.4f} "
        f"| {tot['coded'] / tot['ideal']:.4f} | {tot['coded'] / tot['entropy']:.3f} "
        f"| {tot['coded'] / tot['webp']:.3f} | {tot['coded'] / n_total:.3f} |"
    )
    lines += [
        "",
        f"Speed, M latents/s over the {n_photos} whole grids ({n_total} latents), "
        f"median of {repeats} interleaved repeats (load average at the end: "
        f"{', '.join(f'{a:.1f}' for a in os.getloadavg())}; the machine was shared):",
        "",
        "| order | encode | decode |",
        "|---|---|---|",
        f"| format 3 (batched) | {rate(3, 'enc'):.2f} | {rate(3, 'dec'):.2f} |",
        f"| formats 1-2 (interlaced) | {rate(2, 'enc'):.2f} | {rate(2, 'dec'):.2f} |",
    ]
    if args.against:
        lines += [
            f"| format 3, coder of `{args.against}` | {rate('ref', 'enc'):.2f} "
            f"| {rate('ref', 'dec'):.2f} |",
            "",
            f"Today's format-3 coder against `{args.against}`'s (same bytes, checked): "
            f"encode {speedup('enc'):.2f}x, decode {speedup('dec'):.2f}x faster "
            "(median over the repeats of the per-repeat time ratio).",
        ]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "entropy_coding.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
