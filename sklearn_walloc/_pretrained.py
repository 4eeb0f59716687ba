"""Fitted models shipped inside the package, loaded offline by name.

Each model is a file of the safe model format (``_model_io``) in
``sklearn_walloc/data/pretrained/<name>.npz``, saved as a
:class:`~sklearn_walloc.WallocTransformer` so that both classes load it (a
:class:`~sklearn_walloc.WallocCodec` is a transformer plus entropy coding).
``benchmarks/train_pretrained.py`` trains them and writes ``TRAINING.json`` and
``TRAINING.md`` beside them: data sources and licences, steps, time and
validation scores.

This module imports neither torch nor scikit-learn until a model is loaded:
the command line lists the models and reads their structure (:func:`spec_of`)
to choose one without paying for those imports.
"""

import functools
import io
import json
import zipfile
from importlib import resources

__all__ = [
    "PRETRAINED",
    "default_for",
    "ladder_for",
    "list_pretrained",
    "load_pretrained",
    "spec_of",
]

#: name -> what the model is for (the structure is in the file's spec).
PRETRAINED = {
    "rgb-16x": "RGB photos, uint8; levels=3, latent_dim=12 (16x fewer values)",
    "rgb-4x": "RGB photos, uint8; levels=2, latent_dim=12 (4x fewer values)",
    "stereo-5x": "stereo audio, int16, 44.1 kHz; levels=5, latent_dim=13 (4.9x)",
    "mono-5x": "mono audio, int16, 44.1 kHz; levels=6, latent_dim=13 (4.9x)",
    "grey-16x": "grey photos, uint8; levels=3, latent_dim=4 (16x fewer values)",
}

#: The model chosen for a kind of signal, (signal_ndim, channels) -> name, when
#: several shipped models could code it; any other kind gets the first shipped
#: model (by name) whose spec has its dimensionality and channel count.
_PREFERRED = {(2, 3): "rgb-16x", (1, 2): "stereo-5x", (1, 1): "mono-5x"}


def _path(name):
    return resources.files("sklearn_walloc").joinpath(
        "data", "pretrained", f"{name}.npz"
    )


def list_pretrained():
    """Names of the fitted models shipped with the package.

    Returns
    -------
    names : list of str
        Sorted. Each works with ``WallocCodec.from_pretrained(name)`` and
        ``WallocTransformer.from_pretrained(name)``, offline.

    Examples
    --------
    >>> from sklearn_walloc import list_pretrained
    >>> list_pretrained()
    ['grey-16x', 'mono-5x', 'rgb-16x', 'rgb-4x', 'stereo-5x']
    """
    return sorted(name for name in PRETRAINED if _path(name).is_file())


@functools.cache
def spec_of(name):
    """The structure of the shipped model ``name``, read without building it.

    Parameters
    ----------
    name : str
        One of :func:`list_pretrained`.

    Returns
    -------
    spec : dict
        The file's model spec (``ModelSpec.to_json()``: ``in_channels``,
        ``latent_dim``, ``levels``, ``signal_ndim``, ``sample_dtype``, ...),
        read from its JSON header with numpy and zipfile only.
    """
    import numpy as np

    with resources.as_file(_path(name)) as path, zipfile.ZipFile(path) as z:
        with z.open("header.npy") as f:
            header = np.lib.format.read_array(io.BytesIO(f.read()))
    return json.loads(header.tobytes().decode("utf-8"))["spec"]


def default_for(signal_ndim, channels):
    """The shipped model for signals of this kind, or None if none fits.

    Parameters
    ----------
    signal_ndim : {1, 2}
        1 for audio, 2 for images.
    channels : int
        Channels of the signal (1 for grey images and mono audio).

    Returns
    -------
    name : str or None
        ``rgb-16x`` for RGB images, ``stereo-5x`` / ``mono-5x`` for stereo /
        mono audio; for any other kind, the first shipped model (by name)
        made for it (e.g. a 1-channel image model for grey images); None if
        no shipped model has that dimensionality and channel count.
    """
    shipped = list_pretrained()
    preferred = _PREFERRED.get((signal_ndim, channels))
    if preferred in shipped:
        return preferred
    for name in shipped:
        spec = spec_of(name)
        if (spec["signal_ndim"], spec["in_channels"]) == (signal_ndim, channels):
            return name
    return None


def ladder_for(signal_ndim, channels):
    """Every shipped model for signals of this kind, the default first: the
    models a rate target chooses among when no model is named (the CLI)."""
    first = default_for(signal_ndim, channels)
    if first is None:
        return []
    keys = ("signal_ndim", "in_channels")
    same = [
        n
        for n in list_pretrained()
        if tuple(spec_of(n)[k] for k in keys)
        == (
            signal_ndim,
            channels,
        )
    ]
    return [first] + [n for n in same if n != first]


def load_pretrained(cls, name):
    """The shipped model ``name`` as a fitted, quiet (``verbose=0``) ``cls``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    available = list_pretrained()
    if name not in available:
        raise ValueError(
            f"unknown pretrained model {name!r}; available: {', '.join(available)}"
        )
    with resources.as_file(_path(name)) as path:
        model = cls.load(path)
    # The files record the verbosity they were trained with; a library call
    # must print nothing unless asked (the CLI turns progress on itself).
    model.verbose = 0
    return model
