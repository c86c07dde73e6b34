"""Run the engine's REAL `sample` command on a GPU and check what it writes.

    python3 bench/ppo_setup.py --run-dir /tmp/ppo-bench            # a random 0.5B policy + prompts
    python3 bench/sample_check.py --policy /tmp/ppo-bench/policy --prompts /tmp/ppo-bench/prompts.jsonl \
        --out sample.json

`python -m training.engine sample --run-dir DIR` runs as a subprocess, as the web side starts it,
with bf16 and the rollout engine (static KV cache + CUDA graph, reused for every batch of the same
shape). The output must be ranking-task JSONL with K answers per prompt. Throughput counts answer
tokens (random weights never sample EOS, so every answer is max_new_tokens long, which the check
confirms) over the time between consecutive batches in metrics.jsonl, the first batch (graph capture)
left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", required=True)
    parser.add_argument("--prompts", required=True, help='JSONL of {"messages": [...]}')
    parser.add_argument("--run-dir", default="/tmp/sample-bench")
    parser.add_argument("--prompt-count", type=int, default=96)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16, help="prompts per generate call")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--out")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = Path(args.prompts).read_text().splitlines()[: args.prompt_count]
    (run_dir / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    for stale in ("samples.jsonl", "samples.jsonl.partial", "metrics.jsonl", "result.json"):
        (run_dir / stale).unlink(missing_ok=True)
    config = {
        "model_path": str(Path(args.policy).resolve()),
        "num_responses": args.k,
        "max_new_tokens": args.new_tokens,
        "max_prompt_length": args.prompt_len,
        "batch_size": args.batch,
        "temperature": 1.0,
        "bf16": torch.cuda.is_available(),
        "generator": "bench-policy",
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "training.engine", "sample", "--run-dir", str(run_dir)]
    start = time.time()
    code = subprocess.run(command, cwd=REPO, env=env).returncode
    wall = time.time() - start

    tokenizer = AutoTokenizer.from_pretrained(args.policy)
    tasks = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    answer_tokens = [
        len(tokenizer(response["content"], add_special_tokens=False)["input_ids"])
        for task in tasks
        for response in task["responses"]
    ]
    valid = (
        len(tasks) == len(lines)
        and all(len(task["responses"]) == args.k for task in tasks)
        and all(
            isinstance(r["content"], str) and r["generator"] == "bench-policy"
            for task in tasks
            for r in task["responses"]
        )
        and all(isinstance(task["context"], list) and task["context"] for task in tasks)
    )
    stamps = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    batch_times = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]  # first batch left out
    tokens_per_batch = args.batch * args.k * args.new_tokens
    median = statistics.median(batch_times) if batch_times else None
    result = {
        "command": "python -m training.engine sample --run-dir DIR",
        "config": config,
        "exit_code": code,
        "wall_s": wall,
        "valid_ranking_task_jsonl": valid,
        "tasks": len(tasks),
        "answers_per_task": sorted({len(task["responses"]) for task in tasks}),
        # re-tokenising decoded text need not give back exactly the sampled ids; near max_new_tokens
        # means the answers ran full length (no EOS), as random weights do
        "answer_tokens_retokenised": {
            "median": statistics.median(answer_tokens),
            "min": min(answer_tokens),
            "max": max(answer_tokens),
        }
        if answer_tokens
        else None,
        "batch_time": common.summary(batch_times) if batch_times else None,
        "answer_tokens_per_s": tokens_per_batch / median if median else None,
        "first_batch_s_after_start": stamps[0] - start if stamps else None,
        "example": tasks[0] if tasks else None,
        "env": common.environment(),
    }
    common.write_json(args.out, result)
    print(
        f"=== sample: exit {code}, valid {valid}, {len(tasks)} tasks × {args.k}, "
        f"{result['answer_tokens_per_s'] or 0:,.0f} answer tokens/s, wall {wall:.1f} s",
        flush=True,
    )
    sys.exit(0 if code == 0 and valid else 1)


if __name__ == "__main__":
    main()
