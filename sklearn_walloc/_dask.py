"""Dask collections in, lazy dask collections out.

``transform`` / ``inverse_transform`` of a ``dask.array.Array`` chunked along
samples (axis 0) map the in-memory method over its blocks; ``compress`` of a
dask array (or of a bag of signals) gives a ``dask.bag.Bag`` of blobs and
``decompress`` of a bag of blobs a bag of signals. Each block runs the very
code of the in-memory call, and the model is batch-invariant, so the results
equal the in-memory ones exactly, blobs byte for byte.

The fitted estimator enters each graph once, as one ``dask.delayed`` key that
every task depends on: a distributed scheduler ships it to each worker once,
not once per task. Dask is imported only when a dask collection is passed;
detecting one never imports dask.
"""

import re
import sys

import numpy as np

__all__ = [
    "INSTALL_HINT",
    "compress",
    "decompress",
    "is_dask_array",
    "is_dask_bag",
    "is_dask_collection",
    "require",
    "transform",
]

INSTALL_HINT = "pip install 'sklearn-walloc[dask]' (or 'dask[distributed]')"


def require(module="dask"):
    """Import and return ``module`` (``dask``, ``dask.array``, ``dask.bag``,
    ``distributed``), or raise an ``ImportError`` saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"this needs the optional dependency {module!r}, which is not "
            f"installed ({e}); install it with: {INSTALL_HINT}"
        ) from e


def is_dask_array(X):
    """True for a ``dask.array.Array`` (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


def is_dask_bag(X):
    """True for a ``dask.bag.Bag`` (without importing dask)."""
    db = sys.modules.get("dask.bag")
    return db is not None and isinstance(X, db.Bag)


def is_dask_collection(X):
    """True for any dask collection (array, bag, dataframe, delayed)."""
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(X)


def _model_key(est):
    """The estimator as one delayed key of the graph, shared by all tasks."""
    dask = require("dask")
    from dask.base import tokenize

    token = tokenize(id(est), _weights_token(est))
    name = f"walloc-{type(est).__name__.lower()}-{token}"
    return dask.delayed(est, name=name, traverse=False)


def _weights_token(est):
    spec = getattr(est, "spec_", None)
    module = getattr(est, "module_", None)
    if spec is None or module is None:
        return None
    return spec.fingerprint(module.state_dict()).hex()


def _along_samples(X, name):
    """``X`` with one chunk across every axis but the first (samples)."""
    if X.ndim < 2:
        raise ValueError(
            f"{name} must be a dask array of signals with samples along axis 0 "
            f"(at least 2D); got shape {X.shape}"
        )
    if any(len(c) > 1 for c in X.chunks[1:]):
        X = X.rechunk(dict.fromkeys(range(1, X.ndim), -1))
    return X


def _map_samples(est, X, method, name):
    """Lazy ``getattr(est, method)`` over the sample blocks of dask array ``X``.

    One sample of zeros run in memory gives the output's shape per sample.
    """
    da = require("dask.array")
    X = _along_samples(X, name)
    probe = getattr(est, method)(np.zeros((1, *X.shape[1:]), dtype=X.dtype))
    out_ndim = probe.ndim
    chunks = (X.chunks[0], *[(s,) for s in probe.shape[1:]])
    extra = {}
    if out_ndim > X.ndim:
        extra["new_axis"] = list(range(X.ndim, out_ndim))
    elif out_ndim < X.ndim:
        extra["drop_axis"] = list(range(out_ndim, X.ndim))
    return da.map_blocks(
        _call_method,
        X,
        _model_key(est),
        method,
        chunks=chunks,
        dtype=probe.dtype,
        meta=np.empty((0,) * out_ndim, dtype=probe.dtype),
        token=f"walloc-{method}",  # a prefix: dask adds a hash of the inputs
        **extra,
    )


def _call_method(block, est, method):
    if len(block) == 0:  # dask may probe with empty blocks
        out = getattr(est, method)(np.zeros((1, *block.shape[1:]), block.dtype))
        return out[:0]
    return getattr(est, method)(block)


def transform(est, X):
    """``est.transform`` of dask array ``X``, lazily."""
    return _map_samples(est, X, "transform", "X")


def inverse_transform(est, Z):
    """``est.inverse_transform`` of dask array ``Z``, lazily."""
    return _map_samples(est, Z, "inverse_transform", "X")


def compress(est, X, **targets):
    """Blobs of a dask array (blocks along samples) or bag of signals: a bag;
    ``targets`` are ``compress``'s rate targets."""
    db = require("dask.bag")
    model = _model_key(est)
    if is_dask_bag(X):
        return X.map_partitions(_compress_signals, model, targets)
    if not is_dask_array(X):
        raise TypeError(
            f"compress takes a dask.array.Array or a dask.bag.Bag here, got "
            f"{type(X).__name__}"
        )
    X = _along_samples(X, "X")
    blocks = X.to_delayed().ravel().tolist()
    dask = require("dask")
    parts = [dask.delayed(_compress_block)(model, b, targets) for b in blocks]
    return db.from_delayed(parts)


def _compress_block(est, block, targets):
    return est.compress(block, **targets) if len(block) else []


def _compress_signals(signals, est, targets):
    signals = list(signals)
    return est.compress(signals, **targets) if signals else []


def decompress(est, blobs, **kwargs):
    """Signals of a bag of blobs: a bag, partition by partition, in order.

    Each partition learns where it starts in the bag (the lengths of the
    partitions before it, counted in the graph), so an error names a blob by
    its index in the bag, as the in-memory ``decompress`` does.
    """
    db = require("dask.bag")
    dask = require("dask")
    n = blobs.npartitions
    counts = blobs.map_partitions(_count).to_delayed()
    starts = dask.delayed(_starts)(counts)
    parts = db.from_sequence(range(n), npartitions=n)
    return blobs.map_partitions(
        _decompress_partition, parts, starts, _model_key(est), **kwargs
    )


def _count(blobs):
    return [len(list(blobs))]


def _starts(counts):
    """Index in the bag of each partition's first item."""
    out, total = [], 0
    for (c,) in counts:
        out.append(total)
        total += c
    return out


_BLOB_INDEX = re.compile(r"^blobs\[(\d+)\]")


def _decompress_partition(blobs, part, starts, est, **kwargs):
    (k,) = part
    try:
        out = est.decompress(list(blobs), **kwargs)
    except (ValueError, TypeError) as e:
        # est.decompress names blobs by their index in this partition.
        msg = _BLOB_INDEX.sub(lambda m: f"blobs[{starts[k] + int(m[1])}]", str(e))
        if msg == str(e):
            raise
        raise type(e)(msg) from None
    return list(out)
