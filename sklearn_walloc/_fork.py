"""Fork safety: a child forked after the parent ran a model uses one thread.

torch's intra-op thread pool (OpenMP) does not survive ``fork``: a child of a
process that has run a model, started by ``multiprocessing``'s ``fork``
context (the default on Linux before Python 3.14) or joblib's
``multiprocessing`` backend, hung in its first parallel region. One intra-op
thread in the child avoids the pool; the child can raise it again with
``torch.set_num_threads``. Processes started by ``spawn``, ``forkserver``,
joblib's default ``loky`` backend or dask workers are fresh and unaffected.
"""

import os

import torch


def _one_thread_in_the_child():
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_one_thread_in_the_child)
