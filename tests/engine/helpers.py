"""Small helpers for the engine tests: JSONL files, run folders, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def model_without_pad_token(tiny_model: Path, folder: Path) -> Path:
    """make-tiny's model saved as a Llama-style checkpoint: no pad token in tokenizer nor config."""
    from transformers import AutoTokenizer

    shutil.copytree(tiny_model, folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    return folder
