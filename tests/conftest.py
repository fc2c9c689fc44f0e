import os
import subprocess
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


# gloo's threads now and then abort a process as it exits, after its work is done; such a run
# is started once more (into a fresh folder). Any other failure stands.
TEARDOWN_ABORT = "terminate called without an active exception"


def run_torchrun(command, out: Path, **kwargs) -> tuple[subprocess.CompletedProcess, Path]:
    """Run ``command(folder, attempt)`` (a torchrun command line writing into ``folder``) into
    ``out``, and once more into ``out``-again if gloo aborted at exit; the result and folder."""
    for attempt, folder in enumerate((out, out.with_name(f"{out.name}-again"))):
        proc = subprocess.run(command(folder, attempt), capture_output=True, text=True,
                              **kwargs)
        if proc.returncode == 0 or TEARDOWN_ABORT not in proc.stderr:
            break
    return proc, folder
