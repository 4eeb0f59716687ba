"""sklearn-walloc: WaLLoC (wavelet-domain learned lossy compression) for scikit-learn.

``WallocTransformer`` is a learned, PCA-like transformer for 1D and 2D signals;
``WallocCodec`` adds entropy coding of its integer latents to bytes.
"""

__version__ = "0.1.0"

from ._distributed import fit_distributed
from ._pretrained import list_pretrained
from ._streaming import SignalStream
from .codec import WallocCodec
from .transformer import WallocTransformer

__all__ = [
    "SignalStream",
    "WallocCodec",
    "WallocTransformer",
    "__version__",
    "fit_distributed",
    "list_pretrained",
]
