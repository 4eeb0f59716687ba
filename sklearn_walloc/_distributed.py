"""Data-parallel training with PyTorch DistributedDataParallel (DDP).

Launched by ``torchrun``, every process runs the same ``fit``: it reads the
same data, computes the same closed-form start, and trains a replica of the
model. :class:`DataParallel` is the hook that ``_training.optimise`` takes:

- the round trip runs through ``torch.nn.parallel.DistributedDataParallel``,
  which broadcasts rank 0's weights at the start and averages the gradients of
  every step, so the replicas stay identical;
- each rank samples its own crops (the seed is shifted by the rank): one step
  sees ``world_size * batch_size`` crops;
- the per-step loss and each validation score are averaged over the ranks,
  so early stopping takes the same decision everywhere (a rank that stopped
  alone would leave the others waiting forever);
- in :func:`fit_distributed`, only rank 0 shows progress and writes files.

The process group comes from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): ``gloo`` on the CPU,
``nccl`` on CUDA, one GPU per process (``cuda:LOCAL_RANK``).
"""

import contextlib
import inspect
import os
import signal
import sys
import threading

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DataParallel", "fit_distributed", "launched_by_torchrun"]

# Seeds of different ranks must not collide with another fit's seeds.
_RANK_SEED_STRIDE = 1_000_003


def launched_by_torchrun():
    """True in a process started by ``torchrun`` (its environment is set)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


class _RoundTrip(torch.nn.Module):
    """The training round trip as one ``forward``, as DDP needs: DDP averages
    gradients of the parameters of the module whose forward it runs."""

    def __init__(self, model, rate=None):
        super().__init__()
        self.model = model
        self.rate = rate  # the rate model's parameters are averaged as well

    def forward(self, x, generator):
        q = self.model.encode(x, "noise", generator)
        return q, self.model.decode(q)


class DataParallel:
    """The hook of ``_training.optimise`` for one rank of a DDP job.

    Parameters
    ----------
    device : torch.device
        This rank's device (``cuda:LOCAL_RANK`` with nccl, the CPU with gloo).
    """

    def __init__(self, device):
        if not dist.is_initialized():
            raise RuntimeError("DataParallel needs an initialised process group")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = torch.device(device)

    @property
    def is_main(self):
        return self.rank == 0

    def seed(self, seed):
        """This rank's seed for crops and training noise."""
        return seed + _RANK_SEED_STRIDE * self.rank

    def wrap(self, model, rate=None):
        """``(x, generator) -> (q, y)`` through DistributedDataParallel."""
        ids = [self.device.index or 0] if self.device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel
        # The buffers (filters, data scale) are equal on every rank and do not
        # change in training: no need to broadcast them at each step.
        params = inspect.signature(ddp).parameters
        key = (
            "forward_sync_buffers"
            if "forward_sync_buffers" in params
            else "broadcast_buffers"
        )
        return ddp(_RoundTrip(model, rate), device_ids=ids, **{key: False})

    def mean(self, value):
        """The mean of a float over the ranks (every rank gets the same)."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm)
        dist.all_reduce(t)
        return float(t[0]) / self.world_size

    @property
    def _comm(self):
        # nccl reduces CUDA tensors only; gloo CPU tensors.
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def broadcast_int(self, value):
        """Rank 0's integer, on every rank."""
        t = torch.tensor([int(value)], dtype=torch.int64, device=self._comm)
        dist.broadcast(t, 0)
        return int(t[0])


def _init_process_group(device):
    """Join torchrun's process group; True if this call created it."""
    if dist.is_initialized():
        return False
    if not launched_by_torchrun():
        raise RuntimeError(
            "fit_distributed runs in processes started by torchrun (RANK, "
            "WORLD_SIZE and LOCAL_RANK are not set), e.g. "
            "torchrun --standalone --nproc-per-node=2 script.py"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    dist.init_process_group(backend, **kwargs)
    return True


@contextlib.contextmanager
def _signals_end_the_process(what):
    """Let SIGINT and SIGTERM end this process while it may block in native
    code (the rendezvous, the collectives), with a one-line message.

    A Python handler runs only when the main thread runs Python again: blocked
    in gloo's rendezvous, waiting for a rank that never comes, the process
    ignored both signals (``walloc fit`` turns SIGTERM into an exception) and
    needed SIGKILL. Python's C-level handler still writes the signal number to
    the wakeup fd at once; a thread waiting on it ends the process. Exit
    status ``128 + signal``, as a shell reports a process killed by it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = threading.Event()

    def end(signum, frame=None):
        name = signal.Signals(signum).name
        sys.stderr.write(
            f"walloc: {name} received while {what}; exiting (rank "
            f"{os.environ.get('RANK', '?')}; the other ranks stop on their own "
            "or at their timeout).\n"
        )
        sys.stderr.flush()
        os._exit(128 + signum)

    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, end)
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch():
        while not stop.is_set():
            data = os.read(read, 64)
            for signum in data:
                if signum in (signal.SIGINT, signal.SIGTERM):
                    end(signum)

    watcher = threading.Thread(target=watch, name="walloc-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop.set()
        os.close(write)  # the watcher's read returns b""
        watcher.join(timeout=5)
        os.close(read)


def _rank_device(est):
    """``est.device`` resolved for this rank: ``cuda:LOCAL_RANK`` for CUDA."""
    from ._signal import resolve_device

    device = resolve_device(est.device)
    if device.type == "cuda" and est.device in ("auto", "cuda"):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def fit_distributed(estimator, X, output=None):
    """Fit ``estimator`` on ``X`` in a ``torchrun`` job, with DDP.

    Call it in every process that ``torchrun`` starts, with the same
    estimator parameters and the same ``X``. Each process computes the
    closed-form start on all of ``X`` (the same start everywhere) and trains a
    replica with DistributedDataParallel (``gloo`` on the CPU, ``nccl`` on
    CUDA, one GPU per process): each step averages the gradients of
    ``world_size * batch_size`` random crops, ``batch_size`` per process, and
    ``max_iter`` counts these synchronised steps. Validation runs on every
    rank and its score is averaged, so all ranks stop together and keep the
    same state. A ``random_state`` of None is drawn on rank 0 and shared.

    The process group is created from torchrun's environment unless one
    exists, and destroyed at the end if it was created here.

    Parameters
    ----------
    estimator : WallocTransformer or WallocCodec
        The estimator to fit, with the same parameters on every rank.
    X : array-like or list of array-like
        Training signals in any input form of ``fit``, the same on every rank.
    output : str or path-like, default=None
        If given, rank 0 saves the fitted model there (``estimator.save``)
        before the other ranks return, and no other rank writes anything.

    Returns
    -------
    estimator : object
        The fitted estimator, with the same weights on every rank; it loads
        and runs as any model fitted in one process.

    Examples
    --------
    A script ``train.py`` run as ``torchrun --standalone --nproc-per-node=2
    train.py``::

        from sklearn_walloc import WallocCodec, fit_distributed
        from sklearn_walloc.datasets import load_photos

        codec = WallocCodec(latent_dim=12, max_iter=2000, random_state=0)
        fit_distributed(codec, load_photos(split="fit"), output="model.npz")
    """
    estimator._validate_params()
    device = _rank_device(estimator)
    with _signals_end_the_process("waiting for or training with the other ranks"):
        return _fit_distributed(estimator, X, output, device)


def _fit_distributed(estimator, X, output, device):
    created = _init_process_group(device)
    saved = estimator.device, estimator.verbose, estimator.random_state
    try:
        parallel = DataParallel(device)
        if estimator.random_state is None or isinstance(
            estimator.random_state, np.random.RandomState
        ):
            from sklearn.utils import check_random_state

            seed = check_random_state(estimator.random_state).randint(2**31 - 1)
            estimator.random_state = parallel.broadcast_int(seed)
        estimator.device = str(device)
        if not parallel.is_main:
            estimator.verbose = 0
        warm = estimator.warm_start and hasattr(estimator, "module_")
        estimator._fit(
            X, warm=warm, n_steps=estimator.max_iter, validate=True, parallel=parallel
        )
        if output is not None and parallel.is_main:
            estimator.save(output)
        dist.barrier()  # the file exists before any rank goes on
    finally:
        estimator.device, estimator.verbose, estimator.random_state = saved
        if created:
            dist.destroy_process_group()
    return estimator
