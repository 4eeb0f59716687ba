"""Fitted models shipped inside the package, loaded offline by name.

Each model is a file of the safe model format (``_model_io``) in
``sklearn_walloc/data/pretrained/<name>.npz``, saved as a
:class:`~sklearn_walloc.WallocTransformer` so that both classes load it (a
:class:`~sklearn_walloc.WallocCodec` is a transformer plus entropy coding).
``benchmarks/train_pretrained.py`` trains them and writes ``TRAINING.json`` and
``TRAINING.md`` beside them: data sources and licences, steps, time and
validation scores.
"""

from importlib import resources

__all__ = ["PRETRAINED", "list_pretrained", "load_pretrained"]

#: name -> what the model is for (the structure is in the file's spec).
PRETRAINED = {
    "rgb-16x": "RGB photos, uint8; levels=3, latent_dim=12 (16x fewer values)",
    "rgb-4x": "RGB photos, uint8; levels=2, latent_dim=12 (4x fewer values)",
    "stereo-5x": "stereo audio, int16, 44.1 kHz; levels=5, latent_dim=13 (4.9x)",
    "mono-5x": "mono audio, int16, 44.1 kHz; levels=6, latent_dim=13 (4.9x)",
    "grey-16x": "grey photos, uint8; levels=3, latent_dim=4 (16x fewer values)",
}


def _path(name):
    return resources.files("sklearn_walloc").joinpath(
        "data", "pretrained", f"{name}.npz"
    )


def list_pretrained():
    """Names of the fitted models shipped with the package.

    Returns
    -------
    names : list of str
        Each works with ``WallocCodec.from_pretrained(name)`` and
        ``WallocTransformer.from_pretrained(name)``, offline.

    Examples
    --------
    >>> from sklearn_walloc import list_pretrained
    >>> list_pretrained()
    ['grey-16x', 'mono-5x', 'rgb-16x', 'rgb-4x', 'stereo-5x']
    """
    return sorted(name for name in PRETRAINED if _path(name).is_file())


def load_pretrained(cls, name):
    """The shipped model ``name`` as a fitted ``cls`` instance."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    available = list_pretrained()
    if name not in available:
        raise ValueError(
            f"unknown pretrained model {name!r}; available: {', '.join(available)}"
        )
    with resources.as_file(_path(name)) as path:
        return cls.load(path)
