"""Real signals that ship inside registry packages (nothing is downloaded).

Photographs come from scikit-image's wheel (``skimage.data``) and from
scikit-learn (``load_sample_images``); both are optional dependencies.
"""

import numpy as np

__all__ = ["HOLDOUT_PHOTOS", "PHOTO_NAMES", "load_photos"]

# Natural RGB photographs bundled with scikit-image and scikit-learn. ``chelsea``
# and ``cat`` are one image, so only ``chelsea`` is listed; the two stereo views
# of the motorcycle are near-duplicates and always stay in the same split.
PHOTO_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "china",
    "flower",
)

#: Photos kept out of fitting by the benchmarks and the quick start.
HOLDOUT_PHOTOS = ("astronaut", "coffee", "china")


def _load_one(name):
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    try:
        import skimage.data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_photos needs scikit-image: pip install scikit-image"
        ) from e
    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(skimage.data, name)()


def load_photos(names=None, *, split=None, return_names=False):
    """Load bundled RGB photographs as ``uint8`` arrays ``(H, W, 3)``.

    Parameters
    ----------
    names : sequence of str, default=None
        Which photos (see ``PHOTO_NAMES``); None means all, or the ``split``.
    split : {"fit", "holdout"}, default=None
        ``"holdout"``: the photos in ``HOLDOUT_PHOTOS``; ``"fit"``: the others.
    return_names : bool, default=False
        Also return the names.

    Returns
    -------
    photos : list of ndarray of shape (H, W, 3), dtype uint8
        Sizes differ, from 300x451 to 1411x1411.
    names : list of str
        Only if ``return_names``.

    Examples
    --------
    >>> from sklearn_walloc.datasets import load_photos
    >>> photos = load_photos(["astronaut", "china"])
    >>> [p.shape for p in photos]
    [(512, 512, 3), (427, 640, 3)]
    """
    if names is None:
        if split not in (None, "fit", "holdout"):
            raise ValueError(f"split must be None, 'fit' or 'holdout'; got {split!r}.")
        names = [
            n
            for n in PHOTO_NAMES
            if split is None or (n in HOLDOUT_PHOTOS) == (split == "holdout")
        ]
    unknown = [n for n in names if n not in PHOTO_NAMES]
    if unknown:
        raise ValueError(f"unknown photo names {unknown}; choose from {PHOTO_NAMES}.")
    photos = [np.ascontiguousarray(_load_one(n)) for n in names]
    return (photos, list(names)) if return_names else photos
