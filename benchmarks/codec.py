"""WallocCodec on held-out photos: rate, quality, coded size and speed.

What it measures
----------------
A 16x model (``latent_dim=12, levels=3``, RGB) is fitted in closed form
(``max_iter=0``, ``random_state=0``) on the eight bundled "fit" photos
(``load_photos(split="fit")``) and used on the three held-out ones
(``load_photos(split="holdout")``: astronaut, coffee, china). Per photo:

- **coded**: ``WallocCodec.compress``: bytes of the whole blob (header,
  fingerprint, checksum included), bits per pixel (``8 * bytes / (H * W)``),
  compression ratio against 24-bit RGB (``24 / bpp``), and PSNR (peak 255) of
  ``decompress(..., restore=True)`` (uint8, what a user gets) against the photo;
- **ideal per-channel entropy**: the closed-form WaLLoC with ideal
  per-channel entropy coding of the same latents (sum over the 12 channels of
  ``count * H(histogram of that photo's channel)``: tables adapted to the photo
  and free to send), its bpp and compression ratio; the PSNR is the same (same
  latents);
- **coded / entropy**: the payload and the whole blob against that entropy;
- **WebP**: the latents as lossless WebP (the 12 channels tiled as a uint8
  grayscale mosaic, ``method=6``: the paper's storage format), and coded / WebP;
- **speed**: megapixels per second of ``compress`` and ``decompress`` (one
  photo per call, best of 3 after a warm-up), and of the entropy coder alone
  (``encode_latents`` / ``decode_latents`` on the same latents). Decoding is also
  timed with ``decoder_width=0``, which gives the same output here (with
  ``max_iter=0`` the residual decoder path is exactly zero).

Run: ``python benchmarks/codec.py`` (about a minute on 2 CPU cores); writes
``benchmarks/results/codec.md``.
"""

import time
from pathlib import Path

import numpy as np
from _common import best_time
from _machine import machine_line
from entropy_coding import webp_bits

from sklearn_walloc._container import unpack_blob
from sklearn_walloc._entropy import (
    decode_latents,
    empirical_entropy_bits,
    encode_latents,
)
from sklearn_walloc.codec import WallocCodec
from sklearn_walloc.datasets import load_photos

OUT = Path(__file__).parent / "results" / "codec.md"


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def main():
    fit = load_photos(split="fit")
    held, names = load_photos(split="holdout", return_names=True)
    t = time.perf_counter()
    codec = WallocCodec(latent_dim=12, levels=3, max_iter=0, random_state=0).fit(fit)
    t_fit = time.perf_counter() - t
    linear = WallocCodec(
        latent_dim=12, levels=3, max_iter=0, decoder_width=0, random_state=0
    ).fit(fit)
    codec.decompress(codec.compress([held[0][:64, :64]]))  # warm-up
    linear.decompress(linear.compress([held[0][:64, :64]]))

    rows = []
    for name, x in zip(names, held):
        h, w = x.shape[:2]
        (blob,) = codec.compress([x])
        y = codec.decompress([blob], restore=True)[0]
        (blob_lin,) = linear.compress([x])  # another fingerprint, same latents
        same = linear.decompress([blob_lin])[0] == codec.decompress([blob])[0]
        assert same.all()
        parsed = unpack_blob(blob)
        q = decode_latents(parsed.payload, parsed.latent_shape, parsed.latent_bits)
        entropy = empirical_entropy_bits(q)
        webp = webp_bits(q)
        mp = h * w / 1e6
        t_c = best_time(lambda x=x: codec.compress([x]))
        t_d = best_time(lambda b=blob: codec.decompress([b]))
        t_dl = best_time(lambda b=blob_lin: linear.decompress([b]))
        t_ec = best_time(lambda q=q: encode_latents(q, 8))
        t_ed = best_time(lambda p=parsed: decode_latents(p.payload, p.latent_shape, 8))
        rows.append(
            dict(
                name=name,
                size=f"{w}x{h}",
                pixels=h * w,
                bytes=len(blob),
                payload_bits=8 * len(parsed.payload),
                bpp=8 * len(blob) / (h * w),
                psnr=_psnr(x, y),
                entropy=entropy,
                webp=webp,
                mp=mp,
                t_c=t_c,
                t_d=t_d,
                t_dl=t_dl,
                t_ec=t_ec,
                t_ed=t_ed,
            )
        )

    lines = [
        "# WallocCodec on held-out photos (16x, closed form)",
        "",
        f"Model: `WallocCodec(latent_dim=12, levels=3, max_iter=0, random_state=0)` "
        f"fitted on the {len(fit)} bundled fit photos in {t_fit:.1f} s; "
        f"held-out photos: {', '.join(names)}. Machine: {machine_line()}.",
        "",
        "## Rate and quality",
        "",
        "| photo | size | blob bytes | bpp | ratio (24-bit) | PSNR dB | "
        "ideal entropy bpp | ideal ratio | coded/entropy (payload) | "
        "coded/entropy (blob) | WebP bits | coded/WebP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e_bpp = r["entropy"] / r["pixels"]
        lines.append(
            f"| {r['name']} | {r['size']} | {r['bytes']} | {r['bpp']:.3f} | "
            f"{24 / r['bpp']:.1f} | {r['psnr']:.2f} | {e_bpp:.3f} | "
            f"{24 / e_bpp:.1f} | {r['payload_bits'] / r['entropy']:.3f} | "
            f"{8 * r['bytes'] / r['entropy']:.3f} | {r['webp']} | "
            f"{8 * r['bytes'] / r['webp']:.3f} |"
        )
    pix = sum(r["pixels"] for r in rows)
    total_bits = 8 * sum(r["bytes"] for r in rows)
    ent = sum(r["entropy"] for r in rows)
    webp = sum(r["webp"] for r in rows)
    lines.append(
        f"| **all** | | {total_bits // 8} | {total_bits / pix:.3f} | "
        f"{24 * pix / total_bits:.1f} | {np.mean([r['psnr'] for r in rows]):.2f} "
        f"(mean) | {ent / pix:.3f} | {24 * pix / ent:.1f} | "
        f"{sum(r['payload_bits'] for r in rows) / ent:.3f} | "
        f"{total_bits / ent:.3f} | {webp} | {total_bits / webp:.3f} |"
    )
    lines += [
        "",
        "## Speed (one photo per call, best of 3, MP/s)",
        "",
        "| photo | compress | entropy encoder alone | decompress | "
        "entropy decoder alone | decompress, `decoder_width=0` |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['mp'] / r['t_c']:.2f} | "
            f"{r['mp'] / r['t_ec']:.2f} | {r['mp'] / r['t_d']:.2f} | "
            f"{r['mp'] / r['t_ed']:.2f} | {r['mp'] / r['t_dl']:.2f} |"
        )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
