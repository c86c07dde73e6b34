"""Shared fixtures for the engine tests: no network, few threads, one tiny model per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # a test that tries to download fails instead
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch

    torch.set_num_threads(2)  # the CI machine has two cores shared with other jobs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON lines; return the path."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Read JSON lines into dicts."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(run_dir: Path, **config) -> Path:
    """Write run_dir/config.json (creating run_dir); return run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def run_engine_cli(command: str, run_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m training.engine COMMAND --run-dir run_dir` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "training.engine", command, "--run-dir", str(run_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Build the default tiny Qwen2-shaped model once per session; return its folder."""
    from training.engine import tiny
    from training.engine.run_dir import RunDir

    run_dir = tmp_path_factory.mktemp("tiny")
    result = tiny.main(tiny.Config(), RunDir(run_dir))
    assert result.status == "succeeded"
    return run_dir / "model"
