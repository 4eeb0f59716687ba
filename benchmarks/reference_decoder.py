"""The paper's decoders (walloc 1.2.1) on CPU, and its latent storage against ours.

What it measures
----------------
Decode speed of the reference implementation's decoders at the paper's widths,
loaded with ``WallocCodec.from_reference`` (random weights: the speed does not
depend on them):

- ``Codec2D`` as ``RGB_16x``: 3 channels, ``J=3``, 12 latents, diffusers'
  AutoencoderKL decoder of width ``Nd=768`` (56.9 M parameters), on the
  latents of a 512x384 crop of a held-out photo (coffee);
- ``Codec1D`` as ``stereo_5x``: 2 channels, ``J=8``, 108 latents, the Oobleck
  decoder of width ``Nd=768`` (hidden 756) and the 129-tap post-filter, on
  5 s of synthetic stereo at 44.1 kHz.

Each is timed as ``inverse_transform`` (latents to model units), whole (what
the library does for outputs under ``TILE_VALUES``, 2**23 values) and in
tiles (``sklearn_walloc._tiles.TILE_VALUES`` lowered, a private constant, on
purpose: the tiled path of outputs larger than that), with the largest
difference between the two: the 2D decoder's GroupNorm statistics and
attention read the whole latent grid, so its tiles differ from the whole
(with random weights the size of that difference says little about a trained
decoder); the 1D decoder is local, so its tiles only differ by float
rounding. For scale, the shipped ``rgb-16x`` decoder on the same photo.

Storage: the latents of the shipped ``rgb-16x`` (at ``gain=0``) on the
held-out photos, coded by this library against the reference's lossless WebP
tiles (its README's ``latent_to_pil(z, bits, 3)``: channels in groups of 3,
tiled 2x2) and against a grey mosaic (``latent_webp_bits``, method 6).

Run: ``python benchmarks/reference_decoder.py`` (about 5 minutes on 2
threads, one timed call each by default, ``--repeats``; ``--quick``: small
sizes). Writes ``reference_decoder.md`` / ``.json`` in
``--out``, with the load average at the start and the end.
"""

import io
import statistics

import numpy as np
import torch
from _common import BenchmarkRun, Timer, benchmark_parser, latent_webp_bits
from _machine import machine_line
from PIL import Image

from sklearn_walloc import WallocCodec
from sklearn_walloc.datasets import load_photos

PAPER = {
    "Codec2D RGB_16x (Nd=768)": {
        "channels": 3,
        "J": 3,
        "Ne": None,
        "Nd": 768,
        "latent_dim": 12,
        "latent_bits": 8,
        "lightweight_encode": True,
    },
    "Codec1D stereo_5x (Nd=768)": {
        "channels": 2,
        "J": 8,
        "Ne": None,
        "Nd": 768,
        "latent_dim": 108,
        "latent_bits": 8,
        "lightweight_encode": True,
        "post_filter": True,
    },
}


def _random_checkpoint(config, ndim, seed=0):
    """A reference-layout state dict with random weights, as the reference
    would save it (weight norm already folded: plain weights load too)."""
    from sklearn_walloc._spec import ModelSpec  # the module to take names from

    kind = "autoencoder-kl" if ndim == 2 else "oobleck+post-filter"
    spec = ModelSpec(
        config["channels"],
        config["latent_dim"],
        config["J"],
        "bior4.4",
        ndim,
        config["latent_bits"],
        config["Nd"],
        0,
        "periodization",
        None,
        kind,
    )
    torch.manual_seed(seed)
    module = spec.build()
    state = {}
    for k, v in module.state_dict().items():
        if k.startswith("encoder."):
            state["encoder.0." + k[len("encoder.") :]] = v * 30
        elif k.startswith("decoder."):
            state["decoder.1." + k[len("decoder.") :]] = v
        elif k.startswith("post."):
            state[k] = v
    return state


def _signal(ndim, quick):
    if ndim == 2:
        photo = load_photos(split="holdout")[1]  # coffee, 400x600
        return photo[:256, :384] if quick else photo[:384, :512]
    seconds = 1 if quick else 5
    n = (44100 * seconds) // 256 * 256
    t = np.arange(n) / 44100
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.05 * rng.standard_normal((n, 2))
    return np.round(x * 32767).astype(np.int16)


def _diff(whole, tiled, ndim, border=0):
    """Largest difference, of the sample range, ``border`` samples away from
    the signal's ends (where the periodic packets wrap around the signal)."""
    inner = (slice(None), *[slice(border, -border or None)] * ndim)
    d = np.abs(whole[inner] - tiled[inner]).max()
    return float(d) / (255.0 if ndim == 2 else 65536.0)


def _timed(fn, repeats):
    if repeats > 1:
        fn()  # warm-up (the first call's one-time costs are small beside these)
    times = []
    for _ in range(repeats):
        with Timer() as t:
            out = fn()
        times.append(t.s)
    return statistics.median(times), out


def decode_speed(quick, repeats):
    from sklearn_walloc import _tiles  # on purpose: force the tiled path

    rows = []
    for name, config in PAPER.items():
        ndim = 1 if "post_filter" in config else 2
        codec = WallocCodec.from_reference(
            _random_checkpoint(config, ndim), config, device="cpu"
        )
        x = _signal(ndim, quick)
        z = codec.transform(x[None])
        whole_s, whole = _timed(lambda c=codec, z=z: c.inverse_transform(z), repeats)
        saved = _tiles.TILE_VALUES
        _tiles.TILE_VALUES = 2**16 if quick else 2**18
        try:
            tiled_s, tiled = _timed(
                lambda c=codec, z=z: c.inverse_transform(z), repeats
            )
        finally:
            _tiles.TILE_VALUES = saved
        samples = int(np.prod(x.shape[:-1]))
        params = sum(p.numel() for p in codec.module_.decoder.parameters())
        rows.append(
            {
                "decoder": name,
                "parameters_M": params / 1e6,
                "signal": "x".join(map(str, x.shape)),
                "whole_s": whole_s,
                "tiled_s": tiled_s,
                "tile_values": 2**16 if quick else 2**18,
                "samples_per_s_whole": samples / whole_s,
                "samples_per_s_tiled": samples / tiled_s,
                "tiled_max_abs_diff_of_range": _diff(whole, tiled, ndim),
                "tiled_interior_max_abs_diff_of_range": _diff(
                    whole, tiled, ndim, 10 * 2 ** config["J"]
                ),
            }
        )
    shipped = WallocCodec.from_pretrained("rgb-16x").set_params(gain=0)
    x = _signal(2, quick)
    z = shipped.transform(x[None])
    s, _ = _timed(lambda: shipped.inverse_transform(z), repeats)
    rows.append(
        {
            "decoder": "shipped rgb-16x (width 48, 2 blocks)",
            "parameters_M": sum(p.numel() for p in shipped.module_.decoder.parameters())
            / 1e6,
            "signal": "x".join(map(str, x.shape)),
            "whole_s": s,
            "samples_per_s_whole": x.shape[0] * x.shape[1] / s,
        }
    )
    return rows


def _readme_webp_bytes(q):
    """The reference README's storage: ``latent_to_pil(z, bits, 3)`` (channels
    in groups of 3, tiled n x n) saved as lossless WebP."""
    d, h, w = q.shape
    n = round((d // 3) ** 0.5)
    tiles = (q.astype(np.int64) + 128).reshape(3, n, n, h, w)
    tiles = tiles.transpose(1, 3, 2, 4, 0).reshape(n * h, n * w, 3)
    buf = io.BytesIO()
    Image.fromarray(tiles.astype(np.uint8)).save(buf, "WEBP", lossless=True)
    return buf.tell()


def storage(quick):
    codec = WallocCodec.from_pretrained("rgb-16x").set_params(gain=0)
    photos = load_photos(split="holdout")
    photos = [p[:128, :128] for p in photos[:1]] if quick else photos
    rows = []
    for i, x in enumerate(photos):
        x = x[: x.shape[0] // 8 * 8, : x.shape[1] // 8 * 8]
        (blob,) = codec.compress([x])
        q = np.moveaxis(codec.transform(x[None])[0], -1, 0).astype(np.int64)
        pixels = x.shape[0] * x.shape[1]
        rows.append(
            {
                "photo": f"holdout {i} ({x.shape[1]}x{x.shape[0]})",
                "ours_bpp": 8 * len(blob) / pixels,
                "readme_webp_rgb_tiles_bpp": 8 * _readme_webp_bytes(q) / pixels,
                "webp_grey_mosaic_bpp": latent_webp_bits(q) / pixels,
            }
        )
    return rows


def markdown(r):
    load, load_end = r["machine"]["load_average"], r["machine_end"]["load_average"]
    lines = [
        "# The paper's decoders on CPU, and latent storage (issue 22)",
        "",
        f"Machine: {machine_line(r['machine'])}; {r['threads']} torch threads; load "
        f"average {load[0]:.1f} at the start, {load_end[0]:.1f} at the end (a shared "
        f"machine). Median of {r['repeats']} calls of `inverse_transform`.",
        "",
        "| decoder | parameters (M) | signal | whole (s) | tiled (s) | "
        "samples/s whole | samples/s tiled | tiled - whole (max, of range) "
        "| same, 10 latents from the ends |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["speed"]:
        tiled = row.get("tiled_s")
        lines.append(
            f"| {row['decoder']} | {row['parameters_M']:.2f} | {row['signal']} | "
            f"{row['whole_s']:.2f} | {'' if tiled is None else f'{tiled:.2f}'} | "
            f"{row['samples_per_s_whole']:.3g} | "
            + (
                ""
                if tiled is None
                else f"{row['samples_per_s_tiled']:.3g} | "
                f"{row['tiled_max_abs_diff_of_range']:.2g} | "
                f"{row['tiled_interior_max_abs_diff_of_range']:.2g} |"
            )
        )
    lines += [
        "",
        "Tiles: `TILE_VALUES` lowered to "
        f"{r['speed'][0].get('tile_values')} values to force the tiled path "
        "(outputs above 2**23 values take it by default). The reference's "
        "packets are periodic: near a signal's ends the whole decode reads "
        "the other end, which a tile does not; the last column leaves those "
        "ends out. The 1D decoder is local (tiles equal the whole there up "
        "to float rounding); the 2D decoder's GroupNorm and attention read "
        "the whole grid, so its tiles differ everywhere (random weights: "
        "the size of that difference says little about a trained decoder).",
        "",
        "## Storage of the same latents (rgb-16x at gain 0, bits per pixel)",
        "",
        "| photo | this library | reference README's WebP tiles | WebP grey mosaic |",
        "|---|---|---|---|",
    ]
    for row in r["storage"]:
        lines.append(
            f"| {row['photo']} | {row['ours_bpp']:.3f} | "
            f"{row['readme_webp_rgb_tiles_bpp']:.3f} | "
            f"{row['webp_grey_mosaic_bpp']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, threads=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    run = BenchmarkRun("reference_decoder", args)
    repeats = args.repeats
    report = {
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "machine": run.machine,
        "speed": decode_speed(args.quick, repeats),
        "storage": storage(args.quick),
    }
    return run.finish(report, markdown, report["speed"])


if __name__ == "__main__":
    main()
