"""A fork-based pool after the parent ran a model: the children finish (they
hung in torch's OpenMP pool; ``_fork`` gives them one thread)."""

import os
import subprocess
import sys

_SCRIPT = """
import multiprocessing as mp
import numpy as np
from joblib import Parallel, delayed
from sklearn_walloc import WallocCodec

codec = WallocCodec(latent_dim=2, levels=1, max_iter=0, verbose=0)
images = list(np.random.default_rng(0).random((4, 64, 64)))
codec.fit(images)
codec.compress(images)  # the parent's thread pool is running

def work(x):
    return len(codec.compress([x])[0])

if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        print(pool.map(work, images), flush=True)
    print(Parallel(n_jobs=2, backend="multiprocessing")(
        delayed(work)(x) for x in images), flush=True)
"""


def test_fork_pools_after_the_parent_ran_a_model_finish(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "forks.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": root, "TQDM_DISABLE": "1"}
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
