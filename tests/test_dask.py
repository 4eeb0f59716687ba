"""Dask: lazy transform/compress on dask collections, streaming fit, a grid
search on a dask.distributed cluster, and a worker that dies mid-run."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from sklearn_walloc import SignalStream, WallocCodec, WallocTransformer, _streaming

da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes, one thread each."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            worker_dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def photos(small_photos):
    """12 equal-sized crops of real photos, uint8 RGB."""
    return np.stack(
        [
            p[y : y + 48, x : x + 64]
            for p in small_photos
            for y, x in ((0, 0), (8, 16), (16, 8))
        ]
    )


@pytest.fixture(scope="module")
def codec(photos):
    return WallocCodec(latent_dim=12, levels=3, max_iter=0, random_state=0).fit(photos)


def test_transform_is_lazy_and_equals_in_memory(codec, photos):
    X = da.from_array(photos, chunks=(5, 24, 64, 3))  # split along rows too
    Z = codec.transform(X)
    assert isinstance(Z, da.Array)
    assert Z.chunks[0] == (5, 5, 2) and Z.dtype == np.float32
    Z_mem = codec.transform(photos)
    assert Z.shape == Z_mem.shape
    # Keys name the input: another array must not reuse this one's results.
    assert codec.transform(da.from_array(photos[::-1], chunks=5)).name != Z.name
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(Z.compute(), Z_mem)
        R = codec.inverse_transform(Z)
        assert isinstance(R, da.Array)
        np.testing.assert_array_equal(R.compute(), codec.inverse_transform(Z_mem))


def test_flat_rows_and_grey_batches(photos):
    flat = photos.reshape(len(photos), -1)
    t = WallocTransformer(
        latent_dim=8, levels=2, signal_shape=photos.shape[1:], max_iter=0
    ).fit(flat)
    grey = photos[..., 1]
    g = WallocTransformer(latent_dim=4, levels=2, max_iter=0).fit(grey)
    with dask.config.set(scheduler="sync"):
        Zf = t.transform(da.from_array(flat, chunks=(7, 1000)))
        np.testing.assert_array_equal(Zf.compute(), t.transform(flat))
        np.testing.assert_array_equal(
            t.inverse_transform(Zf).compute(),
            t.inverse_transform(t.transform(flat)),
        )
        # (n, H, W) in, (n, h, w, latent_dim) out: a new axis.
        Zg = g.transform(da.from_array(grey, chunks=4))
        assert Zg.shape == (len(grey), 12, 16, 4)
        np.testing.assert_array_equal(Zg.compute(), g.transform(grey))


def test_compress_on_local_cluster_equals_in_memory_byte_for_byte(
    client, codec, photos
):
    X = da.from_array(photos, chunks=(5, -1, -1, -1))
    bag = codec.compress(X)
    assert isinstance(bag, db.Bag) and bag.npartitions == 3
    blobs = bag.compute()
    assert blobs == codec.compress(photos)
    # decompress: a bag of blobs in, a bag of signals out, in order.
    signals = codec.decompress(db.from_sequence(blobs, npartitions=4), restore=False)
    assert isinstance(signals, db.Bag)
    np.testing.assert_array_equal(
        np.stack(signals.compute()), codec.decompress(blobs, restore=False)
    )
    restored = codec.decompress(bag, restore=True).compute()
    assert restored[0].dtype == np.uint8


def test_a_bag_decompress_error_names_the_blob_by_its_index_in_the_bag(codec, photos):
    blobs = codec.compress(photos[:6])
    blobs[4] = blobs[4][:-5]  # partition 1 of 2, its item 1
    bag = codec.decompress(db.from_sequence(blobs, npartitions=2))
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match=r"^blobs\[4\]: "):
            bag.compute()
        # Valid bags still decode in order, whatever the partitions.
        bag = db.from_sequence(blobs[:4], npartitions=3)
        np.testing.assert_array_equal(
            np.stack(codec.decompress(bag).compute()), codec.decompress(blobs[:4])
        )


def test_audio_blobs_on_the_cluster_equal_in_memory_byte_for_byte(client):
    # Workers run one thread each, this process more: 1 latent in ~20,000 of
    # loud noise used to sit on a rounding tie and differ (see _ties).
    codec = WallocCodec.from_pretrained("stereo-5x")
    rng = np.random.default_rng(0)
    loud = rng.standard_normal((4, 20000, 2)) * 30000
    quiet = rng.standard_normal((4, 20000, 2)) * 30  # the gain search path
    clips = list(np.concatenate([loud, quiet]).clip(-32768, 32767).astype(np.int16))
    bag = codec.compress(db.from_sequence(clips, npartitions=4))
    assert bag.compute() == codec.compress(clips)


def test_a_bag_of_signals_of_different_sizes_compresses(client, codec, photos):
    signals = [photos[i, : 40 + i, : 50 + 2 * i] for i in range(6)]
    bag = codec.compress(db.from_sequence(signals, npartitions=3))
    assert bag.compute() == codec.compress(signals)


def test_the_model_is_one_key_of_the_graph(client, codec, photos):
    X = da.from_array(photos, chunks=(2, -1, -1, -1))  # 6 tasks
    model_bytes = len(pickle.dumps(codec))
    for lazy in (codec.transform(X), codec.compress(X)):
        graph = dict(lazy.__dask_graph__())
        sizes = [len(pickle.dumps(v)) for v in graph.values()]
        # Once, not once per task: no other task carries the weights.
        assert sum(s > model_bytes / 2 for s in sizes) == 1
    codec.compress(X).compute()

    def model_keys(dask_worker):
        return sum(str(k).startswith("walloc-walloccodec") for k in dask_worker.data)

    # Each worker that ran a task holds the model once.
    assert set(client.run(model_keys).values()) <= {0, 1}


class _DiesOnce(WallocCodec):
    """Kills the worker process that first compresses with it (a crash, not an
    exception): dask must rerun the lost tasks on a new worker."""

    def compress(self, X):
        marker = self.marker_
        if not isinstance(X, np.ndarray) or os.path.exists(marker):
            return super().compress(X)
        with open(marker, "x"):
            pass
        os._exit(1)


def test_a_worker_crash_neither_loses_nor_duplicates_blobs(client, photos, tmp_path):
    dying = _DiesOnce(latent_dim=12, levels=3, max_iter=0, random_state=0)
    dying.fit(photos)
    dying.marker_ = str(tmp_path / "died")
    expected = WallocCodec.compress(dying, photos)
    blobs = dying.compress(da.from_array(photos, chunks=3)).compute(retries=1)
    assert os.path.exists(dying.marker_)  # a worker did die
    assert blobs == expected
    client.wait_for_workers(2, timeout=60)


def test_grid_search_runs_on_the_dask_joblib_backend(client, photos):
    import joblib
    from sklearn.model_selection import GridSearchCV

    flat = photos.reshape(len(photos), -1).astype(np.float32) / 255
    grid = {"latent_dim": [3, 6]}
    est = WallocTransformer(
        levels=2, signal_shape=photos.shape[1:], max_iter=0, random_state=0
    )
    local = GridSearchCV(est, grid, cv=2).fit(flat)
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_backend("dask"):
            remote = GridSearchCV(est, grid, cv=2, n_jobs=-1).fit(flat)
    assert len(tasks.data) >= 4  # 2 candidates x 2 folds ran on the workers
    assert remote.best_params_ == local.best_params_ == {"latent_dim": 6}
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
        rtol=1e-6,
    )


def _assert_same_model(a, b):
    for (name, x), (_, y) in zip(
        a.module_.state_dict().items(), b.module_.state_dict().items()
    ):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("max_iter", [0, 12])
def test_streaming_fit_equals_the_in_memory_fit(photos, max_iter):
    kw = dict(latent_dim=12, levels=3, max_iter=max_iter, crop_size=32)
    ref = WallocCodec(**kw, random_state=0).fit(photos)
    with dask.config.set(scheduler="sync"):
        from_dask = WallocCodec(**kw, random_state=0).fit(
            da.from_array(photos, chunks=5)
        )
    from_chunks = WallocCodec(**kw, random_state=0).fit(
        SignalStream([photos[:5], photos[5:7], photos[7:]])
    )
    for est in (from_dask, from_chunks):
        _assert_same_model(ref, est)
        assert est.n_iter_ == ref.n_iter_
        assert est.data_range_ == ref.data_range_
        np.testing.assert_array_equal(est.transform(photos), ref.transform(photos))


def test_streaming_fit_from_files_of_different_sizes(photos, tmp_path):
    from PIL import Image

    signals = [photos[i, : 40 + 8 * (i % 2), :56] for i in range(6)]
    paths = []
    for i, s in enumerate(signals):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(s).save(paths[-1])
    kw = dict(latent_dim=6, levels=2, max_iter=0, random_state=0)
    ref = WallocTransformer(**kw).fit(signals)
    streamed = WallocTransformer(**kw).fit(SignalStream([str(p) for p in paths]))
    _assert_same_model(ref, streamed)


def test_streaming_fit_on_the_cluster_with_a_bounded_sample(
    client, photos, monkeypatch
):
    """The covariance covers every signal even when the sample is small: the
    principal axes equal the in-memory ones; only the latent scale, chosen on
    the sample, may differ."""
    big = np.concatenate([photos, photos[:, ::-1]])
    kw = dict(latent_dim=12, levels=3, max_iter=0, random_state=0)
    ref = WallocTransformer(**kw).fit(big)
    monkeypatch.setattr(_streaming, "MAX_SAMPLE_VALUES", 4 * photos[0].size)
    streamed = WallocTransformer(**kw).fit(da.from_array(big, chunks=5))
    torch.testing.assert_close(
        streamed.module_.encoder.weight, ref.module_.encoder.weight, atol=1e-6, rtol=0
    )
    assert abs(streamed.score(big) - ref.score(big)) < 0.5
    seeded = WallocTransformer(**kw).fit(da.from_array(big, chunks=5))
    _assert_same_model(streamed, seeded)  # the sample is seeded


def test_one_shot_iterators_are_refused(photos):
    with pytest.raises(TypeError, match=r"one-shot iterator.*SignalStream"):
        WallocTransformer(max_iter=0).fit(p for p in photos)
    with pytest.raises(TypeError, match="partial_fit takes one chunk"):
        WallocTransformer(max_iter=0).partial_fit(SignalStream([photos]))
    with pytest.raises(TypeError, match="SignalStream takes a list"):
        SignalStream(iter([photos]))
    with pytest.raises(ValueError, match="chunk 1 of X has 1 channel"):
        WallocTransformer(max_iter=0).fit(SignalStream([photos, photos[..., :1]]))


def test_without_dask_the_library_works_and_says_what_to_install():
    code = (
        "import sys\n"
        "sys.modules['dask'] = None\n"  # import dask now fails
        "import numpy as np\n"
        "from sklearn_walloc import WallocCodec, _dask\n"
        "X = np.random.default_rng(0).random((4, 16, 16, 3))\n"
        "c = WallocCodec(latent_dim=3, levels=1, max_iter=0).fit(X)\n"
        "assert c.decompress(c.compress(X), restore=False).shape == X.shape\n"
        "try:\n"
        "    _dask.require('dask.array')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "pip install 'sklearn-walloc[dask]'" in out.stdout
