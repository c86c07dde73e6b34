"""Shared fixtures for the engine tests: no network, few threads, one tiny model per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Re-exported: tests import these helpers from here as well as from tests.engine.helpers.
from tests.engine.helpers import REPO_ROOT, read_jsonl, run_engine_cli, write_config, write_jsonl  # noqa: F401

os.environ["HF_HUB_OFFLINE"] = "1"  # a test that tries to download fails instead
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch

    torch.set_num_threads(2)  # the CI machine has two cores shared with other jobs


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Build the default tiny Qwen2-shaped model once per session; return its folder."""
    from training.engine import tiny
    from training.engine.run_dir import RunDir

    run_dir = tmp_path_factory.mktemp("tiny")
    result = tiny.main(tiny.Config(), RunDir(run_dir))
    assert result.status == "succeeded"
    return run_dir / "model"
