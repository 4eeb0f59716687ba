"""The ``.wlc`` file format (``_wlc``): strict parsing of header and metadata."""

import base64
import json
import struct
import zlib

import pytest

from sklearn_walloc import _wlc
from sklearn_walloc._wlc import MetadataTooLong, pack_file, unpack_file

BLOB = b"WLOC" + b"\0" * 60


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
        (data[:4] + b"\x02" + data[5:], "version"),
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
