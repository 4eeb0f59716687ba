"""DDP training under torchrun: 2 CPU processes with gloo, tiny and fast."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sklearn_walloc
from sklearn_walloc import WallocCodec, WallocTransformer
from sklearn_walloc._distributed import launched_by_torchrun

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is missing"
)

FIT = dict(latent_dim=12, levels=3, crop_size=32, random_state=0)


def _torchrun(args, tmp_path):
    """``torchrun --standalone --nproc-per-node=2 ARGS``, in ``tmp_path``."""
    root = str(Path(sklearn_walloc.__file__).parents[1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    proc = subprocess.Popen(
        [*cmd, "--nproc-per-node=2", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its workers can be stopped with it
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stdout[-2000:] + stderr[-4000:]
    return stdout


@pytest.fixture(scope="module")
def photos(small_photos):
    return [p[:48, :64] for p in small_photos]


# One torchrun job, two phases, to start the processes once: (1) exactly
# `python -m sklearn_walloc.cli fit photos/ -o model.npz ...` in each rank;
# (2) fit_distributed of a transformer with a rate term, each rank saving its
# own replica.
_JOB = """
import os, runpy, sys
import numpy as np
import torch.distributed as dist
from sklearn_walloc import WallocTransformer, fit_distributed

dist.init_process_group("gloo")  # one group for both phases
sys.argv = ["walloc", "fit", "photos/", "-o", "model.npz", "--max-iter", "20",
            "--crop-size", "32"]
try:
    runpy.run_module("sklearn_walloc.cli", run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
X = np.load("photos.npy")
est = WallocTransformer(latent_dim=12, levels=3, crop_size=32, max_iter=12,
                        rate_weight=0.01, early_stopping=False,
                        random_state=None)
fit_distributed(est, X, output="transformer.npz")
est.save(f"rank{os.environ['RANK']}.npz")
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def job(photos, tmp_path_factory):
    from PIL import Image

    tmp_path = tmp_path_factory.mktemp("ddp")
    (tmp_path / "photos").mkdir()
    for i, p in enumerate(photos):
        Image.fromarray(p).save(tmp_path / "photos" / f"{i}.png")
    np.save(tmp_path / "photos.npy", np.stack(photos))
    (tmp_path / "job.py").write_text(_JOB)
    out = _torchrun(["job.py"], tmp_path)
    return tmp_path, out


def test_walloc_fit_under_torchrun_writes_a_model_that_loads(photos, job):
    tmp_path, out = job
    assert out.count("wrote model.npz") == 1  # rank 0 only
    codec = WallocCodec.load(tmp_path / "model.npz")
    assert codec.n_iter_ == 20
    assert all(torch.isfinite(t).all() for t in codec.module_.state_dict().values())
    # Against one process with the same effective batch (2 ranks x 16 crops):
    # other crops, so not equal; the score must be as good within 0.5 dB.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank ran; quality does not depend on it
    try:
        single = WallocCodec(**FIT, max_iter=20, batch_size=32).fit(photos)
    finally:
        torch.set_num_threads(threads)
    assert abs(codec.score(photos) - single.score(photos)) < 0.5
    assert np.array_equal(
        codec.decompress(codec.compress(photos[:1]), restore=False),
        codec.inverse_transform(codec.transform(photos[0][None])),
    )


def test_fit_distributed_keeps_the_replicas_identical(photos, job):
    """Each rank draws other crops, so only gradient averaging (DDP) keeps the
    two replicas equal."""
    tmp_path, _ = job
    files = ("transformer.npz", "rank0.npz", "rank1.npz")
    models = [WallocTransformer.load(tmp_path / f) for f in files]
    start = WallocTransformer(latent_dim=12, levels=3, max_iter=0).fit(np.stack(photos))
    for name, t in models[0].module_.state_dict().items():
        for other in models[1:]:
            torch.testing.assert_close(
                other.module_.state_dict()[name], t, rtol=0, atol=0
            )
    assert models[0].n_iter_ == 12
    trained = models[0].module_.encoder.weight
    assert not torch.equal(trained, start.module_.encoder.weight)


def test_fit_distributed_outside_torchrun_says_how_to_launch(photos, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert not launched_by_torchrun()
    with pytest.raises(RuntimeError, match="torchrun --standalone"):
        sklearn_walloc.fit_distributed(WallocCodec(max_iter=1), photos)


_WAITING_RANK = """
import os, signal, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
os.environ.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0",
                  MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
import numpy as np
from sklearn_walloc import WallocTransformer, fit_distributed

def interrupt(signum, frame):  # as walloc fit does: SIGTERM becomes an exception
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, interrupt)
X = np.random.default_rng(0).random((4, 32, 32))
print("ready", flush=True)
fit_distributed(WallocTransformer(latent_dim=2, levels=1, max_iter=1), X)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_rank_waiting_for_its_peers_ends_on_sigterm_and_sigint(name):
    # A 2-rank job with only rank 0: it waits in gloo's rendezvous (native
    # code), where Python handlers never ran: only SIGKILL ended it.
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    p = subprocess.Popen(
        [sys.executable, "-c", _WAITING_RANK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=root,
    )
    try:
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(2)  # into the rendezvous
        p.send_signal(getattr(signal, name))
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 128 + getattr(signal, name)
    assert f"walloc: {name} received while waiting" in p.stderr.read().decode()
