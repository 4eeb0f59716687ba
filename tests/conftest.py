"""Shared fixtures: seeds and small real images."""

import numpy as np
import pytest
import torch


@pytest.fixture
def global_random_seed():
    return 0


@pytest.fixture
def rng(global_random_seed):
    return np.random.default_rng(global_random_seed)


@pytest.fixture(scope="session")
def small_photos():
    """Crops of bundled photos (uint8 RGB), small enough for fast tests."""
    from sklearn_walloc.datasets import load_photos

    photos = load_photos(["chelsea", "rocket", "coffee", "china"])
    return [p[100:164, 120:200] for p in photos]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
