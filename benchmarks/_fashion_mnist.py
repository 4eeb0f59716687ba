"""Fashion-MNIST for the benchmarks: Debian's ``dataset-fashion-mnist``.

Zalando's Fashion-MNIST (MIT licence): 70,000 grey 28x28 photos of clothing in
10 classes, the standard split of 60,000 training and 10,000 test images, as
the four gzipped IDX files of the package, under
``/usr/share/datasets/fashion-mnist/``. When that folder is absent, the
``.deb`` (31 MB) is fetched with ``apt-get download dataset-fashion-mnist`` and
unpacked with ``dpkg -x`` (nothing is installed) into the benchmarks' cache
(:func:`_common.debian_package_dir`: ``$XDG_CACHE_HOME`` or ``~/.cache``, then
``sklearn_walloc_bench/dataset-fashion-mnist``). Needs a Debian/Ubuntu system
with the package in its apt lists (``apt-get update``). Not a library
dependency: only ``benchmarks/fashion_mnist.py`` reads it.
"""

import gzip
from pathlib import Path

import numpy as np
from _common import debian_package_dir, debian_package_version

__all__ = ["CLASSES", "PACKAGE", "fashion_mnist_dir", "load_fashion_mnist"]

PACKAGE = "dataset-fashion-mnist"
DATA = "usr/share/datasets/fashion-mnist"
# Label -> name, from the data set's README.
CLASSES = (
    "T-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _complete(folder):
    return all((folder / f).is_file() for pair in _FILES.values() for f in pair)


def fashion_mnist_dir():
    """The folder of the IDX files and the package version, fetching if needed.

    Returns
    -------
    folder : pathlib.Path
    version : str
        The Debian package version, or "installed" for a system copy.

    Raises
    ------
    RuntimeError
        If the files are neither installed nor cached and cannot be fetched.
    """
    installed = Path("/") / DATA
    if _complete(installed):
        return installed, "installed"
    root = debian_package_dir(PACKAGE)
    if root is None or not _complete(root / DATA):
        raise RuntimeError(
            f"{PACKAGE} not found and could not be fetched with apt-get download "
            f"(run apt-get update?), or unpack it with dpkg -x into the cache"
        )
    return root / DATA, debian_package_version(root, PACKAGE)


def _read_idx(path, ndim):
    """An IDX array (unsigned bytes): big-endian header, then the values."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != 0x0800 + ndim:
        raise ValueError(f"{path}: magic {magic:#x}, expected {0x0800 + ndim:#x}")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split="train"):
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` of one split.

    Parameters
    ----------
    split : {"train", "test"}
        The standard split: 60,000 training or 10,000 test images.

    Returns
    -------
    images : ndarray of shape (n, 28, 28), dtype uint8
    labels : ndarray of shape (n,), dtype int64
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder, _ = fashion_mnist_dir()
    images, labels = (folder / f for f in _FILES[split])
    X, y = _read_idx(images, 3), _read_idx(labels, 1).astype(np.int64)
    if len(X) != len(y):
        raise ValueError(f"{split}: {len(X)} images but {len(y)} labels")
    return X, y
