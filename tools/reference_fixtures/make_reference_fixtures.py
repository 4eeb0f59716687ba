"""Build the reference fixtures of ``tests/test_reference.py`` with walloc 1.2.1.

Runs in a SEPARATE environment, never the library's (none of this is a
dependency of sklearn-walloc or of its CI)::

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0   # the CPU wheel
    /tmp/refenv/bin/pip install walloc==1.2.1 diffusers einops pytorch_wavelets \
        PyWavelets "setuptools<81" scikit-image
    /tmp/refenv/bin/python tools/reference_fixtures/make_reference_fixtures.py

(``setuptools`` before 81 for the ``pkg_resources`` that pytorch_wavelets
imports; the registry's torchvision is a CUDA build that does not load with
the CPU torch, so the ``torchvision/`` folder beside this script stands in
for the two transforms walloc imports.) Made with torch 2.13.0, diffusers 0.42.1,
pytorch_wavelets 1.3.0, PyWavelets 1.9.0, scikit-image 0.26.0, setuptools
80.10.2, einops 0.8.2. Rerunning it on one machine rewrites the fixtures byte
for byte; on another CPU the last bits of the floats may change (a rerun on
another machine moved the companded latents by up to 1.5e-5 and the
reconstructions by up to 8e-7, the rounded latents not at all).

It builds the reference's ``Codec2D`` (RGB, ``J=3``, 12 latents: 16x, as the
paper's ``RGB_16x``, with a decoder of width 32 instead of 768) and
``Codec1D`` (stereo, ``J=5``, 13 latents: 4.9x, with the 129-tap post-filter
as the paper's ``stereo_5x``, decoder width 26), with random weights (every
decoder parameter perturbed, so GroupNorm affines, Snake parameters and the
post-filter are all exercised), and writes into ``tests/data``:

- ``reference_{2d,1d}.pth``: ``{"model_state_dict": ...}`` as the authors'
  checkpoints; ``reference_{2d,1d}.json``: the config, as theirs;
- ``reference_{2d,1d}.npz``: the signals (``signal_<i>``: uint8 photo crops
  ``(H, W, 3)`` of scikit-image's astronaut and coffee; int16 synthetic
  stereo clips ``(L, 2)``; the reference reads them as ``x/255 - 0.5`` and
  ``x / 65536``, peak 0.5 at full scale as its README normalises audio),
  companded latents before rounding (``u_<i>``), rounded latents
  (``latents_<i>``), clamped reconstructions (``recon_<i>``, its units) and
  the wavelet packet coefficients of the first signal (``bands_0``).

The first two signals of each kind have sides that are multiples of ``2**J``;
the third does not (a 100 x 75 photo crop, a clip of 1001 samples), and is
run as a user of the reference runs it: padded with the reference's ``pad``
helper (reflection, centred, to the next multiple; audio, which the helper
does not take, by its ``compute_padding`` along the one axis with the same
mode), encoded and decoded, and the output cut back with its ``crop`` helper.
Its latents are those of the padded signal; ``recon_2`` is the crop.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the torchvision stand-in

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from skimage import data  # noqa: E402
from walloc import walloc  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "data")


def _perturb(module, gen):
    """Every parameter of the decoder away from its initial value."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("alpha", "beta"):  # Snake: log-scale parameters
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif "norm" in name and leaf == "weight":
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif leaf == "bias" or leaf == "weight_g":
                p.add_(0.05 * torch.randn(p.shape, generator=gen))


def _save(name, codec, config, arrays):
    torch.save(
        {"model_state_dict": codec.state_dict()}, os.path.join(OUT, f"{name}.pth")
    )
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(config, f, indent=4)
    np.savez_compressed(os.path.join(OUT, f"{name}.npz"), **arrays)


def _pad(x, J):
    """The reference's own padding to a multiple of ``2**J``: its ``pad``
    helper for images; for audio, which that helper does not take (it reads a
    height and a width), its ``compute_padding`` along the one axis, with the
    helper's mode. No padding where the sides are multiples already."""
    p = 2**J
    if x.dim() == 4:
        return walloc.pad(x, p)
    n = x.shape[-1]
    pad, _ = walloc.compute_padding(1, n, out_h=1, out_w=-(-n // p) * p)
    return F.pad(x, pad[:2], mode="reflect")


def _crop(y, size):
    """The reference's ``crop`` helper (a 1D signal as an image of one row)."""
    if y.dim() == 4:
        return walloc.crop(y, size)
    return walloc.crop(y[:, :, None], (1, *size))[:, :, 0]


def _run(codec, x):
    """What a user of the reference does: pad with its helper, latents, the
    clamped output of the padded signal, cropped back with its helper."""
    padded = _pad(x, codec.J)
    with torch.no_grad():
        bands = codec.wavelet_analysis(padded, J=codec.J)
        u = codec.encoder[0:2](bands)
        z_hat = codec.encoder[2](u)
        recon, _, _ = codec(padded)
    return bands, u, z_hat, _crop(recon, x.shape[2:])


def _arrays(codec, signals, inputs):
    arrays = {}
    for i, (s, x) in enumerate(zip(signals, inputs)):
        bands, u, z_hat, recon = _run(codec, x)
        arrays[f"signal_{i}"] = s
        arrays[f"u_{i}"] = u[0].numpy()
        arrays[f"latents_{i}"] = z_hat[0].numpy().astype(np.int16)
        arrays[f"recon_{i}"] = recon[0].numpy()
        if i == 0:
            arrays["bands_0"] = bands[0].numpy()
        clamped = float((recon.abs() >= 0.5).float().mean())
        print(
            f"  signal {i}: {tuple(s.shape)}, latents {tuple(z_hat.shape[1:])} "
            f"in [{int(z_hat.min())}, {int(z_hat.max())}], "
            f"output std {float(recon.std()):.3f}, {100 * clamped:.1f}% clamped"
        )
    return arrays


def image_fixture():
    config = {
        "channels": 3,
        "J": 3,
        "Ne": None,
        "Nd": 32,
        "latent_dim": 12,
        "latent_bits": 8,
        "lightweight_encode": True,
    }
    torch.manual_seed(0)
    codec = walloc.Codec2D(**config).eval()
    gen = torch.Generator().manual_seed(1)
    _perturb(codec.decoder, gen)
    photos = [
        data.astronaut()[8:72, 160:256],
        data.coffee()[100:148, 200:264],
        data.astronaut()[300:375, 180:280],  # 100 x 75: padded to 104 x 80
    ]
    inputs = [
        (torch.from_numpy(p).permute(2, 0, 1).to(torch.float) / 255 - 0.5)[None]
        for p in photos
    ]
    with torch.no_grad():
        # Latents of tens of levels (as the paper's histogram), and an output
        # of about a third of the range, mostly unclamped.
        codec.encoder[0].weight.mul_(25.0)
        codec.decoder[1].conv_out.weight.mul_(0.6)
        codec.decoder[1].conv_out.bias.mul_(0.6)
    print("Codec2D", config)
    _save("reference_2d", codec, config, _arrays(codec, photos, inputs))


def _clip(length, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 44100.0
    tone = np.sin(2 * np.pi * (220 + 300 * t) * t) * np.exp(-3 * t)
    left = 0.5 * tone + 0.05 * rng.standard_normal(length)
    right = 0.4 * np.roll(tone, 7) + 0.05 * rng.standard_normal(length)
    left[length // 3] += 0.4  # a click
    x = np.stack([left, right], axis=1)
    return np.round(x / np.abs(x).max() * 0.9 * 32767).astype(np.int16)


def audio_fixture():
    config = {
        "channels": 2,
        "J": 5,
        "Ne": None,
        "Nd": 26,
        "latent_dim": 13,
        "latent_bits": 8,
        "lightweight_encode": True,
        "post_filter": True,
    }
    torch.manual_seed(0)
    codec = walloc.Codec1D(**config).eval()
    gen = torch.Generator().manual_seed(2)
    _perturb(codec.decoder, gen)
    with torch.no_grad():
        codec.encoder[0].weight.mul_(60.0)
        codec.decoder[1].conv2.weight_g.mul_(0.12)
        # A post-filter near the identity, as a trained one would be.
        post = torch.zeros_like(codec.post.weight)
        post[:, :, 64] = torch.eye(2)
        codec.post.weight.copy_(post + 0.01 * codec.post.weight)
    clips = [_clip(4096, 0), _clip(1536, 1), _clip(1001, 2)]  # 1001: to 1024
    inputs = [torch.from_numpy(c.T.astype(np.float32) / 65536.0)[None] for c in clips]
    print("Codec1D", config)
    _save("reference_1d", codec, config, _arrays(codec, clips, inputs))


if __name__ == "__main__":
    image_fixture()
    audio_fixture()
    for name in sorted(os.listdir(OUT)):
        if name.startswith("reference_") and "." in name:
            print(f"{name}: {os.path.getsize(os.path.join(OUT, name))} bytes")
