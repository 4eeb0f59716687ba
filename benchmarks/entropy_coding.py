"""Benchmark of the latent entropy coder on realistic photo latents.

Latents: a 3-level 'bior4.4' wavelet packet (periodization) of each RGB channel,
192 coefficients per position, projected on 12 PCA components fitted on six bundled
photos, scaled so that component 0 has std 0.75 s (s = 127/1.85), companded with
u = 2m(Phi(z/s) - 1/2), m = 127.5 - 1e-3, rounded: integer latents in [-127, 127]
of shape (12, H/8, W/8) for four held-out photos (the closed-form WaLLoC start).

Compared, in bits: (a) empirical per-channel entropy, (b) the coder's ideal code
length, (c) the coded payload, (d) lossless WebP of the channels tiled as a uint8
grayscale mosaic (the paper's storage format). Also encode/decode speed.

Run: ``python benchmarks/entropy_coding.py`` (writes results/entropy_coding.md).
"""

import io
from pathlib import Path

import numpy as np
import pywt
from _common import best_time
from PIL import Image
from scipy.special import ndtr
from skimage import data
from sklearn.datasets import load_sample_images

from sklearn_walloc._entropy import (
    decode_latents,
    empirical_entropy_bits,
    encode_latents,
    ideal_code_length_bits,
)

TEST = ("astronaut", "coffee", "chelsea", "rocket")
TRAIN = ("hubble_deep_field", "immunohistochemistry", "retina", "motorcycle",
         "china", "flower")  # fmt: skip
BOUND = 127


def _photos():
    names = [n for n in TEST + TRAIN if hasattr(data, n)]
    out = {n: getattr(data, n)() for n in names}
    out["motorcycle"] = data.stereo_motorcycle()[0]
    out["china"], out["flower"] = load_sample_images().images
    return out


def _wpt_features(img):
    h, w = (img.shape[0] // 8) * 8, (img.shape[1] // 8) * 8
    img = img[:h, :w].astype(np.float64) / 255 - 0.5
    bands = []
    for c in range(3):
        wp = pywt.WaveletPacket2D(img[:, :, c], "bior4.4", "periodization", 3)
        bands += [node.data for node in wp.get_level(3, order="natural")]
    return np.stack(bands, -1)


def photo_latents(n_components=12):
    """Integer latents (C, H/8, W/8) of the held-out photos, by name."""
    photos = _photos()
    train = np.concatenate([_wpt_features(photos[n]).reshape(-1, 192) for n in TRAIN])
    mean = train.mean(0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    comps = vt[:n_components]
    s = BOUND / 1.85
    scale = 0.75 * s / ((train - mean) @ comps[0]).std()
    m = BOUND + 0.5 - 1e-3
    out = {}
    for name in TEST:
        z = (_wpt_features(photos[name]) - mean) @ comps.T * scale
        u = 2 * m * (ndtr(z / s) - 0.5)
        out[name] = np.rint(u).astype(np.int32).transpose(2, 0, 1)
    return out


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


def main():
    rows = []
    for name, q in photo_latents().items():
        payload = encode_latents(q, 8)
        assert np.array_equal(decode_latents(payload, q.shape, 8), q)
        rows.append({
            "photo": name,
            "shape": "x".join(map(str, q.shape)),
            "entropy": empirical_entropy_bits(q),
            "ideal": ideal_code_length_bits(q, 8),
            "coded": 8 * len(payload),
            "webp": webp_bits(q),
        })  # fmt: skip
    grid = photo_latents()["astronaut"][:, :64, :64]
    payload = encode_latents(grid, 8)
    t_enc = best_time(lambda: encode_latents(grid, 8))
    t_dec = best_time(lambda: decode_latents(payload, grid.shape, 8))

    lines = [
        "# Entropy coding of photo latents (12 channels, 8 bits, J=3 PCA start)",
        "",
        "| photo | grid | entropy (a) | ideal (b) | coded (c) | WebP (d) "
        "| c/b | c/a | c/d | coded bits/latent |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    tot = dict.fromkeys(("entropy", "ideal", "coded", "webp"), 0.0)
    n_latents = 0
    for r in rows:
        for k in tot:
            tot[k] += r[k]
        n = int(np.prod([int(d) for d in r["shape"].split("x")]))
        n_latents += n
        lines.append(
            f"| {r['photo']} | {r['shape']} | {r['entropy']:.0f} | {r['ideal']:.0f} "
            f"| {r['coded']} | {r['webp']} | {r['coded'] / r['ideal']:.4f} "
            f"| {r['coded'] / r['entropy']:.3f} | {r['coded'] / r['webp']:.3f} "
            f"| {r['coded'] / n:.3f} |"
        )
    lines.append(
        f"| **total** | | {tot['entropy']:.0f} | {tot['ideal']:.0f} "
        f"| {tot['coded']:.0f} | {tot['webp']:.0f} "
        f"| {tot['coded'] / tot['ideal']:.4f} | {tot['coded'] / tot['entropy']:.3f} "
        f"| {tot['coded'] / tot['webp']:.3f} | {tot['coded'] / n_latents:.3f} |"
    )
    lines += [
        "",
        f"Speed on a 12x64x64 grid (astronaut crop), best of 5, this machine: "
        f"encode {grid.size / t_enc / 1e6:.2f} M latents/s ({t_enc * 1e3:.0f} ms), "
        f"decode {grid.size / t_dec / 1e6:.2f} M latents/s ({t_dec * 1e3:.0f} ms).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "entropy_coding.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
