"""A probe reward model trained on HH-RLHF drives PPO on SmolLM2-135M-Instruct: the engine commands alone.

    python3 bench/probe_ppo.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --hh hh-rlhf-harmless-sample.jsonl \
        --ppo-steps 20 --out probe_ppo.json          # one H200, ~3 minutes
    python3 bench/probe_ppo.py --gguf ... --hh ... --pairs 20 --ppo-steps 2 --rollouts 4 --out /tmp/p.json  # CPU

`import-gguf` → `reward` with `method: "probe"` (80 % of the HH pairs; the other 20 %, held out, give
its `eval_accuracy`) → `ppo` against that probe, prompts the HH conversations before their last
answer. Each command runs as the GPU worker runs it, `python -m training.engine COMMAND --run-dir DIR`.
Reports the probe's held-out accuracy and PPO's mean score over its first and last fifth of steps,
with the KL to the start policy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--hh", type=Path, required=True)
    parser.add_argument("--ppo-steps", type=int, default=20)
    parser.add_argument("--rollouts", type=int, default=32, help="answers sampled per PPO step")
    parser.add_argument("--lr", type=float, default=1e-5, help="PPO learning rate")
    parser.add_argument("--reward-method", choices=["probe", "lora"], default="probe",
                        help="lora: a LoRA-fine-tuned reward model instead (bench/hh_reward.py's `lora`), to compare")
    parser.add_argument("--ppo-option", action="append", default=[], metavar="KEY=JSON",
                        help="another PPO config field, e.g. bf16=false or fast_rollout=false (repeatable)")
    parser.add_argument("--pairs", type=int, default=0, help="use only this many HH pairs (0: all; a CPU check)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="probe-ppo-"))
    figures: dict = {"gguf": args.gguf.name}
    gpu = _has_gpu()

    base = _run("import-gguf", work / "base", {"gguf_file": str(args.gguf.resolve())}, figures)
    pairs, prompts = hh_pairs_and_prompts(args.hh)
    if args.pairs:
        pairs, prompts = pairs[: args.pairs], prompts[: args.pairs]
    random.Random(1234).shuffle(pairs)
    held = len(pairs) // 5
    _write_jsonl(work / "probe" / "pairs.jsonl", pairs[held:])
    _write_jsonl(work / "probe" / "eval.jsonl", pairs[:held])
    reward_config = {"method": "probe", "margin_scale": 0.0}
    if args.reward_method == "lora":
        reward_config = {"learning_rate": 2e-4, "num_epochs": 2, "warmup_ratio": 0.1, "lr_scheduler": "cosine",
                         "per_device_batch_size": 16, "save_every": 100_000, "lora": {"r": 32, "alpha": 64}}
    figures["reward_config"] = reward_config
    probe = _run("reward", work / "probe", {"model_path": str(base), **reward_config, "eval_file": "eval.jsonl",
                                             "bf16": gpu}, figures)
    _write_jsonl(work / "ppo" / "prompts.jsonl", [{"messages": prompt} for prompt in prompts])
    options = {key: json.loads(value) for key, value in (option.split("=", 1) for option in args.ppo_option)}
    figures["ppo_config"] = {"reward_model": str(probe), "max_steps": args.ppo_steps,
                             "per_device_batch_size": args.rollouts, "learning_rate": args.lr, "kl_coef": 0.05,
                             "max_new_tokens": 64, "save_every": 10_000, "bf16": gpu, **options}
    _run("ppo", work / "ppo", {"model_path": str(base), **figures["ppo_config"]}, figures)
    steps = [json.loads(line) for line in (work / "ppo" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    first, last = steps[: max(1, len(steps) // 5)], steps[-max(1, len(steps) // 5):]
    figures["ppo_curve"] = [{key: step.get(key) for key in ("step", "score", "kl", "response_length", "eos_fraction")
                             if key in step} for step in steps]
    figures["ppo_score_first_fifth"] = sum(step["score"] for step in first) / len(first)
    figures["ppo_score_last_fifth"] = sum(step["score"] for step in last) / len(last)
    figures["ppo_kl_last"] = steps[-1].get("kl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({key: value for key, value in figures.items() if key != "ppo_curve"}, indent=2))
    return 0


def hh_pairs_and_prompts(path: Path) -> tuple[list[dict], list[list[dict]]]:
    """The HH lines the importer accepts, as engine pairs, and their conversations before the answer."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    from ranking.services.imports import _hh_line

    pairs, prompts = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            context, chosen, rejected = _hh_line(json.loads(line))
        except ValueError:  # the 4 lines the importer skips too
            continue
        if chosen == rejected:
            continue
        pairs.append({"prompt": context, "chosen": [{"role": "assistant", "content": chosen}],
                      "rejected": [{"role": "assistant", "content": rejected}], "margin": 0.0,
                      "group": f"line-{number}"})
        prompts.append(context)
    return pairs, prompts


def _run(command: str, run_dir: Path, config: dict, figures: dict) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "training.engine", command, "--run-dir", str(run_dir)], cwd=ROOT,
                          capture_output=True, text=True)
    result = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").exists() else {}
    figures[command] = {"seconds": round(time.monotonic() - started, 1), "status": result.get("status"),
                        "metrics": result.get("metrics")}
    if done.returncode != 0:
        raise SystemExit(f"{command} exited {done.returncode}: {done.stderr[-3000:]}")
    return run_dir / "model"


def _write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
