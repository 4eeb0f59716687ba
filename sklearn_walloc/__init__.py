"""sklearn-walloc: WaLLoC (wavelet-domain learned lossy compression) for scikit-learn.

``WallocTransformer`` is a learned, PCA-like transformer for 1D and 2D signals;
``WallocCodec`` adds entropy coding of its integer latents to bytes.
"""

__version__ = "0.1.0"

from ._pretrained import list_pretrained
from .codec import WallocCodec
from .transformer import WallocTransformer

__all__ = ["WallocCodec", "WallocTransformer", "__version__", "list_pretrained"]
