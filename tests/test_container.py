"""Tests of the blob container (``sklearn_walloc._container``) and golden blobs.

The golden blobs in ``tests/data`` pin the format: they must decode identically
forever. They were written once by ``_write_golden()`` (run this file as a script
to see how; never regenerate them to make a test pass).
"""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_walloc._container import (
    FINGERPRINT_SIZE,
    FLAG_GAIN,
    FORMAT_VERSION,
    MAGIC,
    MAX_GAIN_STEPS,
    MIN_GAIN_STEPS,
    Blob,
    model_fingerprint,
    pack_blob,
    unpack_blob,
)
from sklearn_walloc._entropy import decode_latents, encode_latents

DATA = Path(__file__).parent / "data"
FP = bytes(range(FINGERPRINT_SIZE))

# name -> (signal_ndim, signal_shape, dtype, levels, latent_bits)
GOLDEN = {
    "golden_2d": (2, (128, 120, 3), "uint8", 3, 8),
    "golden_1d": (1, (200, 2), "int16", 2, 12),
}
# Format 3 (gain field): name -> (fields as above, gain_steps)
GOLDEN_V3 = {"golden_v3_1d": ((1, (200, 2), "int16", 2, 8), 6)}


def _fields(**over):
    fields = {
        "signal_ndim": 2,
        "signal_shape": (30, 17, 3),
        "dtype": np.uint8,
        "levels": 3,
        "latent_shape": (12, 4, 3),
        "latent_bits": 8,
        "fingerprint": FP,
    }
    fields.update(over)
    return fields


def _reseal(body):
    """Recompute the checksum: forge a blob whose only defence is field checks."""
    return body + struct.pack("<I", zlib.crc32(body))


SMALL = pack_blob(b"\x01\x02\x03\x04\x05\x06\x07\x08", **_fields())


def test_roundtrip_fields():
    payload = b"payload!" * 3
    blob = pack_blob(payload, **_fields())
    assert blob.startswith(MAGIC)
    out = unpack_blob(blob, expected_fingerprint=FP)
    assert isinstance(out, Blob)
    assert out == Blob(4, 2, (30, 17, 3), np.dtype(np.uint8), 3, (12, 4, 3), 8, FP,
                       payload, 0)  # fmt: skip
    for version in (1, 2):
        old = unpack_blob(pack_blob(payload, **_fields(), version=version))
        assert old.version == version and old.payload == payload
        assert old.gain_steps == 0
        # The header layout is the same in every version: only the version byte.
        new = pack_blob(payload, **_fields(), version=version)
        assert new[:4] + new[5:-4] == blob[:4] + blob[5:-4]
    with pytest.raises(AttributeError):
        out.payload = b""  # frozen
    assert unpack_blob(bytearray(blob)) == out
    assert unpack_blob(memoryview(blob)) == out


@pytest.mark.parametrize(
    "fields",
    [
        _fields(signal_ndim=1, signal_shape=(1000,), latent_shape=(4, 125)),
        _fields(signal_ndim=1, signal_shape=(1001, 2), latent_shape=(4, 126)),
        _fields(signal_shape=(1, 1), latent_shape=(1, 1, 1), dtype="float64"),
        _fields(levels=0, signal_shape=(5, 7), latent_shape=(3, 5, 7), dtype=">f4"),
        _fields(latent_bits=16, dtype=bool),
    ],
)
def test_roundtrip_layouts(fields):
    blob = pack_blob(b"", **fields)
    out = unpack_blob(blob)
    assert out.signal_shape == fields["signal_shape"]
    assert out.latent_shape == fields["latent_shape"]
    assert out.dtype == np.dtype(fields["dtype"]).newbyteorder("<")
    assert out.payload == b""


@pytest.mark.parametrize(
    "over",
    [
        {"signal_ndim": 3},
        {"signal_shape": (30, 17, 3, 1)},
        {"signal_shape": (30,)},
        {"signal_shape": (0, 17, 3)},
        {"signal_shape": (2**32, 1, 1), "latent_shape": (12, 2**29, 1)},
        {"signal_shape": (2**16, 2**16, 1), "latent_shape": (12, 2**13, 2**13)},
        {"latent_shape": (12, 4, 4)},
        {"latent_shape": (12, 4)},
        {"latent_shape": (0, 4, 3)},
        {"latent_bits": 1},
        {"latent_bits": 17},
        {"levels": -1},
        {"levels": 16},
        {"levels": 3.0},
        {"dtype": "complex64"},
        {"dtype": object},
        {"fingerprint": FP[:-1]},
        {"fingerprint": "x" * 16},
        {"signal_shape": (30.0, 17, 3)},
        {"signal_shape": None},
    ],
)
def test_pack_rejects(over):
    with pytest.raises(ValueError):
        pack_blob(b"", **_fields(**over))


def test_pack_rejects_payload_type():
    with pytest.raises(ValueError):
        pack_blob("text", **_fields())


@pytest.mark.parametrize("obj", [None, "WLOC", 3, [1, 2], np.zeros(8, np.uint8)])
def test_unpack_rejects_non_bytes(obj):
    with pytest.raises(ValueError, match="must be bytes"):
        unpack_blob(obj)


def test_unpack_named_errors():
    body = SMALL[:-4]
    cases = {
        "magic": b"WLOX" + SMALL[4:],
        "version": _reseal(body[:4] + b"\x06" + body[5:]),
        "checksum": SMALL[:-1] + bytes([SMALL[-1] ^ 1]),
        "truncated": SMALL[:20],
        "extended": _reseal(body + b"\x00"),
        "flags": _reseal(body[:11] + b"\x02" + body[12:]),
        "reserved": _reseal(body[:4] + b"\x02" + body[5:11] + b"\x01" + body[12:]),
        "dtype": _reseal(body[:8] + b"\x63" + body[9:]),
        "dimensions": _reseal(body[:6] + b"\x07" + body[7:]),
        "inconsistent": _reseal(body[:28] + struct.pack("<I", 99) + body[32:]),
    }
    for what, blob in cases.items():
        with pytest.raises(ValueError, match=what):
            unpack_blob(blob)
    with pytest.raises(ValueError, match="another model"):
        unpack_blob(SMALL, expected_fingerprint=b"\xff" * 16)


GAINED = pack_blob(b"\x01\x02\x03\x04\x05\x06\x07\x08", **_fields(), gain_steps=9)


def test_gain_field_round_trip():
    # Format 3: flag bit 0 announces one byte after the fingerprint; a gain of 0
    # is no field (the layout of formats 1 and 2, flags 0).
    assert unpack_blob(SMALL).gain_steps == 0
    assert len(SMALL) == len(pack_blob(b"\x00" * 8, **_fields(), version=2))
    assert SMALL[11] == 0 and GAINED[11] == FLAG_GAIN
    for gain in (1, 7, MAX_GAIN_STEPS):
        blob = pack_blob(b"abc", **_fields(), gain_steps=gain)
        assert unpack_blob(blob).gain_steps == gain
        assert len(blob) == len(pack_blob(b"abc", **_fields())) + 1
    at = len(GAINED) - 4 - 8 - 8 - 1  # crc, payload, payload length, gain
    assert GAINED[at - FINGERPRINT_SIZE : at] == FP and GAINED[at] == 9
    forged = _reseal(GAINED[:at] + bytes([3]) + GAINED[at + 1 : -4])
    assert unpack_blob(forged).gain_steps == 3


@pytest.mark.parametrize(
    "over",
    [
        {"gain_steps": MAX_GAIN_STEPS + 1},
        {"gain_steps": MIN_GAIN_STEPS - 1},
        {"gain_steps": -1, "version": 3},
        {"gain_steps": 1.0},
        {"gain_steps": True},
        {"gain_steps": 1, "version": 2},
        {"gain_steps": 1, "version": 1},
    ],
)
def test_pack_rejects_bad_gain(over):
    with pytest.raises(ValueError, match="gain_steps"):
        pack_blob(b"", **_fields(**over))


def test_unpack_rejects_bad_gain_fields():
    at = len(GAINED) - 4 - 8 - 8 - 1
    body = GAINED[:-4]
    # Format 4: a signed byte in [MIN_GAIN_STEPS, MAX_GAIN_STEPS] without 0;
    # format 3: unsigned in [1, MAX_GAIN_STEPS].
    bad = {4: (0, MAX_GAIN_STEPS + 1, 127, 256 + MIN_GAIN_STEPS - 1, 128), 3: (0, 255)}
    for version, gains in bad.items():
        for gain in gains:
            forged = body[:4] + bytes([version]) + body[5:at]
            forged = _reseal(forged + bytes([gain]) + body[at + 1 :])
            with pytest.raises(ValueError, match="gain field"):
                unpack_blob(forged)
    # The same byte means a coarser gain in format 4.
    forged = _reseal(body[:at] + bytes([256 + MIN_GAIN_STEPS]) + body[at + 1 :])
    assert unpack_blob(forged).gain_steps == MIN_GAIN_STEPS
    # Unknown flag bits, and the gain flag in formats 1 and 2.
    for flags in (0x02, 0x80):
        with pytest.raises(ValueError, match="flags"):
            unpack_blob(_reseal(body[:11] + bytes([flags | 1]) + body[12:]))
    for version in (1, 2):
        forged = _reseal(body[:4] + bytes([version]) + body[5:])
        with pytest.raises(ValueError, match="reserved"):
            unpack_blob(forged)
    # The flag without its byte: everything after shifts, and the blob fails.
    small = SMALL[:-4]
    with pytest.raises(ValueError):
        unpack_blob(_reseal(small[:11] + b"\x01" + small[12:]))


def test_unpack_payload_length_field():
    body = SMALL[:-4]
    at = len(body) - 8 - 8  # the uint64 before the 8-byte payload
    for length, what in ((9, "truncated"), (2**63, "truncated"), (7, "extended")):
        forged = _reseal(body[:at] + struct.pack("<Q", length) + body[at + 8 :])
        with pytest.raises(ValueError, match=what):
            unpack_blob(forged)


def test_fuzz_truncation_every_length():
    for n in range(len(SMALL)):
        with pytest.raises(ValueError):
            unpack_blob(SMALL[:n])


def test_fuzz_extension():
    for extra in (b"\x00", b"\x00" * 4, b"WLOC", SMALL):
        with pytest.raises(ValueError):
            unpack_blob(SMALL + extra)


def test_fuzz_every_bit_flip():
    for bit in range(8 * len(SMALL)):
        bad = bytearray(SMALL)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ValueError):
            unpack_blob(bytes(bad))


def test_fuzz_forged_checksums():
    """Random header bytes behind a valid checksum: ValueError or a valid Blob."""
    rng = np.random.default_rng(0)
    body = bytearray(SMALL[:-4])
    for _ in range(3000):
        bad = bytearray(body)
        for pos in rng.integers(4, len(bad), size=rng.integers(1, 4)):
            bad[pos] = rng.integers(0, 256)
        try:
            out = unpack_blob(_reseal(bytes(bad)))
        except ValueError:
            continue
        assert len(out.payload) == 8
        assert np.prod(out.signal_shape) < 2**31
        assert np.prod(out.latent_shape) < 2**31


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    for blob in (data, MAGIC + data, SMALL[:12] + data):
        with pytest.raises(ValueError):
            unpack_blob(blob)


@settings(max_examples=100, deadline=None)
@given(
    ndim=st.sampled_from([1, 2]),
    size=st.lists(st.integers(1, 5000), min_size=3, max_size=3),
    channels=st.integers(1, 64),
    latent_dim=st.integers(1, 64),
    levels=st.integers(0, 6),
    bits=st.integers(2, 16),
    with_channels=st.booleans(),
    payload=st.binary(max_size=64),
)
def test_property_roundtrip(
    ndim, size, channels, latent_dim, levels, bits, with_channels, payload
):
    spatial = tuple(size[:ndim])
    signal_shape = (*spatial, channels) if with_channels else spatial
    latent_shape = (latent_dim, *(-(-d // 2**levels) for d in spatial))
    fields = _fields(
        signal_ndim=ndim,
        signal_shape=signal_shape,
        latent_shape=latent_shape,
        levels=levels,
        latent_bits=bits,
    )
    out = unpack_blob(pack_blob(payload, **fields), expected_fingerprint=FP)
    assert (out.signal_shape, out.latent_shape) == (signal_shape, latent_shape)
    assert (out.levels, out.latent_bits, out.payload) == (levels, bits, payload)


def test_model_fingerprint():
    a = [np.arange(6.0).reshape(2, 3), np.ones(2, np.float32)]
    fp = model_fingerprint(a)
    assert isinstance(fp, bytes) and len(fp) == FINGERPRINT_SIZE
    assert model_fingerprint([x.copy() for x in a]) == fp
    assert model_fingerprint([a[0].reshape(3, 2), a[1]]) != fp
    assert model_fingerprint([a[0].astype(np.float32), a[1]]) != fp
    b = [a[0].copy(), a[1].copy()]
    b[0][0, 0] = np.nextafter(0.0, 1.0)
    assert model_fingerprint(b) != fp


def test_forged_blob_with_garbage_payload():
    """A consistent checksum over garbage latents still fails cleanly."""
    rng = np.random.default_rng(1)
    for _ in range(100):
        junk = rng.integers(0, 256, size=4 * rng.integers(1, 30), dtype=np.uint8)
        blob = pack_blob(junk.tobytes(), **_fields())
        out = unpack_blob(blob)
        try:
            q = decode_latents(out.payload, out.latent_shape, out.latent_bits)
        except ValueError:
            continue
        assert q.shape == out.latent_shape


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_blobs_decode(name):
    blob = (DATA / f"{name}.bin").read_bytes()
    expected = np.load(DATA / f"{name}.npy", allow_pickle=False)
    signal_ndim, signal_shape, dtype, levels, bits = GOLDEN[name]
    out = unpack_blob(blob, expected_fingerprint=model_fingerprint([expected]))
    assert out.version == 1
    assert (out.signal_ndim, out.signal_shape, out.levels) == (
        signal_ndim,
        signal_shape,
        levels,
    )
    assert (out.dtype, out.latent_bits) == (np.dtype(dtype), bits)
    q = decode_latents(out.payload, out.latent_shape, out.latent_bits, version=1)
    np.testing.assert_array_equal(q, expected)
    # The encoder is deterministic too: today's encoder writes the same bytes.
    assert encode_latents(expected, bits, version=1) == out.payload


@pytest.mark.parametrize("name", sorted(GOLDEN_V3))
def test_golden_v3_blobs_decode(name):
    blob = (DATA / f"{name}.bin").read_bytes()
    expected = np.load(DATA / f"{name}.npy", allow_pickle=False)
    (signal_ndim, signal_shape, dtype, levels, bits), gain = GOLDEN_V3[name]
    out = unpack_blob(blob, expected_fingerprint=model_fingerprint([expected]))
    assert (out.version, out.gain_steps) == (3, gain)
    assert (out.signal_ndim, out.signal_shape, out.levels) == (
        signal_ndim,
        signal_shape,
        levels,
    )
    assert (out.dtype, out.latent_bits) == (np.dtype(dtype), bits)
    q = decode_latents(out.payload, out.latent_shape, out.latent_bits)
    np.testing.assert_array_equal(q, expected)
    assert (
        pack_blob(
            encode_latents(expected, bits),
            signal_ndim=signal_ndim,
            signal_shape=signal_shape,
            dtype=dtype,
            levels=levels,
            latent_shape=q.shape,
            latent_bits=bits,
            fingerprint=model_fingerprint([expected]),
            gain_steps=gain,
            version=3,
        )
        == blob
    )


def _write_golden_v3_gain():
    """Write the format-3 golden blobs with a gain field (kept for the record)."""
    assert FORMAT_VERSION == 3
    rng = np.random.default_rng(20261127)
    for name, ((ndim, shape, dtype, levels, bits), gain) in GOLDEN_V3.items():
        q = np.clip(
            np.round(rng.laplace(0, 40, (4, 50)).cumsum(axis=1) / 6), -127, 127
        ).astype(np.int32)
        blob = pack_blob(
            encode_latents(q, bits),
            signal_ndim=ndim,
            signal_shape=shape,
            dtype=dtype,
            levels=levels,
            latent_shape=q.shape,
            latent_bits=bits,
            fingerprint=model_fingerprint([q]),
            gain_steps=gain,
        )
        np.save(DATA / f"{name}.npy", q, allow_pickle=False)
        (DATA / f"{name}.bin").write_bytes(blob)


def _write_golden():
    """Write the golden blobs (done once; kept for the record)."""
    rng = np.random.default_rng(20240601)
    yy, xx = np.mgrid[0:16, 0:15]
    base = 90 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    chans = [base + rng.normal(0, 3, base.shape)]
    chans += [np.abs(base) / (3 * c) * rng.laplace(0, 1, base.shape) for c in (1, 2)]
    chans += [rng.laplace(0, 2, base.shape) for _ in range(9)]
    sources = {
        "golden_2d": np.clip(np.round(chans), -127, 127).astype(np.int32),
        "golden_1d": np.clip(
            np.round(rng.laplace(0, 300, (4, 50)).cumsum(axis=1) / 4), -2047, 2047
        ).astype(np.int32),
    }
    DATA.mkdir(exist_ok=True)
    for name, q in sources.items():
        signal_ndim, signal_shape, dtype, levels, bits = GOLDEN[name]
        blob = pack_blob(
            encode_latents(q, bits),
            signal_ndim=signal_ndim,
            signal_shape=signal_shape,
            dtype=dtype,
            levels=levels,
            latent_shape=q.shape,
            latent_bits=bits,
            fingerprint=model_fingerprint([q]),
        )
        np.save(DATA / f"{name}.npy", q, allow_pickle=False)
        (DATA / f"{name}.bin").write_bytes(blob)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_blobs_of_format_3_decode(name):
    # The same latents as the version-1 golden blobs, in the batched order of
    # format 3: pins that order byte for byte.
    blob = (DATA / f"{name}_v3.bin").read_bytes()
    expected = np.load(DATA / f"{name}.npy", allow_pickle=False)
    _, signal_shape, dtype, _, bits = GOLDEN[name]
    out = unpack_blob(blob, expected_fingerprint=model_fingerprint([expected]))
    assert out.version == 3
    assert (out.signal_shape, out.dtype, out.latent_bits) == (
        signal_shape,
        np.dtype(dtype),
        bits,
    )
    q = decode_latents(out.payload, out.latent_shape, out.latent_bits, version=3)
    np.testing.assert_array_equal(q, expected)
    assert encode_latents(expected, bits) == out.payload
    # The header is the version-1 golden header but for the version byte.
    old = (DATA / f"{name}.bin").read_bytes()
    header = len(blob) - len(out.payload) - 4
    assert blob[:4] + blob[5:header] == old[:4] + old[5:header]


def _write_golden_v3():
    """Write the format-3 golden blobs (done once; kept for the record)."""
    for name, (signal_ndim, signal_shape, dtype, levels, bits) in GOLDEN.items():
        q = np.load(DATA / f"{name}.npy", allow_pickle=False)
        blob = pack_blob(
            encode_latents(q, bits, version=3),
            signal_ndim=signal_ndim,
            signal_shape=signal_shape,
            dtype=dtype,
            levels=levels,
            latent_shape=q.shape,
            latent_bits=bits,
            fingerprint=model_fingerprint([q]),
            version=3,
        )
        (DATA / f"{name}_v3.bin").write_bytes(blob)


if __name__ == "__main__":
    if not all((DATA / f"{n}.bin").exists() for n in GOLDEN):
        _write_golden()
    if not all((DATA / f"{n}_v3.bin").exists() for n in GOLDEN):
        _write_golden_v3()
    if not all((DATA / f"{n}.bin").exists() for n in GOLDEN_V3):
        _write_golden_v3_gain()
