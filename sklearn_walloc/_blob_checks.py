"""What a codec expects of a blob before decoding it.

The container (``_container``) checks a blob's own consistency; this module
checks it against the model that is to decode it: the format versions the
model reads, the fingerprint it records (with or without enhancement
channels), the layout it declares (signal kind, levels, latent bits and
channels, signal channels) and its size against ``max_values``. Every failure
is a ``ValueError`` naming what the blob declares and what the model has.
"""

import math

import numpy as np

from ._container import ENHANCED_VERSION, FINGERPRINT_SIZE, FORMAT_VERSION

__all__ = [
    "as_blob_list",
    "blob_versions",
    "check_blob",
    "check_fingerprint",
    "check_max_values",
    "fingerprint_of",
    "latent_channels",
]


def check_blob(est, b, max_values):
    """Refuse a blob whose declared layout this model cannot have made."""
    ndim = est.signal_ndim
    channels = b.signal_shape[ndim] if len(b.signal_shape) > ndim else 1
    versions = blob_versions(est)
    if b.version not in versions:
        raise ValueError(
            f"blob declares format version {b.version}, but this model reads "
            f"versions {', '.join(map(str, versions))} only"
        )
    check_fingerprint(est, b)
    # A finer gain may come with wider latents (1D in format 3, any signal
    # in format 4): from the model's bits up to 16, never without a gain.
    bits = est.latent_bits_
    wide = b.gain_steps > 0 and (ndim == 1 or b.version >= 4)
    if wide and bits <= b.latent_bits <= 16:
        bits = b.latent_bits
    expected = {
        "signal kind": (b.signal_ndim, ndim),
        "levels": (b.levels, est.levels),
        "latent_bits": (b.latent_bits, bits),
        "latent channels": (b.latent_shape[0], latent_channels(est, b)),
        "signal channels": (channels, est.n_channels_),
    }
    for name, (got, want) in expected.items():
        if got != want:
            raise ValueError(f"blob declares {name} {got}, but this model has {want}")
    n_values = math.prod(b.signal_shape)
    if n_values > max_values:
        raise ValueError(
            f"blob declares a signal of {n_values} values {b.signal_shape}, "
            f"more than max_values={max_values}; pass a larger max_values to "
            "decode it"
        )


def fingerprint_of(est, enhanced=False):
    # Hashing every weight costs ~1 ms a call, as much as coding a small
    # photo's latents; cached with the runtime modules, which every fit and
    # load reset.
    runtime = est.__dict__.setdefault("_runtime", {})
    key = f"fingerprint/{bool(enhanced)}"
    if key not in runtime:
        state = est.module_.state_dict()
        runtime[key] = est.spec_.fingerprint(state, enhanced=enhanced)
    fp = runtime[key]
    assert len(fp) == FINGERPRINT_SIZE
    return fp


def check_fingerprint(est, b):
    """Refuse a blob made by another model: blobs with enhancement channels
    (format 5) record the fingerprint of the model with them, the others
    that of the model without (unchanged by adding them)."""
    want = fingerprint_of(est, b.version == ENHANCED_VERSION)
    if b.fingerprint != want:
        raise ValueError(
            "blob was made by another model (fingerprint mismatch: "
            f"{b.fingerprint.hex()} != {want.hex()})"
        )


def latent_channels(est, b):
    """The latent channels blob ``b`` may declare: the model's, or in format
    5 the model's and 1 to ``enhancement_dim`` enhancement channels."""
    d = est.spec_.latent_dim
    if b.version == ENHANCED_VERSION and d < b.latent_shape[0] <= (
        d + est.spec_.enhancement_dim
    ):
        return b.latent_shape[0]
    return d


def blob_versions(est):
    """Blob format versions a model reads: its legacy version (1 marks periodic
    borders, 2 symmetric; the interlaced payload order), 3 and 4, and 5 if it
    has enhancement channels."""
    legacy = 1 if est.spec_.boundary == "periodization" else 2
    enhanced = (ENHANCED_VERSION,) if est.spec_.enhancement_dim else ()
    return (legacy, 3, FORMAT_VERSION, *enhanced)


def as_blob_list(blobs):
    if isinstance(blobs, (bytes, bytearray, memoryview)):
        raise ValueError(
            "decompress expects a list of blobs; wrap a single blob as [blob]"
        )
    if isinstance(blobs, str):
        raise ValueError("decompress expects a list of bytes blobs, got a str")
    try:
        return list(blobs)
    except TypeError:
        raise ValueError(
            f"decompress expects a list of bytes blobs, got {type(blobs).__name__}"
        ) from None


def check_max_values(max_values):
    """``max_values`` of ``decompress`` (None: no limit) as a number."""
    if max_values is None:
        return math.inf
    if (
        isinstance(max_values, bool)
        or not isinstance(max_values, (int, np.integer))
        or max_values < 1
    ):
        raise ValueError(
            f"max_values must be a positive int or None, got {max_values!r}"
        )
    return max_values
