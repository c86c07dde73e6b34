"""Checkpoints that are either complete or absent.

Layout: `RUN_DIR/checkpoints/checkpoint-<step>/`, the same names Hugging Face's Trainer uses, so one
`latest_checkpoint` serves both our own loops and TRL trainers. A checkpoint counts as complete only
when it holds the `COMPLETE` marker, which is written last, after every file has been fsynced:

- our loops write into a hidden temp folder and rename it into place (`writing_checkpoint`), so a
  kill during a save leaves a temp folder that the next run deletes;
- the HF Trainer writes `checkpoint-<step>` in place; our Trainer callback adds the marker in
  `on_save`, which the Trainer calls only after model, optimizer, scheduler, RNG and
  `trainer_state.json` are all written. A folder killed mid-save has no marker and is deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"
TRAINING_STATE_FILE = "training_state.pt"
_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_TEMP_PREFIX = ".tmp-"


def checkpoint_path(checkpoints_dir: Path, step: int) -> Path:
    """Return where the checkpoint of `step` lives."""
    return checkpoints_dir / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(path: Path) -> int:
    """Return the step a checkpoint folder was saved at."""
    match = _CHECKPOINT_NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path} is not a checkpoint folder")
    return int(match.group(1))


def is_complete(folder: Path) -> bool:
    """Tell whether `folder` was fully written (its marker exists)."""
    return (folder / COMPLETE_MARKER).is_file()


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """List complete checkpoints, oldest step first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [p for p in checkpoints_dir.iterdir() if _CHECKPOINT_NAME.match(p.name) and is_complete(p)]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """Return the newest complete checkpoint, or None when there is none to resume from."""
    found = complete_checkpoints(checkpoints_dir)
    return found[-1] if found else None


def remove_incomplete(checkpoints_dir: Path) -> list[Path]:
    """Delete temp folders and checkpoints without marker (left by a kill mid-save); return them.

    Call it on the main process before training starts, so nothing ever resumes from or rotates
    around a half-written folder.
    """
    if not checkpoints_dir.is_dir():
        return []
    removed = []
    for path in checkpoints_dir.iterdir():
        half_written = path.name.startswith(_TEMP_PREFIX) or (
            _CHECKPOINT_NAME.match(path.name) and not is_complete(path)
        )
        if half_written and path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
    return removed


def prune_checkpoints(checkpoints_dir: Path, *, keep: int) -> None:
    """Delete the oldest complete checkpoints so that `keep` remain."""
    for path in complete_checkpoints(checkpoints_dir)[:-keep]:
        _remove_tree(path)


def mark_complete(folder: Path, *, step: int) -> None:
    """Fsync every file in `folder`, then write and fsync the marker that makes it count."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _fsync_file(path)
    marker = folder / COMPLETE_MARKER
    marker.write_text(json.dumps({"step": step, "time": time.time()}) + "\n")
    _fsync_file(marker)
    _fsync_dir(folder)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temp folder beside `final`; on success fsync it and rename it to `final`.

    An existing `final` is replaced. If the body raises, or the process dies, `final` is untouched
    and only a temp folder is left behind; the next save of `final` deletes it.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    # what a killed earlier save of this folder left: its temp copy, or the old copy it was replacing
    for stale in (f"{_TEMP_PREFIX}{final.name}-*", f"{_TEMP_PREFIX}old-{final.name}-*"):
        for path in final.parent.glob(stale):
            shutil.rmtree(path, ignore_errors=True)
    temp = final.parent / f"{_TEMP_PREFIX}{final.name}-{os.getpid()}"
    temp.mkdir()
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    for path in sorted(temp.rglob("*")):
        if path.is_file():
            _fsync_file(path)
    _fsync_dir(temp)
    if final.exists():
        # A rerun saving the same step or the final model again; the old copy is replaced.
        _remove_tree(final)
    os.rename(temp, final)
    _fsync_dir(final.parent)


@contextmanager
def writing_checkpoint(checkpoints_dir: Path, step: int) -> Iterator[Path]:
    """Yield a temp folder to write the checkpoint of `step` into; it appears complete or not at all.

    with writing_checkpoint(run_dir.checkpoints, step) as folder:
        model.save_pretrained(folder)
        save_training_state(folder, {"step": step, "optimizer": optimizer.state_dict()})
    """
    with atomic_directory(checkpoint_path(checkpoints_dir, step)) as temp:
        yield temp
        mark_complete(temp, step=step)


def save_training_state(folder: Path, state: dict[str, Any]) -> None:
    """Save loop state (step, optimizer, scheduler, RNG …) beside the model weights."""
    torch.save(state, folder / TRAINING_STATE_FILE)


def load_training_state(folder: Path) -> dict[str, Any]:
    """Load what `save_training_state` saved (optimizer states need weights_only=False)."""
    return torch.load(folder / TRAINING_STATE_FILE, map_location="cpu", weights_only=False)


def _remove_tree(path: Path) -> None:
    """Delete a folder; a kill midway leaves a temp folder, never a half-deleted one under its name.

    rmtree is not atomic: it could remove the weights and leave the COMPLETE marker behind.
    """
    doomed = path.parent / f"{_TEMP_PREFIX}old-{path.name}-{os.getpid()}"
    if doomed.exists():  # left by an earlier kill of a process with the same pid
        shutil.rmtree(doomed)
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
