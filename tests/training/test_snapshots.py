"""Snapshots are written once: a second builder reuses the file, a failure is recorded, never left building."""

import pytest
from django.utils import timezone

from tests.annotation.factories import PromptFactory
from tests.training.conftest import accepted_demonstrations
from training.models import DatasetSnapshot, SnapshotState
from training.services.snapshots import snapshot_build
from training.services.storage import data_path, file_sha256


def _snapshot(project, kind="sft", options=None):
    return DatasetSnapshot.objects.create(project=project, kind=kind, options=options or {},
                                          labels_until=timezone.now())


def test_an_sft_snapshot_freezes_the_accepted_demonstrations_with_their_sha256(project, data_root):
    accepted_demonstrations(project, 3)
    snapshot = snapshot_build(snapshot=_snapshot(project))
    assert snapshot.state == SnapshotState.READY and snapshot.row_count == 3
    assert file_sha256(data_path(snapshot.file_path)) == snapshot.sha256


def test_a_second_builder_finds_the_file_written_and_marks_nothing_twice(project, data_root):
    accepted_demonstrations(project, 2)
    snapshot = _snapshot(project)
    first = snapshot_build(snapshot=DatasetSnapshot.objects.get(pk=snapshot.pk))
    # the reconciler resent the build while the first was writing: the state goes back to building
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(state=SnapshotState.BUILDING)
    second = snapshot_build(snapshot=snapshot)
    assert second.state == SnapshotState.READY
    assert (second.sha256, second.row_count) == (first.sha256, first.row_count)


def test_an_empty_snapshot_fails_with_a_reason_a_person_can_act_on(project, data_root):
    snapshot = snapshot_build(snapshot=_snapshot(project))
    assert snapshot.state == SnapshotState.FAILED
    assert "No accepted demonstrations" in snapshot.error


def test_an_unexpected_error_fails_the_snapshot_instead_of_leaving_it_building(project, data_root):
    PromptFactory(project=project)
    snapshot = _snapshot(project, kind="prompts", options={"limit": None, "not_sampled_by": None})
    (data_root / "snapshots").write_text("a file where the folder should be")  # the folder can't be made
    with pytest.raises(OSError):
        snapshot_build(snapshot=snapshot)
    snapshot.refresh_from_db()
    assert snapshot.state == SnapshotState.FAILED and "Error" in snapshot.error
