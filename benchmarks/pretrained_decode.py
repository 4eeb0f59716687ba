"""The shipped rgb-16x decoding against Pillow's WebP decoder, interleaved.

What it measures
----------------
``WallocCodec.from_pretrained("rgb-16x")`` (the closed-form encoder and a
trained decoder: the linear path plus a 48-wide, 2-block residual network on
the latent grid, then the packet synthesis) against Pillow's WebP decoder
(quality 20, method 4: about WaLLoC's rate), on photos no model was fitted on:
the bundled held-out photos (astronaut 512x512, coffee 600x400, china 640x427)
and, where the mate-backgrounds package can be fetched, 4 of its nature photos
(768x1080 crops of Lanczos downscales, as ``codec_path.py --photos mate``).
Also ``from_pretrained("rgb-16x")`` as a user gets it, at its default gain
(``_pretrained.DEFAULT_GAINS``: 22-47% fewer bytes, the same decoder), and the
closed form, ``WallocCodec(latent_dim=12, levels=3, max_iter=0)``
fitted on the bundled fit photos, for reference.

Per repeat, in a fixed interleaved order (so that a change in a shared
machine's load hits every operation alike), each timed once over the whole
set: one ``decompress(blobs, restore=True)`` call per model for the list of
photos (uint8 out, as the photos went in), and Pillow ``open + load`` of each
photo's WebP. A rate is the set's megapixels over the median time across
repeats; the issue-19 target is ``decompress`` of rgb-16x >= 0.25x WebP's
decoder. Each operation's CPU time (the process's, all threads) is recorded
too: on a loaded machine the 2-thread wall clock of torch's parallel
operations does not reproduce, their CPU time mostly does.

Profile, timed alone in the same loop: the entropy decoding of the rgb-16x
blobs (``decode_latents``), and its decoder on the decoded latents
(``inverse_transform``: the residual network and the synthesis, the same
tiles as ``decompress``).

Run: ``python benchmarks/pretrained_decode.py`` (about a minute; 2 torch
threads by default, ``--threads``), ``--photos holdout`` / ``mate`` for one
set. Writes ``pretrained_decode.md`` / ``.json`` in ``--out``, with the load
average at the start and the end.
"""

import io
import statistics
import time

import numpy as np
import torch
from _common import BenchmarkRun, Timer, benchmark_parser, load_mate_photos
from _machine import machine_line
from PIL import Image

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos

WEBP = {"format": "WEBP", "quality": 20, "method": 4}
TARGET = 0.25


def _webp(x):
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, **WEBP)
    return buffer.getvalue()


def _webp_decode(blobs):
    for b in blobs:
        Image.open(io.BytesIO(b)).load()


def _sets(which, quick):
    sets = {}
    if which in ("both", "holdout"):
        sets["bundled holdout"] = load_photos(split="holdout")
    if which in ("both", "mate"):
        photos, _ = load_mate_photos(short_side=768, aspect=1080 / 768, limit=4)
        if photos:
            sets["mate-backgrounds nature"] = photos
        else:
            print("[warn] mate-backgrounds is not available: skipped")
    if quick:
        sets = {k: [p[:256, :256] for p in v[:2]] for k, v in sets.items()}
    return sets


def _operations(models, photos):
    """name -> zero-argument callable over the whole set, and byte counts."""
    from sklearn_walloc._container import unpack_blob
    from sklearn_walloc._entropy import decode_latents

    ops, sizes = {}, {}
    webp = [_webp(x) for x in photos]
    ops["webp_decode"] = lambda: _webp_decode(webp)
    sizes["webp"] = sum(map(len, webp))
    for name, codec in models.items():
        blobs = codec.compress(photos)
        sizes[name] = sum(map(len, blobs))
        ops[name] = lambda c=codec, b=blobs: c.decompress(b, restore=True)
    codec = models["rgb-16x"]
    blobs = codec.compress(photos)
    parsed = [unpack_blob(b, codec.fingerprint()) for b in blobs]

    def entropy():
        return [
            decode_latents(p.payload, p.latent_shape, p.latent_bits, version=p.version)
            for p in parsed
        ]

    latents = [np.moveaxis(q, 0, -1).astype(np.float32) for q in entropy()]
    ops["rgb-16x entropy decode"] = entropy
    ops["rgb-16x decoder (inverse_transform)"] = lambda: codec.inverse_transform(
        latents
    )
    return ops, sizes


def measure(sets, repeats):
    models = {
        "rgb-16x": WallocCodec.from_pretrained("rgb-16x").set_params(gain=0),
        # As a user gets it: the shipped default gain (fewer bytes, the same
        # decoder).
        "rgb-16x default gain": WallocCodec.from_pretrained("rgb-16x"),
        "closed form": WallocCodec(
            latent_dim=12, levels=3, max_iter=0, random_state=0, verbose=0
        ).fit(load_photos(split="fit")),
    }
    report = {"repeats": repeats, "sets": {}}
    for set_name, photos in sets.items():
        ops, sizes = _operations(models, photos)
        for fn in ops.values():  # warm-up: kernels, tables, cached decoders
            fn()
        times = {op: [] for op in ops}
        cpu = {op: [] for op in ops}
        for _ in range(repeats):
            for op, fn in ops.items():
                start = time.process_time()
                with Timer() as t:
                    fn()
                cpu[op].append(time.process_time() - start)
                times[op].append(t.s)
        pixels = sum(x.shape[0] * x.shape[1] for x in photos)
        median = {op: statistics.median(ts) for op, ts in times.items()}
        rates = {op: pixels / s / 1e6 for op, s in median.items()}
        cpu_ms = {op: 1e3 * statistics.median(ts) for op, ts in cpu.items()}
        report["sets"][set_name] = {
            "photos": [f"{x.shape[1]}x{x.shape[0]}" for x in photos],
            "pixels": pixels,
            "bytes": sizes,
            "median_s": median,
            "mp_per_s": rates,
            "cpu_ms": cpu_ms,
            "ratio_to_webp": {m: rates[m] / rates["webp_decode"] for m in models},
        }
    return report


def markdown(r):
    load = r["machine"]["load_average"]
    load_end = r["machine_end"]["load_average"]
    lines = [
        "# rgb-16x decoding against Pillow WebP (issue 19)",
        "",
        f"One `decompress(blobs, restore=True)` call per set of photos; median of "
        f"{r['repeats']} interleaved repeats. Machine: {machine_line(r['machine'])}; "
        f"load average {load[0]:.1f} at the start, {load_end[0]:.1f} at the end "
        "(a shared machine: absolute rates move with the load, the ratios less).",
        "",
        "| photos | operation | MP/s | / WebP decode | CPU ms | CPU / WebP's |",
        "|---|---|---|---|---|---|",
    ]
    for set_name, s in r["sets"].items():
        webp = s["mp_per_s"]["webp_decode"]
        cpu = s["cpu_ms"]
        for op, rate in s["mp_per_s"].items():
            ms = cpu[op]
            lines.append(
                f"| {set_name} | {op} | {rate:.1f} | {rate / webp:.3f} | {ms:.1f} "
                f"| {ms / cpu['webp_decode']:.2f} |"
            )
    lines += [
        "",
        f"Target: rgb-16x `decompress` >= {TARGET}x WebP's decoder. Bytes:",
        "",
    ]
    for set_name, s in r["sets"].items():
        text = ", ".join(f"{k} {v}" for k, v in s["bytes"].items())
        lines.append(f"- {set_name} ({', '.join(s['photos'])}): {text}")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, threads=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--photos", choices=("both", "holdout", "mate"), default="both")
    args = parser.parse_args(argv)
    run = BenchmarkRun("pretrained_decode", args)
    report = measure(_sets(args.photos, args.quick), 3 if args.quick else args.repeats)
    report["machine"] = run.machine
    report["threads"] = torch.get_num_threads()
    return run.finish(report, markdown)


if __name__ == "__main__":
    main()
