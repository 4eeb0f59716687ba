"""The byte container of one compressed signal: header, payload, checksum.

A blob is self-contained: it records what the signal looked like (kind, shape,
dtype), how its latents are laid out (grid shape, bits, wavelet levels), which model
made it (a 16-byte fingerprint), the signal's gain at the bottleneck (formats 3
and 4),
the entropy-coded payload, and a CRC32 over all of that. ``docs/format.md``
specifies it byte by byte.

Parsing is strict and bounded: every field is checked before it is used, sizes are
checked against fixed limits before anything is allocated, and every failure is a
``ValueError`` that names the problem.
"""

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ENHANCED_VERSION",
    "FINGERPRINT_SIZE",
    "FLAG_GAIN",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_GAIN_STEPS",
    "MAX_VALUES",
    "MIN_GAIN_STEPS",
    "VERSIONS",
    "Blob",
    "blob_info",
    "model_fingerprint",
    "pack_blob",
    "unpack_blob",
]

MAGIC = b"WLOC"
#: Version written: 4, version 3 with a signed gain field (coarser quantiser
#: steps as well as finer ones, for rate control). Version 3 introduced the
#: batched symbol order of the payload (any border rule) and the flags byte
#: (header byte 11, bit 0: a one-byte gain field after the fingerprint),
#: unsigned there. Versions 1 (periodic borders) and 2 (symmetric borders) share
#: the earlier interlaced order and the same header. All still decode.
#: Version 5 is version 4 whose latent grid holds more channels than the
#: model's ``latent_dim``: its enhancement channels (``_enhancement``),
#: fingerprinted with them; written only for such blobs.
FORMAT_VERSION = 4
ENHANCED_VERSION = 5
VERSIONS = (1, 2, 3, 4, 5)
#: Largest gain field: the latents of a blob were companded at ``2**(g/4)``
#: times the model's latent scale, ``g <= MAX_GAIN_STEPS`` (quarter octaves
#: of 1.5 dB, up to 90 dB finer).
MAX_GAIN_STEPS = 60
#: Smallest gain field (format 4): quantiser steps up to 2**10 times coarser.
MIN_GAIN_STEPS = -40
FINGERPRINT_SIZE = 16
#: Largest number of values a signal or a latent grid may declare.
MAX_VALUES = 2**31 - 1
_MAX_LEVELS = 15

# magic, version, signal_ndim, signal rank, latent rank, dtype code, latent_bits,
# levels, flags (reserved in versions 1 and 2). In version 3 each flag bit announces
# an optional fixed-size field, in bit order, between the fingerprint and the
# payload length (bit 0: the gain); a reader refuses bits it does not know.
_FIXED = struct.Struct("<4sBBBBBBBB")
_DIM = struct.Struct("<I")
# After the fingerprint, when flags has FLAG_GAIN: unsigned in format 3,
# signed in format 4.
_GAIN = {3: struct.Struct("<B"), 4: struct.Struct("<b"), 5: struct.Struct("<b")}
#: Flag bit of the gain field (versions 3 to 5); a reader refuses any other bit.
FLAG_GAIN = 0x01
_PAYLOAD_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MIN_SIZE = _FIXED.size + _PAYLOAD_LEN.size + FINGERPRINT_SIZE + _CRC.size

# Codes are part of the format: append, never renumber.
_DTYPE_CODES = {
    1: np.dtype("uint8"),
    2: np.dtype("int8"),
    3: np.dtype("<u2"),
    4: np.dtype("<i2"),
    5: np.dtype("<u4"),
    6: np.dtype("<i4"),
    7: np.dtype("<u8"),
    8: np.dtype("<i8"),
    9: np.dtype("<f2"),
    10: np.dtype("<f4"),
    11: np.dtype("<f8"),
    12: np.dtype("bool"),
}
_CODE_OF_DTYPE = {dt: code for code, dt in _DTYPE_CODES.items()}

# signal_ndim -> allowed ranks of the original signal (without the batch axis)
_SIGNAL_RANKS = {1: (1, 2), 2: (2, 3)}


@dataclass(frozen=True)
class Blob:
    """The parsed content of one blob.

    Attributes
    ----------
    version : int
        Format version of the blob.
    signal_ndim : int
        1 for 1D signals (audio, time series), 2 for 2D signals (images).
    signal_shape : tuple of int
        Shape of the original signal, channels last: ``(L,)``, ``(L, C)``,
        ``(H, W)`` or ``(H, W, C)``.
    dtype : numpy.dtype
        Dtype of the original signal.
    levels : int
        Wavelet packet levels ``J``; the latent grid is ``ceil(size / 2**J)`` per
        spatial axis.
    latent_shape : tuple of int
        ``(C_latent, L')`` or ``(C_latent, H', W')``.
    latent_bits : int
        Bits per latent (2 to 16).
    fingerprint : bytes
        16 bytes identifying the model that made the blob.
    payload : bytes
        The entropy-coded latents.
    gain_steps : int
        The latents were companded at ``2**(gain_steps/4)`` times the model's
        latent scale (0 for blobs of format 1 and 2; negative only in format 4).
    """

    version: int
    signal_ndim: int
    signal_shape: tuple
    dtype: np.dtype
    levels: int
    latent_shape: tuple
    latent_bits: int
    fingerprint: bytes
    payload: bytes
    gain_steps: int = 0


def model_fingerprint(arrays):
    """A 16-byte fingerprint of a model: truncated SHA-256 over its parameters.

    Parameters
    ----------
    arrays : iterable of array-like
        The model's parameters (and any configuration encoded as arrays), in a
        fixed order. Each contributes its dtype, shape and C-order bytes.

    Returns
    -------
    bytes
        ``FINGERPRINT_SIZE`` bytes.
    """
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(a.dtype.str.encode())
        digest.update(repr(a.shape).encode())
        digest.update(a.tobytes())
    return digest.digest()[:FINGERPRINT_SIZE]


def _prod(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def _check_layout(signal_ndim, signal_shape, levels, latent_shape, latent_bits):
    """Check header fields for plausibility and mutual consistency."""
    if signal_ndim not in _SIGNAL_RANKS:
        raise ValueError(f"signal kind must be 1 or 2, got {signal_ndim}")
    if len(signal_shape) not in _SIGNAL_RANKS[signal_ndim]:
        raise ValueError(
            f"a {signal_ndim}D signal must have rank in "
            f"{_SIGNAL_RANKS[signal_ndim]}, got shape {signal_shape}"
        )
    if len(latent_shape) != signal_ndim + 1:
        raise ValueError(
            f"a {signal_ndim}D signal needs a latent grid of rank {signal_ndim + 1}, "
            f"got {latent_shape}"
        )
    for name, dims in (("signal", signal_shape), ("latent", latent_shape)):
        if any(d < 1 or d >= 2**32 for d in dims):
            raise ValueError(f"{name} shape {dims} has a size outside [1, 2**32)")
        if _prod(dims) > MAX_VALUES:
            raise ValueError(f"{name} shape {dims} has more than {MAX_VALUES} values")
    if not 0 <= levels <= _MAX_LEVELS:
        raise ValueError(f"levels must be in [0, {_MAX_LEVELS}], got {levels}")
    if not 2 <= latent_bits <= 16:
        raise ValueError(f"latent_bits must be in [2, 16], got {latent_bits}")
    factor = 1 << levels
    expected = tuple(-(-d // factor) for d in signal_shape[:signal_ndim])
    if tuple(latent_shape[1:]) != expected:
        raise ValueError(
            f"latent grid {latent_shape} is inconsistent with signal shape "
            f"{signal_shape} at {levels} levels (expected spatial size {expected})"
        )


def _int_tuple(name, shape):
    try:
        dims = tuple(shape)
        if not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims
        ):
            raise TypeError
    except TypeError:
        raise ValueError(f"{name} must be a tuple of ints, got {shape!r}") from None
    return tuple(int(d) for d in dims)


def pack_blob(
    payload,
    *,
    signal_ndim,
    signal_shape,
    dtype,
    levels,
    latent_shape,
    latent_bits,
    fingerprint,
    version=FORMAT_VERSION,
    gain_steps=0,
):
    """Assemble one self-contained blob.

    Parameters
    ----------
    payload : bytes-like
        The entropy-coded latents (from ``encode_latents``).
    signal_ndim : {1, 2}
        Kind of signal.
    signal_shape : tuple of int
        Shape of the original signal, channels last, without a batch axis.
    dtype : dtype-like
        Dtype of the original signal (one of the 12 coded dtypes).
    levels : int
        Wavelet packet levels, 0 to 15.
    latent_shape : tuple of int
        Shape of the latent grid, channels first.
    latent_bits : int
        Bits per latent, 2 to 16.
    fingerprint : bytes
        ``FINGERPRINT_SIZE`` bytes identifying the model.
    version : {1, 2, 3, 4, 5}, default=FORMAT_VERSION
        The version byte; it must match the payload's symbol order: 3 to 5 for
        payloads of ``encode_latents(..., version=3)`` (the same order); 1
        (periodic borders) or 2 (symmetric borders) for the interlaced order of
        versions 1 and 2. Only versions 3 and 4 can record ``gain_steps``.
    gain_steps : int, default=0
        The gain applied to the latents before companding, in quarter octaves:
        ``MIN_GAIN_STEPS`` to ``MAX_GAIN_STEPS`` in version 4, 0 to
        ``MAX_GAIN_STEPS`` in version 3; versions 1 and 2 have no gain field
        and need 0. A gain of 0 is written as no field (flags 0).

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        If a field is invalid or the fields are inconsistent.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError(f"payload must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if not isinstance(fingerprint, (bytes, bytearray)) or len(fingerprint) != (
        FINGERPRINT_SIZE
    ):
        raise ValueError(f"fingerprint must be {FINGERPRINT_SIZE} bytes")
    try:
        code = _CODE_OF_DTYPE[np.dtype(dtype).newbyteorder("<")]
    except (TypeError, KeyError):
        raise ValueError(f"unsupported signal dtype {dtype!r}") from None
    signal_shape = _int_tuple("signal_shape", signal_shape)
    latent_shape = _int_tuple("latent_shape", latent_shape)
    for name, value in (
        ("signal_ndim", signal_ndim),
        ("levels", levels),
        ("latent_bits", latent_bits),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {value!r}")
    signal_ndim, levels, latent_bits = int(signal_ndim), int(levels), int(latent_bits)
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    if isinstance(gain_steps, bool) or not isinstance(gain_steps, (int, np.integer)):
        raise ValueError(f"gain_steps must be an int, got {gain_steps!r}")
    gain_steps = int(gain_steps)
    low, high = _gain_range(version)
    if not low <= gain_steps <= high:
        raise ValueError(
            f"gain_steps must be in [{low}, {high}] in format {version}, got "
            f"{gain_steps}"
        )
    _check_layout(signal_ndim, signal_shape, levels, latent_shape, latent_bits)
    parts = [
        _FIXED.pack(
            MAGIC,
            version,
            signal_ndim,
            len(signal_shape),
            len(latent_shape),
            code,
            latent_bits,
            levels,
            FLAG_GAIN if gain_steps else 0,
        ),
        *(_DIM.pack(d) for d in signal_shape),
        *(_DIM.pack(d) for d in latent_shape),
        bytes(fingerprint),
        _GAIN[version].pack(gain_steps) if gain_steps else b"",
        _PAYLOAD_LEN.pack(len(payload)),
        payload,
    ]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def unpack_blob(blob, expected_fingerprint=None):
    """Parse and check one blob.

    Parameters
    ----------
    blob : bytes, bytearray or memoryview
        A blob made by :func:`pack_blob`.
    expected_fingerprint : bytes, optional
        When given, the blob must have been made by this model.

    Returns
    -------
    Blob

    Raises
    ------
    ValueError
        If ``blob`` is not bytes-like, or is not a valid blob: wrong magic,
        unknown version, truncated or extended, bad checksum, implausible or
        inconsistent shapes, unknown dtype, a gain out of range, or
        a fingerprint mismatch.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError(f"a blob must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise ValueError("not a WaLLoC blob (wrong magic)")
    if len(blob) < _MIN_SIZE:
        raise ValueError(f"truncated blob: {len(blob)} bytes < {_MIN_SIZE}")
    fields = _FIXED.unpack_from(blob, 0)
    version, signal_ndim, signal_rank, latent_rank = fields[1:5]
    code, latent_bits, levels, reserved = fields[5:9]
    if version not in VERSIONS:
        raise ValueError(
            f"unsupported blob format version {version} (this sklearn-walloc "
            f"reads versions {', '.join(map(str, VERSIONS))})"
        )
    (crc,) = _CRC.unpack_from(blob, len(blob) - _CRC.size)
    if zlib.crc32(blob[: -_CRC.size]) != crc:
        raise ValueError("blob checksum mismatch (corrupted or truncated blob)")
    # From here the bytes are as written; still check every field, since a blob can
    # be forged with a consistent checksum.
    flags = reserved
    known = FLAG_GAIN if version >= 3 else 0
    if flags & ~known:
        raise ValueError(
            f"unknown header flags {flags:#04x} (reserved bits must be 0 in "
            f"format {version})"
        )
    if signal_rank > 3 or latent_rank > 3:
        raise ValueError(f"too many dimensions ({signal_rank}, {latent_rank})")
    if code not in _DTYPE_CODES:
        raise ValueError(f"unknown signal dtype code {code}")
    pos = _FIXED.size
    header_end = pos + _DIM.size * (signal_rank + latent_rank)
    gain_size = 1 if flags & FLAG_GAIN else 0
    if header_end + FINGERPRINT_SIZE + gain_size + _PAYLOAD_LEN.size + _CRC.size > len(
        blob
    ):
        raise ValueError("truncated blob header")
    dims = struct.unpack_from(f"<{signal_rank + latent_rank}I", blob, pos)
    signal_shape, latent_shape = tuple(dims[:signal_rank]), tuple(dims[signal_rank:])
    _check_layout(signal_ndim, signal_shape, levels, latent_shape, latent_bits)
    pos = header_end
    fingerprint = blob[pos : pos + FINGERPRINT_SIZE]
    pos += FINGERPRINT_SIZE
    gain_steps = 0
    if flags & FLAG_GAIN:
        (gain_steps,) = _GAIN[version].unpack_from(blob, pos)
        pos += 1
        # 0 is written as no field: one blob per signal, never two.
        low, high = _gain_range(version)
        if gain_steps == 0 or not low <= gain_steps <= high:
            raise ValueError(
                f"gain field {gain_steps} out of range [{low}, {high}] without 0 "
                f"(format {version})"
            )
    (length,) = _PAYLOAD_LEN.unpack_from(blob, pos)
    pos += _PAYLOAD_LEN.size
    available = len(blob) - _CRC.size - pos
    if length > available:
        raise ValueError(
            f"truncated blob: payload declares {length} bytes, {available} present"
        )
    if length < available:
        raise ValueError(f"extended blob: {available - length} trailing bytes")
    if expected_fingerprint is not None and fingerprint != bytes(expected_fingerprint):
        raise ValueError(
            "blob was made by another model (fingerprint mismatch: "
            f"{fingerprint.hex()} != {bytes(expected_fingerprint).hex()})"
        )
    return Blob(
        version=version,
        signal_ndim=signal_ndim,
        signal_shape=signal_shape,
        dtype=_DTYPE_CODES[code],
        levels=levels,
        latent_shape=latent_shape,
        latent_bits=latent_bits,
        fingerprint=fingerprint,
        payload=blob[pos : pos + length],
        gain_steps=gain_steps,
    )


def _gain_range(version):
    """Gains a blob of ``version`` can record, in quarter octaves."""
    if version >= 4:
        return MIN_GAIN_STEPS, MAX_GAIN_STEPS
    return 0, MAX_GAIN_STEPS if version == 3 else 0


def blob_info(blob):
    """What a blob holds, read from its header (no model needed).

    The blob is fully checked (magic, version, checksum, every field) but its
    payload is not decoded and its fingerprint not compared to any model.

    Parameters
    ----------
    blob : bytes-like
        One blob made by :meth:`WallocCodec.compress`.

    Returns
    -------
    info : dict
        ``format_version``, ``signal_ndim``, ``signal_shape``, ``dtype`` (str),
        ``levels``, ``latent_shape``, ``latent_bits``, ``fingerprint`` (hex),
        ``gain_steps`` (the latents' gain in quarter octaves, 0 without one),
        ``payload_bytes``, ``total_bytes`` and ``bits_per_sample`` (whole blob
        over the signal's scalar values).

    Raises
    ------
    ValueError
        If ``blob`` is not a valid blob.

    Examples
    --------
    >>> from sklearn_walloc.codec import WallocCodec, blob_info
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> codec = WallocCodec(latent_dim=2, levels=1, decoder_width=0,
    ...                     max_iter=0, random_state=0).fit(rng.random((4, 16, 16)))
    >>> info = blob_info(codec.compress(rng.random((1, 15, 16)))[0])
    >>> info["signal_shape"], info["latent_shape"], info["dtype"]
    ((15, 16), (2, 8, 8), 'float64')
    """
    b = unpack_blob(blob)
    total = len(bytes(blob))
    return {
        "format_version": b.version,
        "signal_ndim": b.signal_ndim,
        "signal_shape": b.signal_shape,
        "dtype": str(b.dtype),
        "levels": b.levels,
        "latent_shape": b.latent_shape,
        "latent_bits": b.latent_bits,
        "fingerprint": b.fingerprint.hex(),
        "gain_steps": b.gain_steps,
        "payload_bytes": len(b.payload),
        "total_bytes": total,
        "bits_per_sample": 8 * total / math.prod(b.signal_shape),
    }
