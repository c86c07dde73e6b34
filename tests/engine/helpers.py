"""Small helpers for the engine tests: JSONL files, run folders, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# SmolLM2-135M-Instruct's chat template, as its GGUF and tokenizer_config carry it: ChatML with a
# default system turn, each turn followed by a newline after its <|im_end|>
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def smollm2_like_tokenizer():
    """make-tiny's BPE dressed as SmolLM2's tokenizer: its template, <|im_start|> as BOS, <|im_end|> as EOS."""
    from training.engine import tiny

    tokenizer = tiny.build_tokenizer(vocab_size=512)
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    tokenizer.bos_token = "<|im_start|>"  # as SmolLM2's tokenizer_config has it
    return tokenizer


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


def smollm2_like_model(tiny_model: Path, folder: Path) -> Path:
    """make-tiny's model with smollm2_like_tokenizer(): SmolLM2's template and its <|im_start|> BOS."""
    shutil.copytree(tiny_model, folder)
    smollm2_like_tokenizer().save_pretrained(folder)
    return folder
