"""A reward model's scores for answers, from the engine's own ``score`` command run as a subprocess.

The report needs the reward model's verdict on each answer of the held-out tasks to compare it with
the noise-free hidden preference; the platform shows only summaries. So the simulator, on the machine
that holds the platform's data root, runs ``python -m training.engine score`` on the model folder the
API names (``storage_path``), as the platform's own reward checks do, with the same ``max_length``.
It imports nothing of the engine: it writes one pair per answer (the answer against itself, so its
chosen score is the answer's score) and reads ``scores.jsonl`` back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def reward_model_scores(
    *, model_dir: Path, items: list[tuple[list[dict], str]], max_length: int, batch_size: int = 16,
    bf16: bool = False, python: str = sys.executable,
) -> list[float]:
    """Return the reward model's score of each (conversation before the answer, answer) in ``items``."""
    with tempfile.TemporaryDirectory(prefix="simulator-score-") as folder:
        run_dir = Path(folder)
        with open(run_dir / "pairs.jsonl", "w", encoding="utf-8") as handle:
            for index, (context, answer) in enumerate(items):
                turn = [{"role": "assistant", "content": answer}]
                handle.write(json.dumps({"id": index, "prompt": context, "chosen": turn, "rejected": turn,
                                         "group": f"answer-{index}"}) + "\n")
        config = {"model_path": str(model_dir), "max_length": max_length, "batch_size": batch_size, "bf16": bf16}
        (run_dir / "config.json").write_text(json.dumps(config))
        env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", **os.environ}
        done = subprocess.run([python, "-m", "training.engine", "score", "--run-dir", str(run_dir)],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the engine's score command failed ({done.returncode}): {done.stderr[-2000:]}")
        scores: dict[int, float] = {}
        for line in (run_dir / "scores.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            scores[row["id"]] = row["chosen_score"]
    return [scores[index] for index in range(len(items))]
