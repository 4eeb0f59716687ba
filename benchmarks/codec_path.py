"""The byte path against Pillow WebP, interleaved in one process, with a profile.

What it measures
----------------
A closed-form 16x codec, ``WallocCodec(latent_dim=12, levels=3, max_iter=0,
random_state=0)`` fitted on the bundled "fit" photos, on the held-out photos
(``load_photos(split="holdout")``: astronaut 512x512, coffee 600x400, china
640x427), one photo per call, uint8 RGB in:

- ``transform`` (photo to integer latents) and ``inverse_transform`` (latents
  to float32 pixels);
- ``compress`` (photo to a blob) and ``decompress`` (blob to float32 pixels);
- Pillow WebP (quality 20, method 4: about WaLLoC's rate) ``save`` and
  ``open + load``;
- for reference, Pillow JPEG (quality 50) ``save`` and ``open + load``, and
  ``decompress`` with a trained decoder's cost: the same codec with its
  residual decoder path (the default 64-wide, 2-block network) given small
  random weights (``_common.activate_refinement``), so that the network runs,
  as after training. (The pretrained ``rgb-16x`` has a trained residual path,
  48 wide: ``pretrained_decode.py`` times it.)

Each repeat times every (photo, operation) once, in a fixed interleaved order,
so that a change in the machine's load hits every operation alike; a rate is
the photos' megapixels over the median (across repeats) of the summed times.
The targets of issue 11 are ratios of these rates: ``compress`` >= 1.5x WebP's
encoder, ``decompress`` >= 0.15x WebP's decoder, ``inverse_transform`` >= 0.5x
``transform``.

Profile: the parts of each path timed alone in the same interleaved loop.
``compress`` = ``transform`` (read, pad, fused encoder, rounding) + entropy
encoding (``encode_latents``, format 3) + container (``pack_blob``: header and
CRC32); ``decompress`` = container (``unpack_blob``, CRC32 and checks) + entropy
decoding (``decode_latents``) + synthesis (``inverse_transform`` of the
latents, the fused synthesis of a closed-form model). The entropy coder's
M latents/s follow.

Run: ``python benchmarks/codec_path.py`` (about a minute; ``--threads 1`` runs
torch on one thread: on a machine busier than its cores, torch's two threads
wait on each other while Pillow, single-threaded, does not), or through
``python benchmarks/speed.py --codec-path``. ``--photos mate`` times 4 of
the mate-backgrounds nature photos instead (768x1080 crops of Lanczos
downscales, one 1021 wide; fetched as ``_common.load_mate_photos`` does), larger
photos than the bundled ones. Writes ``codec_path.md`` / ``codec_path.json``
(``codec_path_mate.*``) in ``--out``. The machine is recorded with its load average
at the start and the end: on a shared machine the absolute rates move, the
ratios much less.
"""

import io
import statistics

import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    activate_refinement,
    benchmark_parser,
    load_mate_photos,
)
from _machine import machine_line
from PIL import Image
from sklearn.base import clone

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos

WEBP = {"format": "WEBP", "quality": 20, "method": 4}
JPEG = {"format": "JPEG", "quality": 50}
LATER_ROWS = {
    "decompress_trained": "`decompress`, trained decoder (residual path active)",
    "jpeg_encode": "JPEG encode (Pillow, quality 50)",
    "jpeg_decode": "JPEG decode",
}
TARGETS = {
    "compress / WebP encode": ("compress", "webp_encode", 1.5),
    "decompress / WebP decode": ("decompress", "webp_decode", 0.15),
    "inverse_transform / transform": ("inverse_transform", "transform", 0.5),
}


def _webp_encode(x):
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, **WEBP)
    return buffer.getvalue()


def _webp_decode(b):
    image = Image.open(io.BytesIO(b))
    image.load()
    return image


def _jpeg_encode(x):
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, **JPEG)
    return buffer.getvalue()


def _byte_path_parts(codec, x, q, blob):
    """The entropy coder and the container alone, for the profile: private,
    as the public API offers only the whole ``compress`` / ``decompress``."""
    from sklearn_walloc._container import pack_blob, unpack_blob
    from sklearn_walloc._entropy import decode_latents, encode_latents

    payload = unpack_blob(blob).payload
    fields = dict(
        signal_ndim=2,
        signal_shape=x.shape,
        dtype=x.dtype,
        levels=codec.levels,
        latent_shape=q.shape,
        latent_bits=codec.latent_bits_,
        fingerprint=codec.fingerprint(),
    )
    bits = codec.latent_bits_
    return {
        "entropy_encode": lambda: encode_latents(q, bits),
        "entropy_decode": lambda: decode_latents(payload, q.shape, bits),
        "pack_blob": lambda: pack_blob(payload, **fields),
        "unpack_blob": lambda: unpack_blob(blob, fields["fingerprint"]),
    }


def _operations(codec, x, trained):
    """name -> zero-argument callable, for one photo."""
    z = codec.transform(x[None])
    q = np.moveaxis(z[0], -1, 0).astype(np.int32)
    (blob,) = codec.compress([x])
    webp = _webp_encode(x)
    jpeg = _jpeg_encode(x)
    (trained_blob,) = trained.compress([x])
    return {
        "transform": lambda: codec.transform(x[None]),
        "inverse_transform": lambda: codec.inverse_transform(z),
        "compress": lambda: codec.compress([x]),
        "decompress": lambda: codec.decompress([blob], restore=False),
        "webp_encode": lambda: _webp_encode(x),
        "webp_decode": lambda: _webp_decode(webp),
        "jpeg_encode": lambda: _jpeg_encode(x),
        "jpeg_decode": lambda: _webp_decode(jpeg),
        "decompress_trained": lambda: trained.decompress([trained_blob], restore=False),
        **_byte_path_parts(codec, x, q, blob),
    }, {"latents": q.size, "blob_bytes": len(blob), "webp_bytes": len(webp)}


def _photos(which):
    """The photos to time and their names: the bundled held-out ones, or the
    mate-backgrounds nature photos (downscaled to a 768-pixel short side and
    cropped to 768x1080, a width that is not a multiple of 8)."""
    if which == "holdout":
        return load_photos(split="holdout", return_names=True)
    photos, names = load_mate_photos(short_side=768, aspect=1080 / 768, limit=4)
    if not photos:
        raise SystemExit("mate-backgrounds is not available (apt-get download failed)")
    return photos, names


def measure(repeats=9, which="holdout"):
    """Interleaved timings; returns the report dict (machine added by the run)."""
    fit = load_photos(split="fit")
    photos, names = _photos(which)
    codec = WallocCodec(latent_dim=12, levels=3, max_iter=0, random_state=0)
    codec.fit(fit)
    # A trained decoder's cost: the residual path active, so no fused synthesis.
    trained = activate_refinement(clone(codec).fit(fit))
    ops, sizes = zip(*(_operations(codec, x, trained) for x in photos))
    pixels = sum(x.shape[0] * x.shape[1] for x in photos)
    latents = sum(s["latents"] for s in sizes)
    for per_photo in ops:  # warm-up: schedules, tables, kernels
        for fn in per_photo.values():
            fn()
    names_ops = list(ops[0])
    times = {op: [] for op in names_ops}
    for _ in range(repeats):
        for op in names_ops:
            total = 0.0
            for per_photo in ops:
                with Timer() as t:
                    per_photo[op]()
                total += t.s
            times[op].append(total)
    median = {op: statistics.median(ts) for op, ts in times.items()}
    rates = {op: pixels / s / 1e6 for op, s in median.items()}
    targets = {}
    for label, (num, den, goal) in TARGETS.items():
        ratio = rates[num] / rates[den]
        targets[label] = {"ratio": ratio, "target": goal, "met": ratio >= goal}
    profile = {
        "compress": {
            "total": median["compress"],
            "transform": median["transform"],
            "entropy encode": median["entropy_encode"],
            "container": median["pack_blob"],
        },
        "decompress": {
            "total": median["decompress"],
            "container": median["unpack_blob"],
            "entropy decode": median["entropy_decode"],
            "synthesis": median["inverse_transform"],
        },
    }
    return {
        "photos": [f"{n} {x.shape[1]}x{x.shape[0]}" for n, x in zip(names, photos)],
        "pixels": pixels,
        "latents": latents,
        "blob_bytes": sum(s["blob_bytes"] for s in sizes),
        "webp_bytes": sum(s["webp_bytes"] for s in sizes),
        "repeats": repeats,
        "median_s": median,
        "mp_per_s": rates,
        "entropy_m_latents_per_s": {
            "encode": latents / median["entropy_encode"] / 1e6,
            "decode": latents / median["entropy_decode"] / 1e6,
        },
        "targets": targets,
        "profile": profile,
    }


def markdown(r):
    load = r["machine"]["load_average"]
    load_end = r["machine_end"]["load_average"]
    lines = [
        "# The byte path against Pillow WebP (issue 11)",
        "",
        f"Closed-form 16x `WallocCodec` on {', '.join(r['photos'])} "
        f"({r['pixels'] / 1e6:.2f} MP, {r['latents']} latents), one photo per call; "
        f"median of {r['repeats']} interleaved repeats. Machine: "
        f"{machine_line(r['machine'])}; load average "
        f"{load[0]:.1f} at the start, {load_end[0]:.1f} at the end"
        " (a shared machine: absolute rates move with the load, the ratios less).",
        "",
        f"Coded size: WaLLoC {r['blob_bytes']} bytes "
        f"({8 * r['blob_bytes'] / r['pixels']:.3f} bpp), WebP q20 {r['webp_bytes']} "
        f"bytes ({8 * r['webp_bytes'] / r['pixels']:.3f} bpp).",
        "",
        "| operation | MP/s |",
        "|---|---|",
    ]
    for op in ("transform", "inverse_transform", "compress", "decompress",
               "webp_encode", "webp_decode"):  # fmt: skip
        lines.append(f"| `{op}` | {r['mp_per_s'][op]:.1f} |")
    for op, label in LATER_ROWS.items():
        if op in r["mp_per_s"]:
            lines.append(f"| {label} | {r['mp_per_s'][op]:.1f} |")
    lines += ["", "| target | ratio | goal | met |", "|---|---|---|---|"]
    for label, t in r["targets"].items():
        met = "yes" if t["met"] else "**no**"
        lines.append(f"| {label} | {t['ratio']:.2f} | >= {t['target']} | {met} |")
    lines += [
        "",
        f"Where the time goes (ms for the {len(r['photos'])} photos, each part "
        "timed alone):",
        "",
        "| path | total | parts | sum of parts |",
        "|---|---|---|---|",
    ]
    for path, parts in r["profile"].items():
        total = parts["total"]
        rest = {k: v for k, v in parts.items() if k != "total"}
        text = ", ".join(
            f"{k} {1e3 * v:.1f} ({100 * v / total:.0f}%)" for k, v in rest.items()
        )
        lines.append(
            f"| `{path}` | {1e3 * total:.1f} | {text} | "
            f"{1e3 * sum(rest.values()):.1f} |"
        )
    e = r["entropy_m_latents_per_s"]
    lines += [
        "",
        f"Entropy coder alone (format 3): encode {e['encode']:.1f} M latents/s, "
        f"decode {e['decode']:.1f} M latents/s.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, threads=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--photos", choices=("holdout", "mate"), default="holdout",
        help="the bundled held-out photos, or 4 mate-backgrounds nature photos",
    )  # fmt: skip
    args = parser.parse_args(argv)
    name = "codec_path" if args.photos == "holdout" else f"codec_path_{args.photos}"
    run = BenchmarkRun(name, args)
    report = measure(3 if args.quick else args.repeats, args.photos)
    report["machine"] = run.machine
    return run.finish(report, markdown)


if __name__ == "__main__":
    main()
