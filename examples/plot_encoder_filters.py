"""
=========================================
What a fitted encoder's filters look like
=========================================

WaLLoC's encoder is linear up to the bottleneck: a wavelet packet analysis
(fixed) followed by one 1x1 layer (learned). Their composition is a single
strided filter per latent channel, the *composite filter*, which is how
:meth:`~sklearn_walloc.WallocTransformer.transform` runs it. For RGB images with
``levels=3`` and the ``bior4.4`` wavelet each filter is a 3x64x64 kernel applied
at stride 8.

This example fits a 16x model (``latent_dim=12``) and draws its 12 composite
filters as colour images, with their frequency responses. The closed form is a
PCA of the wavelet packet coefficients, so the first channel is a smooth
colour-averaging blob (the local mean brightness), the next ones are colour
differences and oriented edges, and later ones respond to finer detail.

The filters are computed with a private helper
(``sklearn_walloc._wavelets.fused_encoder``, the function the encoder itself
uses); private names can change between versions.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from sklearn_walloc import WallocTransformer
from sklearn_walloc._wavelets import fused_encoder
from sklearn_walloc.datasets import load_photos

names = ["chelsea", "rocket", "flower", "immunohistochemistry"]
quick = os.environ.get("WALLOC_DOCS_QUICK") == "1"  # the CI build: two photos
photos = load_photos(names[:2] if quick else names)
model = WallocTransformer(latent_dim=12, levels=3, max_iter=0, random_state=0)
model.fit(photos)

module = model.module_
kernel, _ = fused_encoder(
    module.wpt, module.encoder.weight.flatten(1), module.encoder.bias
)
kernel = kernel.numpy()  # (latent_dim, channels, 64, 64)
print("composite filters:", kernel.shape, "stride", 2**model.levels)

# %%
# The filters, each scaled to its own largest weight (grey is 0; the colour
# shows which channel combination a latent measures). Only the central 32x32
# of the 64x64 support is drawn: the weights outside it are tiny.
c = kernel.shape[-1] // 2
centre = kernel[:, :, c - 16 : c + 16, c - 16 : c + 16]
fig, axes = plt.subplots(2, 6, figsize=(10, 3.8))
for k, ax in enumerate(axes.ravel()):
    f = centre[k].transpose(1, 2, 0)
    ax.imshow(0.5 + 0.5 * f / np.abs(f).max(), interpolation="nearest")
    ax.set_title(f"latent {k}", fontsize=9)
    ax.set_axis_off()
fig.suptitle("composite encoder filters (WPT + 1x1 layer), 16x model")
fig.tight_layout()

# %%
# Frequency responses (magnitude of the 2D Fourier transform of each filter,
# summed over the colour channels, zero frequency in the centre). The first
# three latents are low-passes (the brightness and two colour differences);
# the others pick bands of orientation and scale: what the PCA found to carry
# the most variance in these photos.
fig, axes = plt.subplots(2, 6, figsize=(10, 3.8))
for k, ax in enumerate(axes.ravel()):
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(kernel[k], s=(128, 128)))).sum(0)
    ax.imshow(spectrum, cmap="viridis")
    ax.set_title(f"latent {k}", fontsize=9)
    ax.set_axis_off()
fig.suptitle("frequency responses")
fig.tight_layout()

# %%
# The share of the photos' variance each latent carries, from the latents
# themselves: the order of a PCA.
Z = np.concatenate([z.reshape(-1, model.latent_dim) for z in model.transform(photos)])
share = Z.var(axis=0) / Z.var(axis=0).sum()
fig, ax = plt.subplots(figsize=(5, 2.8))
ax.bar(range(model.latent_dim), share)
ax.set_xlabel("latent channel")
ax.set_ylabel("share of latent variance")
fig.tight_layout()
