"""The two transforms walloc 1.2.1 imports (fixture script only)."""

import numpy as np
import torch
from PIL import Image


class PILToTensor:
    """A PIL image to a uint8 tensor ``(C, H, W)``, as torchvision's."""

    def __call__(self, img):
        a = np.array(img, copy=True)
        if a.ndim == 2:
            a = a[:, :, None]
        return torch.from_numpy(a).permute(2, 0, 1).contiguous()


class ToPILImage:
    """A float tensor ``(C, H, W)`` in [0, 1] to a PIL image (display only)."""

    def __call__(self, t):
        a = (t.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
