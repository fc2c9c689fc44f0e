"""Checkpoints: a folder of safetensors and JSON files, written atomically, never pickle.

A checkpoint folder holds::

    model.safetensors          the weights (``model.state_dict()``, shared tensors once)
    config.json                {"format", "version", "model_type", "model", "train", "labels", ...}
    tokenizer.json             the tokenizer (Hugging Face ``tokenizers`` format), if any
    metrics.json               the metrics at save time, if any
    trainer_state.json         scalars of the trainer/optimizer/RNG state, if saved for resuming
    trainer_state.safetensors  the tensors of that state

Atomicity: everything is written into a temporary folder beside the target and fsynced; then the
old folder is renamed away, the new one renamed into place, and the old one deleted. A crash at
any point leaves either the previous or the new checkpoint complete, and :func:`load_checkpoint`
finds whichever it is.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.io.state_codec import decode_state, encode_state

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "WEIGHTS_FILE",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_checkpoint_config",
    "load_weights",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT = "attnlab-checkpoint"
VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.json"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"


class CheckpointError(InputError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, wrong format)."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read.

    Attributes:
        path: the folder actually read (the target, or the previous copy a crash left).
        config: contents of config.json.
        weights: the model state dict (CPU tensors).
        metrics: contents of metrics.json, or ``None``.
        trainer_state: the decoded trainer state, or ``None`` if not saved / not asked for.
        tokenizer_path: path of tokenizer.json, or ``None``.
    """

    path: Path
    config: dict[str, Any]
    weights: dict[str, Tensor]
    metrics: dict[str, Any] | None = None
    trainer_state: dict[str, Any] | None = None
    tokenizer_path: Path | None = field(default=None)

    def require_tokenizer(self) -> Path:
        """The checkpoint's tokenizer.json, for a caller that cannot go on without it (resume).

        Raises:
            CheckpointError: the folder holds no tokenizer.json (names the file).
        """
        if self.tokenizer_path is None:
            raise CheckpointError(f"{self.path / TOKENIZER_FILE}: missing; this checkpoint's "
                                  f"tokenizer is needed (the token ids depend on it)")
        return self.tokenizer_path


# --- saving -----------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: dict[str, Any],
    *,
    tokenizer: Any = None,
    metrics: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (see the module docstring).

    Args:
        path: the target folder, e.g. ``runs/h4/last``; replaced if it exists.
        model: the module whose ``state_dict()`` is saved (unwrap DDP first).
        config: JSON-ready dict (model config, train config, label names, ...); ``format`` and
            ``version`` keys are added.
        tokenizer: a ``tokenizers.Tokenizer`` (anything with ``.save(path)``), a path to a
            tokenizer.json to copy, or ``None``.
        metrics: JSON-ready dict saved as metrics.json.
        trainer_state: nested dict of tensors and JSON scalars (see :func:`encode_state`).

    Returns:
        The target path.
    """
    target = Path(path)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an earlier crash
    tmp = parent / f".{target.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        save_model(model, str(tmp / WEIGHTS_FILE), force_contiguous=True)
        _write_json(tmp / CONFIG_FILE, {"format": FORMAT, "version": VERSION, **config})
        if tokenizer is not None:
            if isinstance(tokenizer, (str, os.PathLike)):
                shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
            else:
                tokenizer.save(str(tmp / TOKENIZER_FILE))
        if metrics is not None:
            _write_json(tmp / METRICS_FILE, metrics)
        if trainer_state is not None:
            tensors: dict[str, Tensor] = {}
            encoded = encode_state(trainer_state, tensors)
            save_file(tensors, str(tmp / STATE_TENSORS))
            _write_json(tmp / STATE_JSON, encoded)
        for file in tmp.iterdir():
            _fsync(file)
        _fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, target)
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, keeping the old target until the new one is in place."""
    old = target.parent / f".{target.name}.old"
    if old.exists() and target.exists():
        shutil.rmtree(old)  # a complete target exists, so the old copy is garbage
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- loading ----------------------------------------------------------------------------------


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The folder to read for ``path``: itself, or the previous copy if a crash interrupted the
    swap between renaming the old folder away and the new one into place."""
    target = Path(path)
    if target.is_dir():
        return target
    old = target.parent / f".{target.name}.old"
    if old.is_dir():
        return old
    raise FileNotFoundError(f"checkpoint folder not found: {target}")


def load_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The config.json of a checkpoint folder, checked for format and version (weights not
    read)."""
    folder = resolve_checkpoint(path)
    config = _read_json(folder / CONFIG_FILE)
    found = config.get("format") if isinstance(config, dict) else type(config).__name__
    if found != FORMAT:
        raise CheckpointError(
            f"{folder / CONFIG_FILE}: not an attnlab checkpoint config "
            f"(expected format {FORMAT!r}, got {found!r})"
        )
    version = config.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{folder / CONFIG_FILE}: field 'version' must be an integer, got "
                              f"{version!r}")
    if version > VERSION:
        raise CheckpointError(
            f"{folder / CONFIG_FILE}: checkpoint version {config['version']} is newer than "
            f"this attnlab reads ({VERSION})"
        )
    return config


def load_checkpoint(path: str | os.PathLike, *, with_state: bool = False) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint`.

    Args:
        path: the folder (e.g. ``runs/h4/best``).
        with_state: also read the trainer state (needed to resume).

    Raises:
        FileNotFoundError: the folder or a required file is missing (the message names it).
        CheckpointError: a file is truncated, corrupt or of another format (names the file).
    """
    folder = resolve_checkpoint(path)
    config = load_checkpoint_config(folder)
    weights = _read_safetensors(folder / WEIGHTS_FILE)
    _check_finite(folder / WEIGHTS_FILE, weights)
    metrics = _read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).exists() else None
    state = None
    if with_state:
        encoded = _read_json(folder / STATE_JSON)
        tensors = _read_safetensors(folder / STATE_TENSORS)
        try:
            state = decode_state(encoded, tensors)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{folder / STATE_JSON}: inconsistent trainer state ({err})"
            ) from err
        _check_loop_state(folder / STATE_JSON, state)
    tok = folder / TOKENIZER_FILE
    return Checkpoint(folder, config, weights, metrics, state, tok if tok.exists() else None)


def load_weights(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Copy a checkpoint's weights into ``model`` (strict: every key must match)."""
    weights = dict(checkpoint.weights)
    # save_model stores a tensor shared by several names once; give it back to all of them.
    own = model.state_dict()
    for name, tensor in own.items():
        if name not in weights:
            for other, t in own.items():
                same = t.data_ptr() == tensor.data_ptr() and t.shape == tensor.shape
                if other in weights and same:
                    weights[name] = weights[other]
                    break
    misfits = _misfits(own, weights)
    if misfits:
        raise CheckpointError(f"{checkpoint.path / WEIGHTS_FILE}: weights do not fit the model "
                              f"its config.json describes: {misfits}")
    model.load_state_dict(weights, strict=True)


def _misfits(own: dict[str, Tensor], weights: dict[str, Tensor], shown: int = 3) -> str:
    """One line naming the first ``shown`` tensors missing, unexpected and of another shape
    (``""`` when everything fits)."""
    found = {"missing": [n for n in own if n not in weights],
             "unexpected": [n for n in weights if n not in own],
             "mis-shaped": [f"{n} {list(weights[n].shape)} (the model's {list(t.shape)})"
                            for n, t in own.items()
                            if n in weights and weights[n].shape != t.shape]}
    return "; ".join(f"{what} {', '.join(names[:shown])}"
                     + (f" and {len(names) - shown} more" if len(names) > shown else "")
                     for what, names in found.items() if names)


def _check_finite(path: Path, weights: dict[str, Tensor]) -> None:
    """Refuse weights holding NaN or infinity (a model that would only predict NaN)."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds non-finite values (NaN or "
                                  f"infinity); these weights cannot be used")


# The counters of the training loop's progress (train/state.TrainState): integers >= 0, numbers.
_LOOP_COUNTERS = ("global_step", "epoch", "batch_in_epoch", "examples", "tokens")
_LOOP_NUMBERS = ("loss_sum", "epoch_seconds", "wall_time")


def _check_loop_state(path: Path, state: Any) -> None:
    """Check the fields of a state the training loop saved (its ``progress`` holds the loop's
    counters, e.g. ``batch_in_epoch``): the number of processes, the counters, one random
    generator state per process. Other states (saved by other callers) pass unchecked."""
    if not isinstance(state, dict) or "progress" not in state:
        return
    progress = state["progress"]
    if not isinstance(progress, dict):
        raise CheckpointError(f"{path}: field 'progress' must be a dict, got "
                              f"{type(progress).__name__}")
    if "batch_in_epoch" not in progress:
        return  # not the training loop's state
    world_size = state.get("world_size")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise CheckpointError(f"{path}: field 'world_size' must be an integer >= 1 (the number "
                              f"of processes that saved it), got {world_size!r}")
    for name in _LOOP_COUNTERS:
        value = progress.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{path}: field 'progress.{name}' must be an integer >= 0, "
                                  f"got {value!r}")
    for name in _LOOP_NUMBERS:
        value = progress.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CheckpointError(f"{path}: field 'progress.{name}' must be a number, got "
                                  f"{value!r}")
    rng = state.get("rng")
    if not isinstance(rng, list) or len(rng) != world_size:
        raise CheckpointError(f"{path}: field 'rng' must list one random state per process "
                              f"({world_size}), got {rng!r:.80}")


def _check_readable(path: Path) -> None:
    """Name a missing or unreadable file (safetensors calls an unreadable file missing)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: permission denied (this user may not read it)")


def _read_json(path: Path) -> Any:
    _check_readable(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    _check_readable(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({err})") from err
