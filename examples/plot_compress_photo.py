"""
=====================================
Compressing a photo at several ratios
=====================================

A :class:`~sklearn_walloc.WallocCodec` is fitted on photos bundled with
scikit-image and scikit-learn and compresses a photo it has not seen
(scikit-image's astronaut) to bytes at three dimensionality reductions. The
reconstructions are shown side by side, with a zoomed crop, and measured with
:mod:`sklearn_walloc.metrics`; JPEG at about the same number of bytes is shown
for reference.

With ``levels=3`` an RGB image is cut into 8x8 blocks of 192 values; the
encoder keeps ``latent_dim`` of them, so ``latent_dim`` 48, 12 and 6 are 4x,
16x and 32x fewer values. The closed form (``max_iter=0``) fits in seconds.
"""

# %%
import io
import os

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from sklearn_walloc import WallocCodec, metrics
from sklearn_walloc.datasets import load_photos

# Five of the bundled "fit" photos (1.5 MP) keep this example fast; the CI
# build (WALLOC_DOCS_QUICK=1) uses two.
names = ["chelsea", "rocket", "flower", "immunohistochemistry", "motorcycle_left"]
quick = os.environ.get("WALLOC_DOCS_QUICK") == "1"
fit_photos = load_photos(names[:2] if quick else names)
(photo,) = load_photos(["astronaut"])  # held out from fitting

results = {}
for latent_dim in (48, 12, 6):
    codec = WallocCodec(latent_dim=latent_dim, levels=3, max_iter=0, random_state=0)
    codec.fit(fit_photos)
    (blob,) = codec.compress([photo])
    (rec,) = codec.decompress([blob])  # uint8, original size
    results[f"{192 // latent_dim}x fewer values"] = (blob, rec)

for name, (blob, rec) in results.items():
    print(
        f"{name:>18}: {len(blob):6d} bytes, "
        f"{metrics.bits_per_pixel([blob], photo):.3f} bpp, "
        f"compression ratio {metrics.compression_ratio([blob], photo):5.1f}, "
        f"PSNR {metrics.psnr(photo, rec):.2f} dB, "
        f"MS-SSIM {metrics.ms_ssim(photo, rec):.4f}"
    )

# %%
# JPEG (Pillow) at the quality whose file is closest in size to the 16x blob.
target = len(results["16x fewer values"][0])
best = None
for quality in range(5, 96, 5):
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=quality, optimize=True)
    if best is None or abs(buf.tell() - target) < abs(len(best[1]) - target):
        best = (quality, buf.getvalue())
jpeg = np.asarray(Image.open(io.BytesIO(best[1])).convert("RGB"))
print(
    f"JPEG quality {best[0]}: {len(best[1])} bytes, "
    f"{metrics.bits_per_pixel([best[1]], photo):.3f} bpp, "
    f"PSNR {metrics.psnr(photo, jpeg):.2f} dB"
)
panels = {"original": photo, **{k: v[1] for k, v in results.items()}}
panels[f"JPEG q{best[0]} ({len(best[1])} B)"] = jpeg

# %%
# Whole images on the first row, the same 96x96 crop (the face), magnified, on
# the second.
crop = (slice(80, 176), slice(180, 276))
fig, axes = plt.subplots(2, len(panels), figsize=(3 * len(panels), 6.2))
for ax, (title, img) in zip(axes.T, panels.items()):
    ax[0].imshow(img)
    ax[0].add_patch(plt.Rectangle((180, 80), 96, 96, fill=False, ec="yellow"))
    ax[1].imshow(img[crop], interpolation="nearest")
    if img is not photo:
        title += f"\n{metrics.psnr(photo, img):.2f} dB"
    ax[0].set_title(title, fontsize=10)
    for a in ax:
        a.set_axis_off()
fig.tight_layout()

# %%
# WaLLoC's edge is not rate-distortion: a mature codec such as JPEG (and more
# so WebP or AVIF) reaches a higher PSNR at the same size, see
# :doc:`/user_guide/limits`. What WaLLoC gives is a small grid of integer
# latents that a learning pipeline can use directly, made by one linear filter
# per axis.
