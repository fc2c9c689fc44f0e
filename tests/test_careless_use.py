"""What a careless or hostile user may do on the command line: unreadable files, bytes that are
not UTF-8, a closed standard input or output, a folder where a file belongs, tampered configs
and weights, odd data rows. Each is one line ``attnlab CMD: error: ...`` and exit code 2 (or a
quiet exit), never a traceback."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnlab.cli import main
from attnlab.errors import InputError
from attnlab.io.checkpoint import CheckpointError
from attnlab.io.registry import load_model
from attnlab.tasks.translation import use
from attnlab.text import TextTokenizer
from attnlab.text.parallel import load_parallel_split
from attnlab.text.reading import DataFormatError, read_labelled_file
from tiny_run import make_tiny_run
from tiny_translation import make_tiny_translation_run

pytestmark = pytest.mark.usefixtures("one_thread")

BAD = "Ein \udcff Hund"  # what Python makes of the argument $'Ein \xff Hund' (surrogateescape)
NOBODY = 65534  # an unprivileged user, for files that root could read anyway


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, data_dir) -> Path:
    return make_tiny_translation_run(tmp_path_factory.mktemp("careless") / "de-en")


@pytest.fixture
def mt(pristine, tmp_path) -> Path:
    """A copy of the tiny translation run, free to tamper with."""
    return Path(shutil.copytree(pristine, tmp_path / "de-en"))


@pytest.fixture(scope="module")
def clf(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("careless") / "clf", train_steps=0)


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run ``attnlab argv``; it must exit 2 with one line of error holding each needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"attnlab {argv[0]}: error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def edit_config(run: Path, change) -> None:
    path = run / "best" / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


# --- 1. unreadable files ----------------------------------------------------------------------


def run_as_nobody(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``attnlab argv`` in a forked process, as an unprivileged user when we are root (root
    reads a file of mode 000): its exit code and standard error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(read)
            sys.stderr = os.fdopen(write, "w")
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            os.chdir(cwd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            code = main(argv)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        err = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err


@pytest.fixture
def open_folder(pristine):
    """A folder under /tmp that the unprivileged user may enter, holding a copy of the run."""
    folder = Path(tempfile.mkdtemp(prefix="attnlab-careless-"))
    try:
        shutil.copytree(pristine, folder / "de-en")
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_an_unreadable_checkpoint_file_is_named(open_folder, name):
    (open_folder / "de-en" / "best" / name).chmod(0)
    code, err = run_as_nobody(["translate", "de-en", "Ein Hund"], open_folder)
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"attnlab translate: error: de-en/best/{name}: permission denied (this user may not "
        f"read it)"]


def test_an_unreadable_data_file_is_named(open_folder, data_dir):
    data = open_folder / "data"
    data.mkdir(mode=0o755)
    for lang in ("de", "en"):
        shutil.copy(data_dir / "multi30k" / f"val.{lang}", data / f"val.{lang}")
    (data / "val.en").chmod(0o644)
    (data / "val.de").chmod(0)
    code, err = run_as_nobody(["evaluate", "de-en", "--data", "data", "--split", "val"],
                              open_folder)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("attnlab evaluate: error: ")
    assert err.strip().endswith("/data/val.de: permission denied (this user may not read it)")


def test_any_other_permission_error_is_one_line(mt, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "somewhere/file.txt")

    monkeypatch.setattr("attnlab.tasks.translation.commands.Translator.load", refuse)
    one_line_error(capsys, ["translate", str(mt), "Ein Hund"],
                   "somewhere/file.txt: permission denied")


# --- 2. bytes that are not UTF-8 --------------------------------------------------------------


def test_text_arguments_that_are_not_utf8(mt, clf, capsys):
    needle = "TEXT 1 is not valid UTF-8 (byte 0xff at character 4)"
    one_line_error(capsys, ["translate", str(mt), BAD], needle)
    one_line_error(capsys, ["show", str(mt), BAD], needle)
    one_line_error(capsys, ["show", str(clf), BAD], needle)
    one_line_error(capsys, ["predict", str(clf), "fine", BAD], "TEXT 2 is not valid UTF-8")
    one_line_error(capsys, ["explain", str(mt), BAD, "--layer", "0", "--head", "0", "--token",
                            "0"], "TEXT is not valid UTF-8")


def test_a_file_or_stdin_that_is_not_utf8(mt, clf, capsys, monkeypatch, tmp_path):
    binary = tmp_path / "lines.txt"
    binary.write_bytes(b"Ein Hund\n\xff\xfe\n")
    one_line_error(capsys, ["translate", str(mt), "--file", str(binary)],
                   f"{binary}:2: bytes that are not valid UTF-8")
    one_line_error(capsys, ["predict", str(clf), "--file", str(binary)], f"{binary}:2:")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"Ein Hund\n{BAD}\n"))
    one_line_error(capsys, ["translate", str(mt)], "standard input, line 2 is not valid UTF-8")


def test_the_tokenizer_refuses_a_lone_surrogate():
    tokenizer = TextTokenizer.train(["ein hund", "a dog"], 30, kind="word")
    with pytest.raises(InputError, match="text 1 is not valid UTF-8"):
        tokenizer.encode(["ein hund", BAD])


# --- 3. standard input closed, standard output gone ---------------------------------------------


@pytest.mark.parametrize("stdin", [None, "closed"])
def test_a_closed_stdin_is_no_input(mt, capsys, monkeypatch, stdin):
    if stdin == "closed":
        stdin = io.StringIO("Ein Hund\n")
        stdin.close()
    monkeypatch.setattr(sys, "stdin", stdin)
    one_line_error(capsys, ["translate", str(mt)], "no texts")


def test_a_reader_that_went_away_ends_quietly(mt):
    read, write = os.pipe()
    os.close(read)  # as `| head -0` does
    try:
        done = subprocess.run([sys.executable, "-m", "attnlab.cli", "translate", str(mt),
                               "Ein Hund", "Eine Katze"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


# --- 4. a folder where a file belongs -----------------------------------------------------------


def test_evaluate_refuses_an_output_folder_before_translating(mt, capsys, monkeypatch,
                                                              tmp_path):
    def never(*args, **kwargs):
        raise AssertionError("evaluated the split before checking --out")

    monkeypatch.setattr("attnlab.tasks.translation.commands.evaluate_run", never)
    one_line_error(capsys, ["evaluate", str(mt), "--out", str(tmp_path)], "is a folder")
    (tmp_path / "file").write_text("")
    one_line_error(capsys, ["evaluate", str(mt), "--out", str(tmp_path / "file" / "hyp.txt")],
                   "is a file, not a folder")


@pytest.mark.parametrize("option", ["--out", "--html"])
def test_show_refuses_an_output_folder(clf, capsys, tmp_path, option):
    folder = tmp_path / "pictures"
    folder.mkdir()
    one_line_error(capsys, ["show", str(clf), "a good film", option, str(folder)],
                   f"{option} {folder} is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pictures"]  # no pictures.png


# --- 5. a config's data section ----------------------------------------------------------------


@pytest.mark.parametrize("data, field", [({"source": "multi30k", "target_lang": "en"},
                                           "'data.source_lang'"), ("multi30k", "'data'")])
def test_evaluate_names_a_bad_data_section(mt, capsys, data, field):
    edit_config(mt, lambda c: c.update(data=data))
    one_line_error(capsys, ["evaluate", str(mt), "--split", "val"], "config.json: field", field)


# --- 6. tampered checkpoints, empty data files ---------------------------------------------------


def test_weights_that_do_not_fit_name_the_tensors(mt):
    path = mt / "best" / "model.safetensors"
    weights = load_file(path)
    weights["extra.weight"] = torch.zeros(2)
    del weights["decoder.layers.1.ff.up.bias"]
    weights["decoder.layers.0.ff.up.bias"] = torch.zeros(3)
    save_file(weights, path)
    with pytest.raises(CheckpointError) as err:
        load_model(mt)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for needle in ("missing decoder.layers.1.ff.up.bias", "unexpected extra.weight",
                   "mis-shaped decoder.layers.0.ff.up.bias [3] (the model's [64])"):
        assert needle in message


def test_a_bert_model_type_on_a_translation_config(mt, capsys):
    edit_config(mt, lambda c: c.update(model_type="bert-sequence-classifier"))
    one_line_error(capsys, ["show", str(mt), "Ein Hund"], "config.json: model_type",
                   "needs field 'bert'")


def test_a_max_len_too_small_names_the_config(mt, capsys):
    edit_config(mt, lambda c: c["model"].update(max_len=2))
    one_line_error(capsys, ["translate", str(mt), "Ein Hund"], "best/config.json:", "'max_len'")


def test_empty_training_files_are_named(tmp_path):
    for lang in ("de", "en"):
        (tmp_path / f"train.{lang}").write_text("")
    with pytest.raises(DataFormatError, match=r"train\.\{de,en\}: no sentence pairs"):
        load_parallel_split(tmp_path, "train", source_lang="de", target_lang="en")


# --- 7. empty and overlong texts -----------------------------------------------------------------


def test_translate_refuses_an_empty_text(mt, capsys):
    one_line_error(capsys, ["translate", str(mt), "Ein Hund", " "], "TEXT 2 is empty")


def test_translate_says_once_that_long_texts_were_cut(mt, capsys):
    long = "Hund " * 2000
    assert main(["translate", str(mt), long, "Ein Hund", long]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    assert captured.err.splitlines() == [
        "attnlab translate: warning: 2 texts (the first: text 1) were cut to the model's "
        "longest input (256 tokens)"]


# --- 8. JSONL fields that are not strings ---------------------------------------------------------


def test_a_jsonl_list_field_is_refused(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"de": "Ein Hund", "en": "A dog"}\n'
                                          '{"de": "Eine Katze", "en": ["a cat"]}\n')
    with pytest.raises(DataFormatError, match=r"train\.jsonl:2: field 'en' must be a string"):
        load_parallel_split(tmp_path, "train", source_lang="de", target_lang="en")
    (tmp_path / "dev.jsonl").write_text('{"text": {"a": 1}, "label": 1}\n')
    with pytest.raises(DataFormatError, match=r"dev\.jsonl:1: field 'text'"):
        read_labelled_file(tmp_path / "dev.jsonl")
    (tmp_path / "test.jsonl").write_text('{"text": "fine", "label": 1}\n')
    assert read_labelled_file(tmp_path / "test.jsonl").labels == [1]  # numbers stay allowed


def test_evaluate_still_translates(mt, capsys, monkeypatch, tmp_path):
    """The checks above leave a well-formed evaluate alone (its --out folder is created)."""
    monkeypatch.setattr(use, "load_parallel_split", lambda *a, **k: type(
        "P", (), {"sources": ["Ein Hund"], "targets": ["A dog"]})())
    out = tmp_path / "new" / "hyp.txt"
    assert main(["evaluate", str(mt), "--split", "val", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1


@pytest.mark.parametrize("data", ["sst2", None, {"text_column": "sentence"}])
def test_evaluate_a_classifier_whose_config_records_no_data_set(tmp_path, capsys, data):
    """A string, an empty or a source-less ``data`` section is one line naming config.json
    (a string used to give an AttributeError)."""
    run = make_tiny_run(tmp_path / "run", train_steps=0)
    for config_path in [*run.glob("config.json"), *run.glob("*/config.json")]:
        config = json.loads(config_path.read_text())
        config["data"] = data
        config_path.write_text(json.dumps(config))
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json records no data set" in err and "--data" in err
