"""The ``.wlc`` file format (``_wlc``): strict parsing of header and metadata."""

import base64
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from sklearn_walloc import _wlc
from sklearn_walloc._wlc import MetadataTooLong, pack_file, read_file, unpack_file

BLOB = b"WLOC" + b"\0" * 60
DATA = Path(__file__).parent / "data"
ALPHA = b"\x89PNG alpha plane bytes"


def raw_wlc(text, blob=BLOB):
    """A .wlc file around any metadata text, with a valid checksum."""
    text = text.encode("utf-8")
    head = struct.pack("<4sB3sI", b"WLCF", 1, b"\0\0\0", len(text)) + text
    return head + struct.pack("<I", zlib.crc32(head)) + blob


def test_round_trip_and_bare_blob():
    meta = {"media": "audio", "sample_rate": 44100, "subtype": "PCM_24"}
    data = pack_file(BLOB, meta)
    assert unpack_file(data) == (BLOB, meta)
    assert unpack_file(BLOB) == (BLOB, {})
    # Version 1 files as the first release wrote them still read.
    assert unpack_file(raw_wlc('{"media":"image","mode":"RGB","name":"a.png"}'))[1] == {
        "media": "image",
        "mode": "RGB",
        "name": "a.png",
    }


def test_unknown_keys_are_kept():
    data = raw_wlc('{"media":"image","future":{"a":[1,2]}}')
    assert unpack_file(data)[1]["future"] == {"a": [1, 2]}


@pytest.mark.parametrize(
    "cut", [0, 4, 10, 12, 15, 20], ids=lambda n: f"first {n} bytes"
)
def test_truncated_files_are_refused(cut):
    data = pack_file(BLOB, {"media": "image", "mode": "RGB"})
    with pytest.raises(ValueError):
        unpack_file(data[:cut])


def test_corrupt_headers_are_refused():
    data = pack_file(BLOB, {"media": "audio", "sample_rate": 44100})
    for bad, message in (
        (b"XXXX" + data[4:], "magic"),
        (data[:14] + b"#" + data[15:], "checksum"),
        (data[:4] + b"\x03" + data[5:], "version"),
        (data[:5] + b"\x01" + data[6:], "reserved"),
        (data[:8] + struct.pack("<I", 2**32 - 1) + data[12:], "exceeds"),
    ):
        with pytest.raises(ValueError, match=message):
            unpack_file(bad)


@pytest.mark.parametrize(
    "text",
    [
        '{"sample_rate":2147483648}',
        '{"sample_rate":0}',
        '{"sample_rate":true}',
        '{"sample_rate":44100.0}',
        '{"orientation":9}',
        '{"media":"video"}',
        '{"name":""}',
        '{"icc_profile":"not base64!"}',
        '{"mode":"' + "X" * 100 + '"}',
        "[1, 2]",
        '"text"',
    ],
)
def test_invalid_metadata_is_refused(text):
    with pytest.raises(ValueError, match="invalid file metadata"):
        unpack_file(raw_wlc(text))


@pytest.mark.parametrize(
    "text",
    [
        "[" * 30000 + "]" * 30000,  # json would recurse into RecursionError
        '{"a":' * 9 + "1" + "}" * 9,
        '{"n":' + "9" * 5000 + "}",  # more digits than int() converts
        "{not json}",
    ],
    ids=["deep", "nine levels", "huge integer", "syntax"],
)
def test_hostile_json_gives_value_error(text):
    with pytest.raises(ValueError, match="invalid file metadata"):
        unpack_file(raw_wlc(text))


def test_nesting_inside_strings_does_not_count():
    meta = {"name": "[[[[[[[[[[[[{{{{{{{{{{.png", "media": "image"}
    assert unpack_file(pack_file(BLOB, meta))[1] == meta


def test_pack_checks_values_and_size(monkeypatch):
    with pytest.raises(ValueError, match="sample_rate"):
        pack_file(BLOB, {"sample_rate": 2**31})
    icc = base64.b64encode(bytes(600)).decode()
    monkeypatch.setattr(_wlc, "MAX_META_BYTES", 500)
    with pytest.raises(MetadataTooLong):
        pack_file(BLOB, {"icc_profile": icc})
    # The limit is on the JSON text exactly.
    text = json.dumps({"name": "x"}, separators=(",", ":"))
    monkeypatch.setattr(_wlc, "MAX_META_BYTES", len(text))
    pack_file(BLOB, {"name": "x"})
    with pytest.raises(MetadataTooLong):
        pack_file(BLOB, {"name": "xy"})


# ------------------------------------------------------------ version 2: sections
def test_files_without_sections_stay_version_1():
    # Older readers read every file that has no alpha.
    data = pack_file(BLOB, {"media": "image", "mode": "RGB"})
    assert data[4] == 1 and data[5] == 0
    meta = {"media": "image", "mode": "RGBA", "alpha": ALPHA}
    data = pack_file(BLOB, meta)
    assert data[4] == 2 and data[5] == 1
    assert unpack_file(data) == (BLOB, meta)
    assert "alpha" in meta  # packing does not consume the caller's dict


def test_golden_files_still_read():
    blob = (DATA / "golden_codec_v3_2d.bin").read_bytes()
    common = {"media": "image", "name": "golden.png", "format": "PNG"}
    # Version 1, as the command line wrote it before sections existed.
    v1 = (DATA / "golden_v1.wlc").read_bytes()
    assert unpack_file(v1) == (blob, {**common, "mode": "RGB"})
    assert pack_file(blob, {**common, "mode": "RGB"}) == v1
    # Version 2 with an alpha section: a 27 x 30 ramp stored as PNG.
    got, meta = unpack_file((DATA / "golden_v2_alpha.wlc").read_bytes())
    assert got == blob and meta["mode"] == "RGBA"
    from sklearn_walloc._media import _alpha_plane

    plane = _alpha_plane(meta["alpha"], (30, 27))
    ramp = (np.arange(30 * 27).reshape(30, 27) * 255 // (30 * 27 - 1)).astype(np.uint8)
    assert np.array_equal(plane, ramp)


def _v2():
    return pack_file(BLOB, {"media": "image", "mode": "RGBA", "alpha": ALPHA})


def test_truncated_sections_are_refused():
    data = _v2()
    start = data.index(b"ALPH")
    for cut in range(start, len(data) - len(BLOB)):
        with pytest.raises(ValueError, match="truncated WaLLoC file"):
            unpack_file(data[:cut])


def test_corrupt_sections_are_refused():
    data = _v2()
    start = data.index(b"ALPH")
    n = len(ALPHA)

    def section(tag=b"ALPH", payload=ALPHA, length=None):
        body = struct.pack("<4sI", tag, len(payload) if length is None else length)
        body += payload
        return body + struct.pack("<I", zlib.crc32(body))

    def with_count(count, *sections):
        head = bytearray(data[:start])
        head[5] = count
        text_end = len(head) - 4  # re-checksum the header for its new count
        head[text_end:] = struct.pack("<I", zlib.crc32(bytes(head[:text_end])))
        return bytes(head) + b"".join(sections) + BLOB

    flipped = bytearray(data)
    flipped[start + 8 + n // 2] ^= 1
    for bad, message in (
        (bytes(flipped), "checksum mismatch"),
        (with_count(1, section(tag=b"XTRA")), "unknown section"),
        (with_count(2, section(), section()), "appears twice"),
        (with_count(1, section(payload=b"")), "empty section"),
        (with_count(1, section(length=2**32 - 1)), "cut off"),
    ):
        with pytest.raises(ValueError, match=message):
            unpack_file(bad)
    # A section the header does not count is read as the blob, whose parser
    # (WallocCodec.decompress) refuses it for its wrong magic.
    uncounted = with_count(0)[: -len(BLOB)] + data[start:]
    assert unpack_file(uncounted)[0].startswith(b"ALPH")


def test_a_section_key_in_the_json_header_is_refused():
    with pytest.raises(ValueError, match="invalid file metadata: alpha"):
        unpack_file(raw_wlc('{"alpha":"AAAA"}'))
    with pytest.raises(ValueError, match="invalid file metadata: alpha"):
        pack_file(BLOB, {"alpha": "not bytes"})


def test_read_file_is_bounded(tmp_path, monkeypatch):
    # Not a WaLLoC file: only the first bytes are read (/dev/zero is endless).
    assert read_file("/dev/zero") == bytes(8)
    wlc = tmp_path / "x.wlc"
    wlc.write_bytes(_v2())
    assert read_file(wlc) == _v2()
    monkeypatch.setattr(_wlc, "MAX_FILE_BYTES", 64)
    with pytest.raises(ValueError, match="more than a WaLLoC file may hold"):
        read_file(wlc)
    # A stream has no size to check first: it is read up to the limit only.
    import os
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            try:
                f.write(_v2() * 100)
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed)
    writer.start()
    with pytest.raises(ValueError, match="more than 64 bytes"):
        read_file(fifo)
    writer.join()
