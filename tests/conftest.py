import os
import subprocess
from pathlib import Path

import pytest
import torch

from attnlab.inspect.subject import Subject, load_subject
from attnlab.tasks.translation.subject import TranslationSubject
from browser_helpers import CHROMIUM, CHROMIUM_ARGS
from tiny_run import make_tiny_run
from tiny_translation import make_tiny_translation_run

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


# --- the tiny runs (tests/tiny_run.py, tests/tiny_translation.py), one per test module --------

@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory) -> Path:
    """A tiny classifier run folder."""
    return make_tiny_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def classifier(classifier_run) -> Subject:
    """The tiny classifier run, opened as ``attnlab show`` opens it."""
    return load_subject(classifier_run)


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory, data_dir) -> Path:
    """A tiny German → English run folder (trained on Multi30k in a few seconds)."""
    return make_tiny_translation_run(tmp_path_factory.mktemp("tr") / "de-en")


@pytest.fixture(scope="module")
def translation(translation_run) -> TranslationSubject:
    """The tiny translation run, opened as ``attnlab show`` opens it."""
    return TranslationSubject.load(translation_run)


# --- the browser tests (tests/browser_helpers.py) -------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright (skips the test when Playwright is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records every dialog (none may appear) and every request."""
    context = browser.new_context()
    pg = context.new_page()
    pg.dialogs, pg.requests = [], []

    def on_dialog(dialog):
        pg.dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    context.close()


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
