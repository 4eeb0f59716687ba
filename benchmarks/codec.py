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
``codec.{md,json,csv}`` into ``--out`` (default ``benchmarks/results``).
"""

import numpy as np
from _common import (
    BenchmarkRun,
    Timer,
    benchmark_parser,
    best_time,
    latent_webp_bits,
    markdown_table,
)
from _machine import machine_line

from sklearn_walloc import WallocCodec, metrics
from sklearn_walloc.datasets import load_photos


def _entropy_coder_alone(blob):
    """The blob's integer latents and the coder's (encode, decode) seconds.

    Private on purpose: the public API codes and decodes whole blobs with the
    transform around them; the entropy coder's own share needs its functions.
    """
    from sklearn_walloc._container import unpack_blob
    from sklearn_walloc._entropy import decode_latents, encode_latents

    p = unpack_blob(blob)
    q = decode_latents(p.payload, p.latent_shape, p.latent_bits)
    t_enc = best_time(lambda: encode_latents(q, p.latent_bits))
    t_dec = best_time(lambda: decode_latents(p.payload, p.latent_shape, 8))
    return q, 8 * len(p.payload), t_enc, t_dec


def measure(codec, linear, name, x):
    h, w = x.shape[:2]
    (blob,) = codec.compress([x])
    y = codec.decompress([blob], restore=True)[0]
    (blob_lin,) = linear.compress([x])  # another fingerprint, same latents
    assert (
        linear.decompress([blob_lin], restore=False)[0]
        == codec.decompress([blob], restore=False)[0]
    ).all()
    q, payload_bits, t_ec, t_ed = _entropy_coder_alone(blob)
    return dict(
        name=name,
        size=f"{w}x{h}",
        pixels=h * w,
        bytes=len(blob),
        payload_bits=payload_bits,
        bpp=metrics.bits_per_pixel([blob], [x]),
        psnr=metrics.psnr(x, y),
        entropy=metrics.entropy_bits(q, channel_axis=0),
        webp=latent_webp_bits(q),
        mp=h * w / 1e6,
        t_c=best_time(lambda: codec.compress([x])),
        t_d=best_time(lambda: codec.decompress([blob], restore=False)),
        t_dl=best_time(lambda: linear.decompress([blob_lin], restore=False)),
        t_ec=t_ec,
        t_ed=t_ed,
    )


def _rate_row(name, size, nbytes, bpp, psnr, pixels, entropy, payload_bits, webp):
    e_bpp, bits = entropy / pixels, 8 * nbytes
    return [name, size, nbytes, f"{bpp:.3f}", f"{24 / bpp:.1f}", psnr,
            f"{e_bpp:.3f}", f"{24 / e_bpp:.1f}", f"{payload_bits / entropy:.3f}",
            f"{bits / entropy:.3f}", webp, f"{bits / webp:.3f}"]  # fmt: skip


def markdown(report):
    rows = report["rows"]
    rate = [
        _rate_row(r["name"], r["size"], r["bytes"], r["bpp"], f"{r['psnr']:.2f}",
                  r["pixels"], r["entropy"], r["payload_bits"], r["webp"])
        for r in rows
    ]  # fmt: skip
    total = {k: sum(r[k] for r in rows) for k in
             ("pixels", "bytes", "entropy", "payload_bits", "webp")}  # fmt: skip
    rate.append(_rate_row(
        "**all**", "", total["bytes"], 8 * total["bytes"] / total["pixels"],
        f"{np.mean([r['psnr'] for r in rows]):.2f} (mean)", total["pixels"],
        total["entropy"], total["payload_bits"], total["webp"],
    ))  # fmt: skip
    speed = [
        [r["name"]] + [f"{r['mp'] / r[k]:.2f}" for k in
                       ("t_c", "t_ec", "t_d", "t_ed", "t_dl")]
        for r in rows
    ]  # fmt: skip
    return "\n".join([
        "# WallocCodec on held-out photos (16x, closed form)",
        "",
        "Model: `WallocCodec(latent_dim=12, levels=3, max_iter=0, random_state=0)` "
        f"fitted on the {report['n_fit']} bundled fit photos in "
        f"{report['fit_s']:.1f} s; held-out photos: "
        f"{', '.join(r['name'] for r in rows)}. "
        f"Machine: {machine_line(report['machine'])}.",
        "",
        "## Rate and quality",
        "",
        markdown_table(
            ["photo", "size", "blob bytes", "bpp", "ratio (24-bit)", "PSNR dB",
             "ideal entropy bpp", "ideal ratio", "coded/entropy (payload)",
             "coded/entropy (blob)", "WebP bits", "coded/WebP"], rate),
        "",
        "## Speed (one photo per call, best of 3, MP/s)",
        "",
        markdown_table(
            ["photo", "compress", "entropy encoder alone", "decompress",
             "entropy decoder alone", "decompress, `decoder_width=0`"], speed),
        "",
    ])  # fmt: skip


def main():
    args = benchmark_parser(__doc__).parse_args()
    run = BenchmarkRun("codec", args)
    fit = load_photos(split="fit")
    held, names = load_photos(split="holdout", return_names=True)
    params = dict(latent_dim=12, levels=3, max_iter=0, random_state=0)
    with Timer() as t_fit:
        codec = WallocCodec(**params).fit(fit)
    linear = WallocCodec(decoder_width=0, **params).fit(fit)
    for c in (codec, linear):  # warm-up
        c.decompress(c.compress([held[0][:64, :64]]), restore=False)
    rows = [measure(codec, linear, n, x) for n, x in zip(names, held)]
    report = {"machine": run.machine, "n_fit": len(fit), "fit_s": t_fit.s,
              "rows": rows}  # fmt: skip
    run.finish(report, markdown, rows)


if __name__ == "__main__":
    main()
