"""Latents round to the same integers whatever the thread count, batch or
process: ties are decided on the float64 reference (``_ties``)."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sklearn_walloc import WallocCodec, _ties
from sklearn_walloc._signal import _canonical_layout, pad_to_multiple
from sklearn_walloc._ties import exact_rounding


@pytest.fixture(scope="module")
def stereo():
    return WallocCodec.from_pretrained("stereo-5x")


@pytest.fixture(scope="module")
def rgb():
    return WallocCodec.from_pretrained("rgb-16x")


def _noise_clips(n=3, length=20000, amp=30000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, length, 2)) * amp
    return list(x.clip(-32768, 32767).astype(np.int16))


def _model_input(codec, signals):
    arrays, _ = codec._read(signals)
    x = pad_to_multiple(arrays[0], 2**codec.levels)
    return _canonical_layout(torch.from_numpy(x))


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _codec(name):
    if name.endswith(".npz"):  # periodic (format 1) models
        return WallocCodec.load(os.path.join(DATA, name))
    return WallocCodec.from_pretrained(name)


@pytest.mark.parametrize(
    "name, shapes",
    [
        ("stereo-5x", [(700, 2), (3000, 2)]),
        ("mono-5x", [(1100,), (2400,)]),
        # Odd sizes, short axes (under 16 positions: not solved; under 9: all
        # edge rows), a corner solved along both axes.
        ("rgb-16x", [(150, 304, 3), (37, 96, 3), (131, 517, 3)]),
        ("rgb-4x", [(70, 90, 3), (9, 140, 3)]),
        ("grey-16x", [(129, 200), (20, 300)]),
        ("golden_codec_model.npz", [(30, 52, 3), (6, 20, 3)]),
        ("golden_codec_model_1d.npz", [(90, 2), (12, 2)]),
    ],
)
@pytest.mark.parametrize("whole", [False, True])
def test_windowed_reference_equals_the_whole_reference_everywhere(
    name, shapes, whole, monkeypatch
):
    # The recomputation of a latent from the samples it reads must give the
    # float64 encoder's value at every position, borders and solved ends
    # included (and so must the whole reference, taken for so many).
    if not whole:
        monkeypatch.setattr(_ties, "_WHOLE", float("inf"))
    codec = _codec(name)
    module, fused, _ = codec._runtime_model()
    ties = exact_rounding(fused, module)
    rng = np.random.default_rng(1)
    for shape in shapes:
        x = _model_input(codec, list(rng.integers(0, 256, (2, *shape))))
        with torch.no_grad():
            full = ties.reference(x.double())
        grid = [range(g) for g in full.shape[2:]]
        index = torch.tensor(
            [(n, *p) for n in range(2) for p in itertools.product(*grid)]
        )
        got = ties.values(x, index)
        want = full[(index[:, 0], slice(None), *index[:, 1:].T)]
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-9)
        # Any subset, in any order, gives the same values (to float64 noise:
        # the products' summation order follows the batch).
        pick = torch.from_numpy(rng.permutation(len(index))[: len(index) // 7])
        sub = ties.values(x, index[pick]).numpy()
        np.testing.assert_allclose(sub, got[pick].numpy(), rtol=0, atol=1e-12)
        # The tolerance bounds the float32 encoder's distance to it, widely.
        with torch.no_grad():
            err = (fused(x).double() - full).abs().flatten(1).amax(1)
        assert bool((err < ties.tolerance(x) / 3).all())


@pytest.mark.parametrize("name", ["rgb-16x", "grey-16x"])
def test_image_latents_near_ties_are_decided_by_the_reference(name):
    # Exact rounding is the rounding of the float64 reference at every
    # latent, including the ones whose float32 value lies near a tie: moved
    # by a quarter of the tolerance (more than any summation order moves
    # them), plain rounding changes some, exact rounding none.
    codec = WallocCodec.from_pretrained(name)
    module, fused, _ = codec._runtime_model()
    ties = exact_rounding(fused, module)
    bn = module.bottleneck
    rng = np.random.default_rng(4)
    shape = (136, 200, 3) if name.startswith("rgb") else (320, 400)
    x = _model_input(codec, list(rng.integers(0, 256, (2, *shape), dtype=np.uint8)))
    with torch.no_grad():
        z = fused(x)
        want = torch.round(bn.compand(ties.reference(x.double())))
    step = (ties.tolerance(x) / 4).float().view(-1, 1, 1, 1)
    sign = torch.sign(torch.randn(z.shape, generator=torch.Generator().manual_seed(0)))
    plain_flips = 0
    for moved in (z, z + step * sign, z - step * sign):
        plain_flips += int((torch.round(bn.compand(moved)) != want).sum())
        assert torch.equal(ties.round(bn, moved, x), want.float())
    assert plain_flips > 0


@pytest.mark.parametrize(
    "name, shape",
    [
        ("rgb-16x", (150, 304, 3)),
        ("rgb-16x", (37, 96, 3)),
        ("grey-16x", (129, 200)),
        ("golden_codec_model.npz", (30, 52, 3)),  # periodic borders
    ],
)
def test_first_stage_reference(name, shape):
    # Images' near ties take the dense stage in float64 over the first
    # stage's float32 output: within that output's float32 error of the
    # float64 encoder at every position it serves (edge rows included), the
    # solved ends left to the samples' reference; the float32 encoder stays
    # within the narrower FIRST_TOL_UNITS band of it.
    codec = _codec(name)
    module, fused, _ = codec._runtime_model()
    ties = exact_rounding(fused, module)
    rng = np.random.default_rng(6)
    x = _model_input(codec, list(rng.integers(0, 256, (2, *shape))))
    with torch.no_grad():
        z, first = _ties.latents_and_first(fused, x)
        full = ties.reference(x.double())
    assert first is not None
    grid = [range(g) for g in full.shape[2:]]
    index = torch.tensor([(n, *p) for n in range(2) for p in itertools.product(*grid)])
    served = ties._first_serves(index.numpy(), full.shape[2:])
    assert served.mean() > 0.5
    got = ties.values(x, index, first)
    want = full[(index[:, 0], slice(None), *index[:, 1:].T)]
    scale = float(full.abs().max())
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5 * scale)
    np.testing.assert_array_equal(got[~served].numpy(), ties.values(x, index[~served]))
    # The first stage's reference differs from the samples' (float32 first
    # stage) where it serves, so the two are told apart.
    assert not np.array_equal(got[served].numpy(), want[served].numpy())
    z32 = z[(index[:, 0], slice(None), *index[:, 1:].T)].double()
    tol = ties.tolerance(x)[index[:, 0]][:, None] * (
        _ties.FIRST_TOL_UNITS / _ties.TOL_UNITS
    )
    assert bool(((z32 - got).abs()[served] < tol[served] / 3).all())


def test_image_rounding_with_the_first_stage_is_its_reference(rgb):
    # Rounding with ``first`` is the rounding of the first stage's reference
    # at every latent, float32 values moved by a quarter of its band (more
    # than the dense stage's summation order moves them) included.
    module, fused, _ = rgb._runtime_model()
    ties = exact_rounding(fused, module)
    bn = module.bottleneck
    rng = np.random.default_rng(7)
    x = _model_input(rgb, list(rng.integers(0, 256, (2, 136, 200, 3), dtype=np.uint8)))
    with torch.no_grad():
        z, first = _ties.latents_and_first(fused, x)
    grid = z.shape[2:]
    index = torch.tensor(
        [(n, *p) for n in range(2) for p in itertools.product(*map(range, grid))]
    )
    ref = ties.values(x, index, first)
    want = torch.round(bn.compand(ref)).reshape(2, *grid, -1).movedim(-1, 1)
    step = (ties.tolerance(x) * _ties.FIRST_TOL_UNITS / _ties.TOL_UNITS / 4).float()
    sign = torch.sign(torch.randn(z.shape, generator=torch.Generator().manual_seed(1)))
    flips = 0
    for moved in (
        z,
        z + step.view(-1, 1, 1, 1) * sign,
        z - step.view(-1, 1, 1, 1) * sign,
    ):
        flips += int((torch.round(bn.compand(moved)) != want).sum())
        got = ties.round(bn, moved, x, first=first)
        assert torch.equal(got, want.float())
    assert flips > 0


@pytest.mark.parametrize("gained", [False, True])
def test_rounding_ignores_float32_noise_in_the_latents(stereo, gained):
    # Latents moved as another summation order could move them (plain
    # rounding then changes some) round to the same integers, and the gain
    # decisions stay (one clip is quiet: it takes the gain search path).
    module, fused, _ = stereo._runtime_model()
    ties = exact_rounding(fused, module)
    x = _model_input(stereo, _noise_clips(length=20000) + _noise_clips(1, 20000, 30, 1))
    search = stereo._gain_search() if gained else None
    outs = []
    flips = 0
    for scale in (0.0, 1.0, -1.0):

        class Noisy:  # the same encoder, its float32 output jittered
            __dict__ = fused.__dict__

            def __call__(self, t):
                z = fused(t)
                # A quarter of the tolerance: more than any summation order
                # moves a latent, and less than the tolerance's margin.
                step = (ties.tolerance(t) * scale / 4).float().view(-1, 1, 1)
                g = torch.Generator().manual_seed(1)
                return z + step * torch.sign(torch.randn(z.shape, generator=g))

        noisy = Noisy()
        with torch.no_grad():  # plain rounding would not hold
            u = module.bottleneck.compand(fused(x)), module.bottleneck.compand(noisy(x))
        flips += int((torch.round(u[0]) != torch.round(u[1])).sum())
        with torch.no_grad():
            if gained:
                outs.append(module.encode_gained(x, noisy, 40, search))
            else:
                outs.append((module.encode_fused(x, noisy),))
    assert flips > 0
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


def _compress_with_threads(codec, signals, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return codec.compress(signals)
    finally:
        torch.set_num_threads(before)


def test_blobs_do_not_depend_on_the_thread_count(stereo, rgb):
    clips = _noise_clips()  # loud noise: 1 latent in ~20,000 sat on a tie
    quiet = _noise_clips(2, 5000, 40, 2)  # the gain search path
    rng = np.random.default_rng(3)
    photos = list(rng.integers(0, 256, (3, 120, 200, 3), dtype=np.uint8))
    # Odd sizes (padded), a short axis, solved ends and corners.
    odd = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(131, 259), (21, 300)]]
    grey = WallocCodec.from_pretrained("grey-16x")
    cases = ((stereo, clips), (stereo, quiet), (rgb, photos), (grey, odd))
    for codec, signals in cases:
        one = _compress_with_threads(codec, signals, 1)
        two = _compress_with_threads(codec, signals, 2)
        assert one == two
        # Alone or in a batch: the same bytes.
        assert _compress_with_threads(codec, signals[:1], 2)[0] == one[0]


_CHILD = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from sklearn_walloc import WallocCodec, _ties
rng = np.random.default_rng(0)
x = (rng.standard_normal((2, 20000, 2)) * 30000).clip(-32768, 32767)
blobs = WallocCodec.from_pretrained("stereo-5x").compress(list(x.astype(np.int16)))
photos = list(rng.integers(0, 256, (2, 96, 136, 3), dtype=np.uint8))
blobs += WallocCodec.from_pretrained("rgb-16x").compress(photos)
sys.stdout.buffer.write(b"".join(blobs))
"""


def test_blobs_are_the_same_in_processes_with_other_thread_counts():
    env = {**os.environ, "TQDM_DISABLE": "1"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = [
        subprocess.run(
            [sys.executable, "-c", _CHILD, str(n)],
            capture_output=True,
            check=True,
            timeout=300,
            env=env,
            cwd=root,
        ).stdout
        for n in (1, 2)
    ]
    assert outs[0] and outs[0] == outs[1]


def test_deadzone_round_widens_only_the_zero_bin():
    u = torch.tensor(
        [-2.6, -1.5001, -0.71, -0.69, -0.2, 0.0, 0.49, 0.51, 0.69, 0.71, 1.2]
    )
    want = torch.tensor([-3.0, -2.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    assert torch.equal(_ties.deadzone_round(u.clone(), 0.2), want)
    assert torch.equal(_ties.deadzone_round(u.clone(), 0.0), torch.round(u))
    # Distances to the nearest boundary: +-0.7 below 1 (0.5 is none), k + 1/2 above.
    d = _ties.tie_distance(torch.tensor([0.5, 0.68, -0.73, 1.45, -2.5]), 0.2)
    assert torch.allclose(d, torch.tensor([0.2, 0.02, 0.03, 0.05, 0.0]), atol=1e-6)


def test_deadzone_near_its_boundary_is_decided_by_the_reference():
    # As test_image_latents_near_ties_are_decided_by_the_reference, with the
    # deadzone's boundary at +-0.7 (moved entries flip under plain rounding).
    codec = WallocCodec.from_pretrained("rgb-16x")
    module, fused, _ = codec._runtime_model()
    ties = exact_rounding(fused, module)
    bn = module.bottleneck
    rng = np.random.default_rng(5)
    x = _model_input(
        codec, list(rng.integers(0, 256, (2, 136, 200, 3), dtype=np.uint8))
    )
    gain = torch.full((2,), 0.25, dtype=torch.float64)  # many latents near 0
    with torch.no_grad():
        z = fused(x)
        ref = bn.compand(ties.reference(x.double()) * 0.25)
        want = _ties.deadzone_round(ref, 0.2)
    # The reference has latents near the deadzone's boundary, not only near 0.
    assert int(((ref.abs() - 0.7).abs() < 0.05).sum()) > 100
    tol = ties.tolerance(x)
    step = (tol / 4).float().view(-1, 1, 1, 1)
    sign = torch.sign(torch.randn(z.shape, generator=torch.Generator().manual_seed(2)))
    flips = 0
    for moved in (z, z + step * sign, z - step * sign):
        plain = _ties.deadzone_round(bn.compand(moved * 0.25), 0.2)
        flips += int((plain != want).sum())
        assert torch.equal(ties.round(bn, moved, x, gain, tol, 0.2), want.float())
    assert flips > 0


def test_image_blobs_with_a_gain_use_the_deadzone(rgb):
    # A gain's blob rounds with the deadzone (fewer nonzero latents, fewer
    # bytes); a gainless blob still decodes to inverse_transform(transform(X)).
    from sklearn_walloc import _rate
    from sklearn_walloc.datasets import load_photos

    photo = load_photos(split="holdout")[0][:128, :160]
    codec = WallocCodec.from_pretrained("rgb-16x").set_params(gain=-4)
    (with_dz,) = codec.compress([photo])
    before = _rate.IMAGE_DEADZONE
    _rate.IMAGE_DEADZONE = 0.0
    try:
        (plain,) = codec.compress([photo])
    finally:
        _rate.IMAGE_DEADZONE = before
    assert len(with_dz) < len(plain)
    gainless = codec.set_params(gain=0)
    y = gainless.decompress(gainless.compress([photo]), restore=False)[0]
    want = gainless.inverse_transform(gainless.transform([photo]))[0]
    assert np.array_equal(y, want)
