"""A start stopped before its first checkpoint — Ctrl-C while the tokenizer trains, an option
error found late, a killed process — leaves a folder that the same command reuses; ``--resume``
without ``last/`` names the command that works; model options are judged before any file is
written (classification and translation); Ctrl-C while ``python -m attnlab.cli`` imports torch
prints one line and exits 130."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from attnlab.cli import main
from attnlab.tasks.classification import pipeline as classification_pipeline
from attnlab.tasks.translation import pipeline as translation_pipeline
from attnlab.text import TextTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["train", "--data", "sst2", "--train-limit", "256", "--d-model", "16", "--heads", "2",
         "--layers", "1", "--d-ff", "32", "--batch-size", "32", "--max-steps", "2",
         "--eval-steps", "none", "--quiet"]
TRANSLATION = ["train", "--task", "translation", "--data", "multi30k", "--train-limit", "64",
               "--vocab-size", "200", "--dev-bleu-sentences", "2", "--batch-size", "32",
               "--max-steps", "1", "--quiet", "--d-model", "16", "--heads", "2",
               "--encoder-layers", "1", "--decoder-layers", "1", "--d-ff", "32"]


def ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("moment", ["tokenizer", "after-tokenizer"])
def test_ctrl_c_before_the_first_save_leaves_a_folder_the_same_command_reuses(
        tmp_path, capsys, monkeypatch, data_dir, moment):
    out = tmp_path / "run"
    if moment == "tokenizer":  # Ctrl-C while the tokenizer trains (no tokenizer.json yet)
        monkeypatch.setattr(TextTokenizer, "train", ctrl_c)
    else:  # tokenizer.json written, the model not built yet
        monkeypatch.setattr(classification_pipeline, "seed_everything", ctrl_c)
    assert main([*QUICK, "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "attnlab train: interrupted"
    assert not out.exists()  # nothing left: the folder was made by this start
    monkeypatch.undo()
    assert main([*QUICK, "--out", str(out)]) == 0
    assert (out / "last").is_dir() and (out / "result.json").is_file()


def test_the_leftovers_of_a_killed_start_are_not_a_run(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "tokenizer.json").write_text("{}")  # as a start killed before step 1 leaves it
    (out / "metrics.jsonl").write_text("")
    assert main([*QUICK, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds no checkpoint" in err and "without --resume" in err, err
    assert err.count("\n") == 1
    assert main([*QUICK, "--out", str(out)]) == 0  # a plain rerun starts it again
    assert (out / "last").is_dir()


def test_a_run_without_last_is_not_offered_resume(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    (out / "best").mkdir(parents=True)  # killed after an evaluation, before any last/ save
    assert main([*QUICK, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no last/ to resume from" in err and "--overwrite" in err, err
    assert main([*QUICK, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no last/" in err and "--overwrite instead of --resume" in err, err
    assert (out / "best").is_dir()  # refused, never deleted
    assert main([*QUICK, "--out", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("command", [QUICK, TRANSLATION], ids=["classification", "translation"])
def test_a_bad_model_option_is_refused_before_any_file_is_written(tmp_path, capsys, monkeypatch,
                                                                  data_dir, command):
    out = tmp_path / "run"
    monkeypatch.setattr(TextTokenizer, "train", pytest.fail)  # judged before the tokenizer
    bad = [*command, "--d-model", "16", "--heads", "3", "--out", str(out)]
    assert main(bad) == 2
    assert "d_model must be divisible by n_heads" in capsys.readouterr().err
    assert not out.exists()


def test_translation_ctrl_c_before_the_first_save_leaves_nothing(tmp_path, capsys, monkeypatch,
                                                                 data_dir):
    out = tmp_path / "run"
    monkeypatch.setattr(translation_pipeline, "seed_everything", ctrl_c)  # after tokenizer.json
    assert main([*TRANSLATION, "--out", str(out)]) == 130
    assert not out.exists()
    monkeypatch.undo()
    assert main([*TRANSLATION, "--out", str(out)]) == 0
    assert (out / "last").is_dir() and (out / "result.json").is_file()


# Runs `python -m attnlab.cli train` as runpy does, with Ctrl-C arriving as torch is imported.
CTRL_C_IN_IMPORT = """
import runpy, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
sys.argv = ["attnlab", "train", "--out", sys.argv[1]]
runpy.run_module("attnlab.cli", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_importing_prints_one_line_and_exits_130(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", CTRL_C_IN_IMPORT, str(out)], text=True,
                          capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=120)
    assert (done.returncode, done.stderr) == (130, "attnlab train: interrupted\n")
    assert not out.exists()
