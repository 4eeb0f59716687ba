"""Helpers shared by the test modules (imported, never collected)."""

from sklearn_walloc._container import pack_blob, unpack_blob


def repack(blob, payload=None, **fields):
    """``blob`` with some header fields (or the payload) changed, checksum valid."""
    b = unpack_blob(blob)
    kw = dict(
        signal_ndim=b.signal_ndim,
        signal_shape=b.signal_shape,
        dtype=b.dtype,
        levels=b.levels,
        latent_shape=b.latent_shape,
        latent_bits=b.latent_bits,
        fingerprint=b.fingerprint,
        version=b.version,
        gain_steps=b.gain_steps,
    )
    kw.update(fields)
    return pack_blob(b.payload if payload is None else payload, **kw)
