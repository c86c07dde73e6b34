from pathlib import Path

import pytest

from training.engine.checkpoint import (
    COMPLETE_MARKER,
    atomic_directory,
    checkpoint_path,
    complete_checkpoints,
    latest_checkpoint,
    load_training_state,
    prune_checkpoints,
    remove_incomplete,
    save_training_state,
    writing_checkpoint,
)


def save(checkpoints, step):
    with writing_checkpoint(checkpoints, step) as folder:
        save_training_state(folder, {"step": step})
    return checkpoint_path(checkpoints, step)


def test_written_checkpoint_is_complete_and_loads_back(tmp_path):
    folder = save(tmp_path, 10)

    assert (folder / COMPLETE_MARKER).is_file()
    assert latest_checkpoint(tmp_path) == folder
    assert load_training_state(folder) == {"step": 10}


def test_latest_is_the_highest_step_not_the_last_written(tmp_path):
    save(tmp_path, 100)
    save(tmp_path, 20)

    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 100)


def test_failure_during_save_leaves_no_checkpoint(tmp_path):
    save(tmp_path, 5)
    with pytest.raises(RuntimeError), writing_checkpoint(tmp_path, 10) as folder:
        (folder / "weights.bin").write_bytes(b"half")
        raise RuntimeError("killed mid-save")

    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 5)
    assert not checkpoint_path(tmp_path, 10).exists()


def test_folders_left_by_a_kill_are_ignored_then_removed(tmp_path):
    good = save(tmp_path, 5)
    unmarked = checkpoint_path(tmp_path, 10)  # e.g. the HF Trainer killed before our marker
    unmarked.mkdir()
    (unmarked / "model.safetensors").write_bytes(b"half")
    temp = tmp_path / ".tmp-checkpoint-15-123"  # our own loop killed before the rename
    temp.mkdir()

    assert latest_checkpoint(tmp_path) == good
    assert sorted(p.name for p in remove_incomplete(tmp_path)) == [".tmp-checkpoint-15-123", "checkpoint-10"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-5"]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    save(tmp_path, 5)
    with writing_checkpoint(tmp_path, 5) as folder:
        save_training_state(folder, {"step": 5, "again": True})

    assert load_training_state(latest_checkpoint(tmp_path))["again"] is True


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 4):
        save(tmp_path, step)
    prune_checkpoints(tmp_path, keep=2)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-4"]


def test_no_checkpoint_dir_means_nothing_to_resume(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None


def kill_during_rmtree(monkeypatch):
    """Make shutil.rmtree delete one weights file, then die as a SIGKILL would."""
    from training.engine import checkpoint

    def rmtree(path, ignore_errors=False):
        if not Path(path).exists():
            return
        for file in sorted(Path(path).rglob("*.bin")):
            file.unlink()
            break
        raise SystemExit("killed")

    monkeypatch.setattr(checkpoint.shutil, "rmtree", rmtree)


def test_a_kill_while_pruning_never_leaves_a_half_deleted_complete_checkpoint(tmp_path, monkeypatch):
    for step in (1, 2):
        with writing_checkpoint(tmp_path, step) as folder:
            (folder / "weights.bin").write_bytes(b"w")
    kill_during_rmtree(monkeypatch)

    with pytest.raises(SystemExit):
        prune_checkpoints(tmp_path, keep=1)

    for folder in complete_checkpoints(tmp_path):
        assert (folder / "weights.bin").is_file(), folder


def test_a_kill_while_replacing_a_checkpoint_never_leaves_a_half_deleted_complete_one(tmp_path, monkeypatch):
    with writing_checkpoint(tmp_path, 5) as folder:
        (folder / "weights.bin").write_bytes(b"old")
    kill_during_rmtree(monkeypatch)

    with pytest.raises(SystemExit), writing_checkpoint(tmp_path, 5) as folder:
        (folder / "weights.bin").write_bytes(b"new")

    for folder in complete_checkpoints(tmp_path):
        assert (folder / "weights.bin").is_file(), folder


def test_saving_a_folder_again_deletes_what_a_killed_save_of_it_left(tmp_path):
    final = tmp_path / "model"
    left_over = [tmp_path / ".tmp-model-4242", tmp_path / ".tmp-old-model-4243"]
    for folder in left_over:
        folder.mkdir()
        (folder / "weights.bin").write_bytes(b"half")
    unrelated = tmp_path / ".tmp-model2-4244"  # another folder's save: not ours to delete
    unrelated.mkdir()

    with atomic_directory(final) as folder:
        (folder / "weights.bin").write_bytes(b"whole")

    assert (final / "weights.bin").read_bytes() == b"whole"
    assert not any(folder.exists() for folder in left_over)
    assert unrelated.exists()
