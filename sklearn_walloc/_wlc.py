"""The ``.wlc`` file: one codec blob behind a small header of JSON metadata.

The blob (``_container``) records everything the codec needs; this header keeps
what a file on disk needs besides (sample rate, image mode, sample subtype,
orientation, colour profile, original name), and version 2 adds sections for
bytes kept exactly beside the blob (the alpha plane). Layout and keys:
``docs/format.md``, "The .wlc file". Parsing is strict: every length is bounded
before it is used, the header and each section are checksummed, and the metadata
is checked key by key, so a hostile file gives a ``ValueError`` and never a deep
recursion or a huge allocation; :func:`read_file` reads a file with bounded
memory.
"""

import base64
import binascii
import json
import os
import stat
import struct
import zlib

__all__ = [
    "FILE_MAGIC",
    "FILE_VERSION",
    "MAX_FILE_BYTES",
    "MAX_META_BYTES",
    "MetadataTooLong",
    "pack_file",
    "read_file",
    "unpack_file",
]

FILE_MAGIC = b"WLCF"
#: Newest version: 2 adds sections (the alpha plane) between the header and the
#: blob. A file without sections is written as version 1, which every reader
#: reads.
FILE_VERSION = 2
VERSIONS = (1, 2)
BLOB_MAGIC = b"WLOC"
#: Largest metadata (UTF-8 JSON bytes) a ``.wlc`` file may hold.
MAX_META_BYTES = 1 << 16
# The metadata written today is one flat object; a little room is left for
# future keys, but no reader needs deep nesting (and json recurses on it).
_MAX_DEPTH = 8
_MAX_RATE = 2**31 - 1  # libsndfile and WAV headers take a C int
# magic, version, section count (version 2; zero in 1), reserved (zero), meta length
_HEAD = struct.Struct("<4sBB2sI")
_CRC = struct.Struct("<I")
_SECTION = struct.Struct("<4sI")  # tag, payload length
#: Section tags and the metadata key each restores, in file order.
_SECTIONS = {b"ALPH": "alpha"}
#: Largest ``.wlc`` file (or bare blob) :func:`read_file` reads.
MAX_FILE_BYTES = 1 << 30


class MetadataTooLong(ValueError):
    """The metadata does not fit in :data:`MAX_META_BYTES`."""


def _text(value, limit):
    return isinstance(value, str) and 0 < len(value) <= limit


def _int_in(lo, hi):
    def check(value):
        return type(value) is int and lo <= value <= hi

    return check


def _base64(value):
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# Known keys and what their values must be; unknown keys are kept and ignored so
# newer writers can add optional keys without a version bump.
_KEYS = {
    "media": lambda v: v in ("image", "audio"),
    "name": lambda v: _text(v, 4096),
    "format": lambda v: _text(v, 16),
    "mode": lambda v: _text(v, 16),
    "sample_rate": _int_in(1, _MAX_RATE),
    "subtype": lambda v: _text(v, 32),
    "orientation": _int_in(1, 8),
    "icc_profile": _base64,
    # Sections, not JSON: JSON cannot hold bytes, so a header that names one is
    # refused.
    "alpha": lambda v: isinstance(v, bytes) and 0 < len(v) < 2**32,
}


def _check_meta(meta):
    if not isinstance(meta, dict):
        raise ValueError("invalid file metadata: not an object")
    for key, valid in _KEYS.items():
        if key in meta and not valid(meta[key]):
            value = repr(meta[key])
            if len(value) > 40:
                value = value[:37] + "..."
            raise ValueError(f"invalid file metadata: {key}={value}")


def _depth(text):
    """Deepest nesting of arrays and objects in JSON ``text`` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def pack_file(blob, meta):
    """Wrap one blob in the ``.wlc`` file header.

    Parameters
    ----------
    blob : bytes
        A blob from :meth:`WallocCodec.compress`.
    meta : dict
        JSON-serialisable metadata; the known keys (``media``, ``name``,
        ``format``, ``mode``, ``sample_rate``, ``subtype``, ``orientation``,
        ``icc_profile``) must hold valid values. ``alpha`` (bytes), if present,
        is written as a section of its own (file version 2), not as JSON.

    Returns
    -------
    bytes

    Raises
    ------
    MetadataTooLong
        If the metadata takes more than :data:`MAX_META_BYTES` bytes.
    ValueError
        If a known key holds an invalid value.
    """
    _check_meta(meta)
    sections = [(tag, meta[key]) for tag, key in _SECTIONS.items() if key in meta]
    meta = {k: v for k, v in meta.items() if k not in _SECTIONS.values()}
    text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(text) > MAX_META_BYTES:
        raise MetadataTooLong(
            f"file metadata takes {len(text)} bytes, more than {MAX_META_BYTES}"
        )
    version = 2 if sections else 1
    head = _HEAD.pack(FILE_MAGIC, version, len(sections), b"\0\0", len(text)) + text
    parts = [head, _CRC.pack(zlib.crc32(head))]
    for tag, payload in sections:
        section = _SECTION.pack(tag, len(payload)) + payload
        parts += [section, _CRC.pack(zlib.crc32(section))]
    parts.append(bytes(blob))
    return b"".join(parts)


def read_file(path):
    """The bytes of a ``.wlc`` file or bare blob, read with bounded memory.

    The magic is checked on the first bytes before anything else is read, and a
    file larger than :data:`MAX_FILE_BYTES` is refused (by its size when it has
    one, while reading otherwise: devices and pipes), so ``/dev/zero`` or a
    huge file costs neither time nor memory. Any other file gives only its first
    8 bytes, enough to tell what it is.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    data : bytes

    Raises
    ------
    ValueError
        If a WaLLoC file is larger than :data:`MAX_FILE_BYTES`.
    OSError
        If the file cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:4] not in (FILE_MAGIC, BLOB_MAGIC):
            return head
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and st.st_size > MAX_FILE_BYTES:
            raise ValueError(
                f"{st.st_size} bytes, more than a WaLLoC file may hold "
                f"({MAX_FILE_BYTES})"
            )
        chunks, total = [head], len(head)
        while chunk := f.read(1 << 20):  # devices and pipes: no size to trust
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise ValueError(
                    f"more than {MAX_FILE_BYTES} bytes, the most a WaLLoC file may hold"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def unpack_file(data):
    """Split a ``.wlc`` file into (blob, metadata); a bare blob gives ``{}``.

    The blob itself is not checked here (``WallocCodec.decompress`` does).

    Parameters
    ----------
    data : bytes

    Returns
    -------
    blob : bytes
    meta : dict

    Raises
    ------
    ValueError
        If the file header or its metadata is invalid.
    """
    data = bytes(data)
    if data[:4] == BLOB_MAGIC:
        return data, {}
    if data[:4] != FILE_MAGIC:
        raise ValueError("not a WaLLoC file (wrong magic)")
    if len(data) < _HEAD.size + _CRC.size:
        raise ValueError("truncated WaLLoC file header")
    _, version, n_sections, reserved, n = _HEAD.unpack_from(data)
    if version not in VERSIONS:
        raise ValueError(f"unsupported WaLLoC file version {version}")
    if reserved != b"\0\0" or (version == 1 and n_sections):
        raise ValueError("reserved bytes of the file header must be zero")
    if n > MAX_META_BYTES:
        raise ValueError(f"file metadata length {n} exceeds {MAX_META_BYTES}")
    end = _HEAD.size + n
    if end + _CRC.size > len(data):
        raise ValueError("truncated WaLLoC file header")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        raise ValueError("file header checksum mismatch (corrupted file)")
    try:
        text = data[_HEAD.size : end].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"invalid file metadata: {e}") from None
    if _depth(text) > _MAX_DEPTH:
        raise ValueError(f"invalid file metadata: nested deeper than {_MAX_DEPTH}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:  # ValueError: also huge integers
        raise ValueError(f"invalid file metadata: {e}") from None
    _check_meta(meta)
    if any(key in meta for key in _SECTIONS.values()):
        raise ValueError("invalid file metadata: a section key in the JSON header")
    offset = end + _CRC.size
    for _ in range(n_sections):
        key, payload, offset = _section(data, offset, meta)
        meta[key] = payload
    return data[offset:], meta


def _section(data, offset, meta):
    """One section at ``offset``: (metadata key, payload, next offset)."""
    if offset + _SECTION.size > len(data):
        raise ValueError("truncated WaLLoC file: a section header is cut off")
    tag, n = _SECTION.unpack_from(data, offset)
    key = _SECTIONS.get(tag)
    if key is None:
        raise ValueError(f"unknown section {tag!r} in WaLLoC file")
    if key in meta:
        raise ValueError(f"section {tag!r} appears twice in WaLLoC file")
    if n == 0:
        raise ValueError(f"empty section {tag!r} in WaLLoC file")
    end = offset + _SECTION.size + n
    if end + _CRC.size > len(data):
        raise ValueError(f"truncated WaLLoC file: section {tag!r} is cut off")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[offset:end]) != crc:
        raise ValueError(f"section {tag!r} checksum mismatch (corrupted file)")
    return key, data[offset + _SECTION.size : end], end + _CRC.size
