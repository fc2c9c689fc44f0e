"""A run folder is never overwritten by accident: a new run into a folder holding one needs
``--resume`` or ``--overwrite``; a folder is locked while a process trains into it; ``--out``
naming a file is a clear error (issue 14, section 3)."""

from __future__ import annotations

import hashlib

import pytest

from attnlab.cli import main
from attnlab.errors import UsageError
from attnlab.io.run_folder import claim_run_folder

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["train", "--data", "sst2", "--train-limit", "256", "--d-model", "16", "--heads", "2",
         "--layers", "1", "--d-ff", "32", "--batch-size", "32", "--max-steps", "2",
         "--eval-steps", "none", "--quiet"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_finished_run_is_not_replaced_without_resume_or_overwrite(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    assert main([*QUICK, "--out", str(out)]) == 0
    before = {name: digest(out / name) for name in
              ("best/model.safetensors", "last/model.safetensors", "metrics.jsonl",
               "result.json")}
    capsys.readouterr()
    assert main([*QUICK, "--lr", "2e-3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert {name: digest(out / name) for name in before} == before  # nothing touched
    assert main([*QUICK, "--lr", "2e-3", "--out", str(out), "--overwrite"]) == 0
    assert digest(out / "result.json") != before["result.json"]


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys, data_dir):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert main([*QUICK, "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_a_folder_in_use_is_refused(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    with claim_run_folder(out):
        with pytest.raises(UsageError, match="in use by another training process"):
            with claim_run_folder(out):
                pass
        assert main([*QUICK, "--out", str(out)]) == 2
        assert "in use by another training process" in capsys.readouterr().err
    assert not (out / ".lock").exists()
    with claim_run_folder(out):  # free again once released
        pass


def test_resume_keeps_the_run_and_overwrite_clears_it(tmp_path):
    out = tmp_path / "run"
    (out / "last").mkdir(parents=True)
    (out / "metrics.jsonl").write_text("{}\n")
    with claim_run_folder(out, resume=True):
        assert (out / "last").is_dir()
    with claim_run_folder(out, overwrite=True):
        assert not (out / "last").exists() and not (out / "metrics.jsonl").exists()


def test_a_start_stopped_before_its_first_checkpoint_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), claim_run_folder(out):
        (out / "tokenizer.json").write_text("{}")
        (out / ".last.tmp-1").mkdir()  # a first save cut short
        raise KeyboardInterrupt
    assert not out.exists()
    mine = tmp_path / "mine"  # a folder that was there before keeps what is not the run's
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt), claim_run_folder(mine):
        (mine / "tokenizer.json").write_text("{}")
        raise KeyboardInterrupt
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_stopped_run_with_a_checkpoint_is_kept_for_resume(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), claim_run_folder(out):
        (out / "tokenizer.json").write_text("{}")
        (out / "last").mkdir()
        raise KeyboardInterrupt
    assert (out / "tokenizer.json").exists() and (out / "last").is_dir()
    with claim_run_folder(out, resume=True):
        pass


def test_resume_needs_last_and_says_what_works(tmp_path):
    with pytest.raises(UsageError, match="does not exist; start the run without --resume"):
        with claim_run_folder(tmp_path / "none", resume=True):
            pass
    assert not (tmp_path / "none").exists()
    out = tmp_path / "run"
    out.mkdir()
    (out / "tokenizer.json").write_text("{}")
    with pytest.raises(UsageError, match="run the same command without --resume"):
        with claim_run_folder(out, resume=True):
            pass
    with claim_run_folder(out):  # the leftover is not a run: a plain start replaces it
        assert not (out / "tokenizer.json").exists()
