"""The peer models and codecs of the speed benchmark, built without downloads.

- The Stable Diffusion 3 VAE: diffusers ``AutoencoderKL`` from the published
  configuration of ``stabilityai/stable-diffusion-3-medium-diffusers``
  (``vae/config.json``), random weights (speed does not depend on weight
  values).
- CompressAI's ``bmshj2018-hyperprior`` (``ScaleHyperprior(N=128, M=192)``, the
  zoo's quality 1-5 size) and ``cheng2020-anchor`` (``Cheng2020Anchor(N=128)``,
  quality 1-3), random weights, entropy bottlenecks updated so ``compress`` and
  ``decompress`` run the real range coder.
- Pillow's JPEG, WebP and JPEG 2000 (OpenJPEG) encoders and decoders.

CompressAI's package ``__init__`` imports its point-cloud and image datasets,
which need ``torch_geometric`` and ``torchvision`` (the PyPI torchvision wheel
does not load beside the CPU build of torch used here). The models themselves
need neither, so :func:`_import_compressai_models` loads ``compressai.models``'
``google`` and ``waseda`` modules without running the package ``__init__``:
``pip install --no-deps compressai`` (plus its light dependencies already
present: numpy, scipy, einops is not needed for these two models) is enough.
The networks, entropy models and range coder are CompressAI's own code.
"""

import importlib
import importlib.util
import io
import sys
import types

import numpy as np
import torch
from PIL import Image

__all__ = [
    "SD3_VAE_CONFIG",
    "compressai_model",
    "pillow_decode",
    "pillow_encode",
    "sd3_vae",
]

# stabilityai/stable-diffusion-3-medium-diffusers, vae/config.json
SD3_VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 16,
    "latents_mean": None,
    "latents_std": None,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 1.5305,
    "shift_factor": 0.0609,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}


def sd3_vae(seed=0):
    """The SD3 VAE with random weights, in eval mode."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**SD3_VAE_CONFIG).eval()


def _import_compressai_models():
    """``compressai.models.google`` and ``.waseda`` without the package init."""
    if "compressai.models.waseda" in sys.modules:
        return sys.modules["compressai.models.google"], sys.modules[
            "compressai.models.waseda"
        ]
    spec = importlib.util.find_spec("compressai")
    if spec is None:
        raise ImportError("pip install --no-deps compressai")
    root = spec.submodule_search_locations[0]
    for name, sub in [
        ("compressai", ""),
        ("compressai.registry", "/registry"),
        ("compressai.models", "/models"),
    ]:
        module = types.ModuleType(name)
        module.__path__ = [root + sub]
        sys.modules[name] = module
    # What the package init would define and the entropy models ask for.
    sys.modules["compressai"].get_entropy_coder = lambda: "ans"
    sys.modules["compressai"].available_entropy_coders = lambda: ["ans"]
    registry = importlib.import_module("compressai.registry.torch")
    sys.modules["compressai.registry"].__dict__.update(
        {k: v for k, v in vars(registry).items() if not k.startswith("_")}
    )
    google = importlib.import_module("compressai.models.google")
    waseda = importlib.import_module("compressai.models.waseda")
    return google, waseda


def compressai_model(name, seed=0):
    """``"bmshj2018-hyperprior"`` or ``"cheng2020-anchor"``, random weights."""
    google, waseda = _import_compressai_models()
    torch.manual_seed(seed)
    if name == "bmshj2018-hyperprior":
        model = google.ScaleHyperprior(N=128, M=192)
    elif name == "cheng2020-anchor":
        model = waseda.Cheng2020Anchor(N=128)
    else:
        raise ValueError(name)
    model.eval()
    model.update(force=True)
    return model


# ----------------------------------------------------------------- Pillow
PILLOW_SETTINGS = {
    "JPEG": {"format": "JPEG", "quality": 75},
    "WebP": {"format": "WEBP", "quality": 75},
    # Rate-controlled to 16:1 (1.5 bpp), about WaLLoC 16x's operating range.
    "JPEG 2000": {
        "format": "JPEG2000",
        "quality_mode": "rates",
        "quality_layers": [16],
    },
}


def pillow_encode(images, codec):
    """Each ``(H, W, 3)`` uint8 image to bytes with Pillow's ``codec``."""
    blobs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, **PILLOW_SETTINGS[codec])
        blobs.append(buffer.getvalue())
    return blobs


def pillow_decode(blobs):
    """Decoded ``(H, W, 3)`` uint8 arrays."""
    return [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
