"""Summarise a PPO benchmark run: medians of the per-step time split, skipping the first step.

    python bench/ppo_summary.py --run-dir /tmp/ppo-bench --gpus 1 --out bench/results/ppo_1gpu.json

The first step pays for CUDA-graph capture, cuBLAS handles and allocator growth, so it is reported
apart. The split comes from metrics.jsonl, where the engine logs time_generate / time_score /
time_train for every step (each phase ends with a device synchronisation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = steps[1:] or steps
    keys = ["time_generate", "time_score", "time_train", "rollout_tokens_per_s", "response_length"]
    medians = {key: statistics.median(step[key] for step in timed) for key in keys}
    step_s = medians["time_generate"] + medians["time_score"] + medians["time_train"]
    rollouts = (
        config["per_device_batch_size"] * config["gradient_accumulation_steps"] * config["num_mini_batches"]
    )
    common.write_json(
        args.out,
        {
            "gpus": args.gpus,
            "config": config,
            "steps_timed": len(timed),
            "median": medians,
            "step_s": step_s,
            "split": {key: medians[key] / step_s for key in ("time_generate", "time_score", "time_train")},
            "episodes_per_s": rollouts * args.gpus / step_s,
            "first_step": {key: steps[0][key] for key in ("time_generate", "time_score", "time_train")},
            "per_step": [{key: step[key] for key in ["step", *keys, "score", "kl"]} for step in steps],
        },
    )


if __name__ == "__main__":
    main()
