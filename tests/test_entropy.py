"""Tests of the integer-only latent entropy coder (``sklearn_walloc._entropy``)."""

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sklearn_walloc import _entropy
from sklearn_walloc._entropy import (
    decode_latents,
    empirical_entropy_bits,
    encode_latents,
    ideal_code_length_bits,
    latent_bound,
)


def _laplace_grid(rng, shape, bits, scale_frac=0.1):
    bound = latent_bound(bits)
    q = np.round(rng.laplace(0.0, bound * scale_frac + 0.3, size=shape))
    return np.clip(q, -bound, bound).astype(np.int32)


def _smooth_grid(rng, channels, height, width, bits=8):
    """Spatially correlated latents: channel 0 wide and smooth, later ones small."""
    bound = latent_bound(bits)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 0.6 * bound * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    out = [base + rng.normal(0, 2, (height, width))]
    for c in range(1, channels):
        out.append(np.abs(base) / (4 * c) * rng.laplace(0, 1, (height, width)))
    return np.clip(np.round(out), -bound, bound).astype(np.int32)


def _roundtrip(q, bits):
    payload = encode_latents(q, bits)
    assert isinstance(payload, bytes)
    assert len(payload) % 4 == 0
    out = decode_latents(payload, q.shape, bits)
    assert out.dtype == np.int32
    assert out.shape == q.shape
    np.testing.assert_array_equal(out, q)
    return payload


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
@pytest.mark.parametrize(
    "shape",
    [
        (1, 1, 1),
        (1, 1),
        (3, 1, 1),
        (1, 1, 9),
        (1, 9, 1),
        (2, 5, 7),
        (4, 17, 33),
        (12, 16, 16),
        (3, 1),
        (2, 2),
        (5, 101),
        (1, 64),
        (48, 4, 5),
        (48, 9),
    ],
)
def test_roundtrip_laplacian(shape, bits):
    rng = np.random.default_rng(hash((shape, bits)) % 2**32)
    _roundtrip(_laplace_grid(rng, shape, bits), bits)


@pytest.mark.parametrize("bits", [2, 3, 8, 12, 16])
def test_extremes(bits):
    bound = latent_bound(bits)
    shape = (3, 9, 13)
    for q in (
        np.full(shape, bound),
        np.full(shape, -bound),
        np.zeros(shape, dtype=np.int64),
        np.where(np.indices(shape).sum(0) % 2 == 0, bound, -bound),
        np.random.default_rng(bits).choice([-bound, bound], size=shape),
    ):
        _roundtrip(q.astype(np.int32), bits)
    # A constant grid costs almost nothing.
    assert len(encode_latents(np.zeros((12, 64, 64), np.int32), bits)) < 64


def test_wide_residuals_and_heavy_tails():
    """Residuals spanning the whole range exercise every token and raw-bit width."""
    rng = np.random.default_rng(0)
    bound = latent_bound(16)
    q = rng.integers(-bound, bound + 1, size=(2, 23, 31))
    _roundtrip(q, 16)
    q = np.round(rng.standard_cauchy((3, 20, 20)) * 50)
    _roundtrip(np.clip(q, -bound, bound).astype(np.int32), 16)


def test_input_forms():
    rng = np.random.default_rng(1)
    q = _laplace_grid(rng, (3, 6, 5), 8)
    ref = encode_latents(q, 8)
    # Other integer dtypes, float integral values and lists give the same payload.
    assert encode_latents(q.astype(np.int16), 8) == ref
    assert encode_latents(q.astype(np.float32), 8) == ref
    assert encode_latents(q.tolist(), 8) == ref
    assert encode_latents(q, np.int64(8)) == ref
    # Decoding accepts any bytes-like payload and shape as a list.
    np.testing.assert_array_equal(decode_latents(bytearray(ref), [3, 6, 5], 8), q)
    np.testing.assert_array_equal(decode_latents(memoryview(ref), (3, 6, 5), 8), q)


@pytest.mark.parametrize(
    ("q", "bits"),
    [
        (np.zeros((2, 3, 3)), 1),
        (np.zeros((2, 3, 3)), 17),
        (np.zeros((2, 3, 3)), 8.0),
        (np.zeros((2, 3, 3)), True),
        (np.zeros((2, 3, 3)) + 0.5, 8),
        (np.full((2, 3, 3), np.nan), 8),
        (np.full((2, 3, 3), 128), 8),
        (np.full((2, 3, 3), -128), 8),
        (np.full((2, 3, 3), 2), 2),
        (np.zeros((2, 0, 3)), 8),
        (np.zeros((0, 3)), 8),
        (np.zeros(5), 8),
        (np.zeros((1, 2, 3, 4)), 8),
        (np.array([["a"]]), 8),
    ],
)
def test_encode_rejects(q, bits):
    with pytest.raises(ValueError):
        encode_latents(q, bits)


@pytest.mark.parametrize(
    ("payload", "shape", "bits"),
    [
        ("abcd", (1, 1, 1), 8),
        (None, (1, 1, 1), 8),
        (b"", (1, 1, 1), 8),
        (b"abc", (1, 1, 1), 8),
        (b"abcd", (1, 0, 1), 8),
        (b"abcd", (1,), 8),
        (b"abcd", (1, 1, 1, 1), 8),
        (b"abcd", (2**16, 2**16, 2), 8),
        (b"abcd", (1.5, 2), 8),
        (b"abcd", "ab", 8),
        (b"abcd", (1, 1, 1), 20),
    ],
)
def test_decode_rejects_arguments(payload, shape, bits):
    with pytest.raises(ValueError):
        decode_latents(payload, shape, bits)


def _decode_or_value_error(payload, shape, bits):
    """Garbage must decode to a valid grid or raise ValueError, nothing else."""
    try:
        out = decode_latents(payload, shape, bits)
    except ValueError:
        return False
    bound = latent_bound(bits)
    assert out.shape == tuple(shape)
    assert out.dtype == np.int32
    assert out.min() >= -bound and out.max() <= bound
    return True


def test_decode_corrupted_payloads():
    rng = np.random.default_rng(2)
    q = _smooth_grid(rng, 3, 12, 12)
    payload = bytearray(encode_latents(q, 8))
    accepted = 0
    n_bits = 8 * len(payload)
    for bit in rng.choice(n_bits, size=min(n_bits, 150), replace=False):
        bad = bytearray(payload)
        bad[bit // 8] ^= 1 << (bit % 8)
        accepted += _decode_or_value_error(bytes(bad), q.shape, 8)
    for cut in range(4, len(payload), 4):
        accepted += _decode_or_value_error(bytes(payload[:cut]), q.shape, 8)
    for _ in range(100):
        junk = rng.integers(0, 256, size=4 * rng.integers(1, 40), dtype=np.uint8)
        accepted += _decode_or_value_error(junk.tobytes(), q.shape, 8)
        accepted += _decode_or_value_error(junk.tobytes(), (2, 3), 16)
    # The end marker rejects almost all of them.
    assert accepted < 5


def test_decode_wrong_shape_or_bits_is_value_error():
    rng = np.random.default_rng(3)
    q = _laplace_grid(rng, (4, 10, 10), 8)
    payload = encode_latents(q, 8)
    for shape, bits in [((4, 10, 11), 8), ((5, 10, 10), 8), ((4, 10, 10), 12)]:
        _decode_or_value_error(payload, shape, bits)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_roundtrip_property(data):
    bits = data.draw(st.sampled_from([2, 3, 5, 8, 11, 16]), label="bits")
    bound = latent_bound(bits)
    ndim = data.draw(st.sampled_from([2, 3]), label="ndim")
    shape = data.draw(
        hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=12),
        label="shape",
    )
    q = data.draw(
        hnp.arrays(np.int32, shape, elements=st.integers(-bound, bound)), label="q"
    )
    _roundtrip(q, bits)


def test_ideal_length_matches_coded_size():
    rng = np.random.default_rng(4)
    q = _smooth_grid(rng, 12, 48, 40)
    coded = 8 * len(encode_latents(q, 8))
    ideal = ideal_code_length_bits(q, 8)
    # Range coder overhead: a couple of words; fixed-point rounding: well under 1%.
    assert ideal <= coded <= 1.01 * ideal + 64


def test_context_model_beats_per_channel_entropy():
    rng = np.random.default_rng(5)
    q = _smooth_grid(rng, 12, 48, 40)
    assert 8 * len(encode_latents(q, 8)) < 0.95 * empirical_entropy_bits(q)


def test_payload_is_deterministic_and_batch_free():
    """The same grid always gives the same bytes; channels code in order."""
    rng = np.random.default_rng(6)
    q = _smooth_grid(rng, 5, 20, 20)
    assert encode_latents(q, 8) == encode_latents(q.copy(), 8)
    # Coding channel 0 alone yields a valid payload of its own (no global state).
    _roundtrip(q[:1], 8)


def test_tables_are_pinned_integers():
    raw = _entropy._TABLES_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == _entropy._TABLES_SHA256
    tables = _entropy._tables()
    assert tables.shape == (_entropy._N_TABLES, _entropy._N_TOKENS)
    assert tables.dtype.kind == "i"
    assert tables.min() >= 1
    assert np.all(tables.sum(axis=1) <= _entropy._TABLE_TOTAL)
    assert not tables.flags.writeable


def test_tables_regenerate():
    """The committed file is what the documented generator produces (to rounding)."""
    pytest.importorskip("scipy")
    fresh = _entropy._make_tables()
    assert np.abs(fresh - _entropy._tables()).max() <= 1


def test_tokenizer_inverse():
    z = np.arange(2 * latent_bound(16) + 1, dtype=np.int64)
    tok, nbits, extra = _entropy._tokenize(z)
    assert tok.max() < _entropy._N_TOKENS
    np.testing.assert_array_equal(_entropy._token_bits(tok), nbits)
    np.testing.assert_array_equal(_entropy._detokenize(tok, extra), z)
    assert np.all(extra < (1 << nbits))


def test_context_is_integer_log_bucket():
    a = np.arange(0, 300000, dtype=np.int64)
    expected = np.minimum(np.floor(2 * np.log2(a + 1.0)), _entropy._N_CONTEXTS - 1)
    np.testing.assert_array_equal(_entropy._context(a), expected)


@pytest.mark.parametrize("tail", [b"\0\0\0\0", b"\x01\0\0\0", b"\xff" * 4, b"\x07" * 8])
def test_words_after_the_payload_are_refused(tail, rng):
    # Blobs are canonical: the decoder re-encodes what it read and needs the
    # same words back, so words it never reads (after the end marker) count.
    for shape in [(2, 5, 7), (1, 1, 1), (3, 16)]:
        q = rng.integers(-9, 10, shape)
        payload = encode_latents(q, 8)
        np.testing.assert_array_equal(decode_latents(payload, shape, 8), q)
        with pytest.raises(ValueError, match="not the encoder's"):
            decode_latents(payload + tail, shape, 8)


# ----------------------------------------------------------------- format 3
@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 1), (2, 5, 7), (4, 17, 33), (5, 101)])
def test_every_version_round_trips(shape, version, rng):
    q = _laplace_grid(rng, shape, 8)
    payload = encode_latents(q, 8, version=version)
    np.testing.assert_array_equal(decode_latents(payload, shape, 8, version=version), q)


def test_versions_1_and_2_share_the_interlaced_order(rng):
    q = _smooth_grid(rng, 4, 20, 24)
    assert encode_latents(q, 8, version=1) == encode_latents(q, 8, version=2)


def test_format_3_codes_the_same_model_in_another_order(rng):
    # Same predictor, contexts, tokens, tables and mode choice: the same ideal
    # length, and a coded size within a few words of the interlaced order's.
    q = _smooth_grid(rng, 12, 48, 40)
    old, new = encode_latents(q, 8, version=2), encode_latents(q, 8)
    assert new != old
    assert ideal_code_length_bits(q, 8) == pytest.approx(
        ideal_code_length_bits(q, 8, version=2), rel=1e-6
    )
    assert abs(len(new) - len(old)) <= 16
    # A payload decodes only under the order it was written in.
    assert not np.array_equal(_decode_or_none(new, q.shape, 8, version=2), q)


def _decode_or_none(payload, shape, bits, version):
    try:
        return decode_latents(payload, shape, bits, version=version)
    except ValueError:
        return None


@pytest.mark.parametrize("version", [0, 6, "3", True, None])
def test_unknown_versions_are_refused(version):
    q = np.zeros((1, 2, 2), np.int32)
    with pytest.raises(ValueError, match="version"):
        encode_latents(q, 8, version=version)
    with pytest.raises(ValueError, match="version"):
        decode_latents(b"\0\0\0\0", (1, 2, 2), 8, version=version)


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_one_call_per_table_or_per_symbol_rows_is_the_same_code(bits, monkeypatch):
    """How the coder batches its constriction calls is not part of the format."""
    from sklearn_walloc import _entropy_batched

    rng = np.random.default_rng(bits)
    q = _smooth_grid(rng, 6, 33, 17, bits)
    if bits == 2:
        q = rng.integers(-1, 2, (6, 9, 9))
    payloads = []
    for rows in (0, 10**9):  # always one call per table; always rows per symbol
        monkeypatch.setattr(
            _entropy_batched, "_ROWS_PER_CALL", {"encode": rows, "decode": rows}
        )
        payloads.append(encode_latents(q, bits))
        np.testing.assert_array_equal(decode_latents(payloads[-1], q.shape, bits), q)
    assert payloads[0] == payloads[1]


def test_constriction_rows_per_symbol_match_each_table():
    """The documented equivalence the batched calls rely on, for every table."""
    import constriction

    models = constriction.stream.model
    rng = np.random.default_rng(0)
    n_valid = _entropy._n_valid_tokens(latent_bound(16))
    probs = _entropy._tables()[:, :n_valid].astype(np.float64)
    tab = np.repeat(np.arange(256), 8)
    sym = rng.integers(0, n_valid, tab.size).astype(np.int32)
    rows = constriction.stream.queue.RangeEncoder()
    rows.encode(sym, models.Categorical(perfect=False), probs[tab])
    each = constriction.stream.queue.RangeEncoder()
    for t in range(256):
        each.encode(sym[tab == t], models.Categorical(probs[t], perfect=False))
    np.testing.assert_array_equal(rows.get_compressed(), each.get_compressed())


# Payload digests written by the format-3 encoder before its speed-up (main at
# 4254ecd): the faster encoder must choose the same modes and tables and write
# the same bytes, not merely round-trip.
_FORMAT_3_DIGESTS = {
    "laplace-2": "19b497e69118de6c129981d474363f77",
    "laplace-5": "79de9984ee32ae4a49288c53ebdf3c44",
    "laplace-8": "a2ff4b38c76c801d2d01b6c5c6b46dfb",
    "laplace-12": "e90280eb60a7bc217177fc31d5587473",
    "laplace-16": "7c7e79ff02d81eec636f65d7978f7237",
    "smooth-8": "138a98bd5d16588f571699af5495fd91",
    "uniform-8": "321542b6cd509c119b8e47642fe15303",
    "1d-8": "2a4e0ef9eb1b90b44a4571265681e274",
    "single-8": "e7a5c5b3794e055e55a18caa4cab7b0d",
}


def _digest_case(name):
    kind, bits = name.rsplit("-", 1)
    bits = int(bits)
    if kind == "laplace":
        return _laplace_grid(np.random.default_rng(bits), (3, 17, 23), bits), bits
    if kind == "smooth":
        return _smooth_grid(np.random.default_rng(1), 6, 40, 52), bits
    if kind == "uniform":  # wide residuals: many tokens with raw bits
        k = latent_bound(bits)
        q = np.random.default_rng(2).integers(-k, k + 1, (4, 9, 31))
        return q.astype(np.int32), bits
    if kind == "1d":
        return _laplace_grid(np.random.default_rng(3), (5, 101), bits), bits
    return _laplace_grid(np.random.default_rng(4), (12, 1, 1), bits), bits


@pytest.mark.parametrize("name", sorted(_FORMAT_3_DIGESTS))
def test_format_3_bytes_match_the_reference_encoder(name):
    q, bits = _digest_case(name)
    payload = encode_latents(q, bits)
    assert hashlib.sha256(payload).hexdigest()[:32] == _FORMAT_3_DIGESTS[name]
    np.testing.assert_array_equal(decode_latents(payload, q.shape, bits), q)


def test_sized_cache_bounds_the_bytes_it_keeps():
    from sklearn_walloc._entropy import sized_cache

    calls = []

    @sized_cache(3000)
    def build(n, fill=0):
        calls.append((n, fill))
        return (np.full(n, fill, dtype=np.uint8), None)

    a = build(1000)
    assert build(1000) is a and calls == [(1000, 0)]  # a hit builds nothing
    build(1000, fill=1)  # keyword arguments are part of the key
    build(1000, 2)
    assert build.cache_len() == 3
    build(1000)  # most recent again: (1000, 1) is now the oldest
    build(500)  # 3500 bytes: the oldest goes
    assert build.cache_len() == 3
    build(1000, fill=1)
    assert calls[-1] == (1000, 1)
    build(10_000)  # larger than the budget alone: kept, everything else goes
    assert build.cache_len() == 1 and build(10_000)[0].size == 10_000


def test_sliced_prediction_equals_the_whole_pass():
    # Large passes are predicted in slices of positions (bounded memory);
    # every slice boundary must give the values of the whole pass.
    from sklearn_walloc import _entropy_batched as eb

    rng = np.random.default_rng(0)
    x = rng.integers(-40, 41, (5, 300 * 257)).astype(np.int32)
    shrink = np.asarray([8, 7, 6, 8, 5], np.int32)[:, None]
    lut = eb._luts(127)[3]

    def predict(step, size):
        pred = np.empty((len(x), step.pos.size), dtype=np.int32)
        ctx = np.empty_like(pred)
        for a, b, part in eb._slices(step, size):
            pred[:, a:b], ctx[:, a:b] = eb._predict(*eb._middle(x, part), shrink, lut)
        return pred, ctx

    for step in eb._plan(300, 257).steps:
        whole = predict(step, 1 << 30)
        sliced = predict(step, 1000)
        for a, b in zip(whole, sliced):
            np.testing.assert_array_equal(a, b)


def _pass_order(x, height, width):
    """Raster channels ``(C, H*W)`` as the decoder keeps them: rows in pass
    order, channels last, and the zero row."""
    from sklearn_walloc import _entropy_batched as eb

    plan = eb._decode_plan(height, width)
    out = np.zeros((height * width + 1, x.shape[0]), dtype=x.dtype)
    out[plan.raster] = x.T
    return out


@pytest.mark.parametrize("bits", [8, 16])  # int16 and int32 work types
@pytest.mark.parametrize("shape", [(1, 7), (5, 5), (33, 20), (64, 64)])
def test_decoder_prediction_equals_the_encoders(bits, shape, monkeypatch):
    # The decoder's prediction and contexts (channels last, pass order,
    # sliced or whole) are those of the encoder's _middle/_predict.
    from sklearn_walloc import _entropy_batched as eb

    bound = latent_bound(bits)
    rng = np.random.default_rng(bits)
    height, width = shape
    x = rng.integers(-bound, bound + 1, (6, height * width)).astype(np.int32)
    modes = rng.integers(0, 4, 6)
    dtype = eb._key_dtype(bound)
    layout = _pass_order(x.astype(dtype), height, width)
    rows = np.arange(6) * 32
    shrink = np.asarray(_entropy._SHRINK)[modes]
    lut = eb._luts(bound)[3]
    for slice_size in (1 << 30, 7):
        monkeypatch.setattr(eb, "_PREDICT_SLICE", slice_size)
        steps = zip(eb._plan(*shape).steps, eb._decode_plan(*shape).steps)
        for old, new in steps:
            pred, ctx = eb._predict(*eb._middle(x, old), shrink[:, None], lut)
            got_pred, got_keys = eb._decode_step_keys(
                layout, new, shrink.astype(dtype), eb._ctx_of_spread(bound), rows
            )
            np.testing.assert_array_equal(got_pred.T, pred)
            np.testing.assert_array_equal(got_keys.T, ctx + rows[:, None])


@pytest.mark.parametrize("bits", [2, 5, 8])
def test_value_table_equals_the_arithmetic(bits, monkeypatch):
    from sklearn_walloc import _entropy_batched as eb

    bound = latent_bound(bits)
    assert eb._value_lut(bound) is not None
    p, z = np.meshgrid(np.arange(-bound, bound + 1), np.arange(2 * bound + 1))
    pred = p.astype(eb._key_dtype(bound)).reshape(-1, 1)
    z = z.reshape(-1).astype(np.int32)
    table = eb._reconstruct(pred, z.copy(), bound)
    r = np.where(z % 2 == 0, z // 2, -(z + 1) // 2)
    np.testing.assert_array_equal(table, _entropy._wrap(p.reshape(-1) + r, bound))
    monkeypatch.setattr(eb, "_value_lut", lambda bound: None)
    np.testing.assert_array_equal(eb._reconstruct(pred, z.copy(), bound), table)


@pytest.mark.parametrize("bits", [8, 12])
def test_decoding_in_slices_gives_the_same_grid(bits, monkeypatch):
    # Large passes are predicted a slice of positions at a time: slices of 5
    # positions (and border positions cut across them) decode the same grid.
    from sklearn_walloc import _entropy_batched as eb

    q = _laplace_grid(np.random.default_rng(bits), (4, 23, 37), bits, 0.4)
    payload = encode_latents(q, bits)
    monkeypatch.setattr(eb, "_PREDICT_SLICE", 5)
    np.testing.assert_array_equal(decode_latents(payload, q.shape, bits), q)
    np.testing.assert_array_equal(decode_latents(payload, q.shape, bits), q)


@pytest.mark.parametrize("bits", [8, 12])  # the value table, and the arithmetic
def test_corrupted_payloads_with_raw_bits_raise_value_errors(bits):
    # Wide residuals: every pass has tokens with raw bits, runs of one table
    # and the per-symbol rows; altered, cut or extended payloads are refused.
    rng = np.random.default_rng(bits)
    q = _laplace_grid(rng, (4, 23, 37), bits, 0.4)
    payload = encode_latents(q, bits)
    accepted = 0
    n_bits = 8 * len(payload)
    for bit in rng.choice(n_bits, size=60, replace=False):
        bad = bytearray(payload)
        bad[bit // 8] ^= 1 << (bit % 8)
        accepted += _decode_or_value_error(bytes(bad), q.shape, bits)
    for cut in range(4, len(payload), max(4, len(payload) // 40 * 4)):
        accepted += _decode_or_value_error(payload[:cut], q.shape, bits)
    assert accepted < 3
    with pytest.raises(ValueError, match="corrupted"):
        decode_latents(payload + payload[-4:], q.shape, bits)
