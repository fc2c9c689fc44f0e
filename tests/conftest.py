import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ATTNLAB_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "sst2" / "train.tsv").exists():
        pytest.skip(f"SST-2 not found under {DATA}; set ATTNLAB_DATA to the shared data folder")
    return DATA


@pytest.fixture
def one_thread():
    """Small models train fastest on one thread (no contention on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
