"""Prepare a PPO run folder for the benchmark: random Qwen2.5-0.5B-shaped policy and reward model.

    python bench/ppo_setup.py --run-dir /tmp/ppo-bench
    python -m training.engine ppo --run-dir /tmp/ppo-bench            # one GPU
    torchrun --nproc_per_node 2 -m training.engine ppo --run-dir ...  # two GPUs
    python bench/ppo_summary.py --run-dir /tmp/ppo-bench --out bench/results/ppo_1gpu.json

The policy gets the engine's tiny tokenizer (no download is possible on the GPU machine); the model
keeps Qwen2.5's 151936-entry vocabulary, so every FLOP is the real model's. Random weights almost
never sample EOS, so every answer runs to max_new_tokens: the step does the full work each time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from training.engine import tiny  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rollouts-per-gpu", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--compile", action="store_true", help="the engine's compile option")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny.build_tokenizer(vocab_size=512)
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    torch.manual_seed(0)
    # initialise on the GPU where there is one: random init of 0.5B weights on the CPU takes a minute
    torch.set_default_device("cuda" if torch.cuda.is_available() else "cpu")
    policy = AutoModelForCausalLM.from_config(common.qwen_config(args.tiny, **ids), dtype=dtype)
    policy.generation_config.eos_token_id = tokenizer.eos_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    policy.save_pretrained(run_dir / "policy")
    tokenizer.save_pretrained(run_dir / "policy")
    reward = AutoModelForSequenceClassification.from_config(
        common.qwen_config(args.tiny, num_labels=1, **ids), dtype=dtype
    )
    reward.save_pretrained(run_dir / "reward")

    rng = random.Random(0)
    with open(run_dir / "prompts.jsonl", "w") as handle:
        for _ in range(1024):
            text = " ".join(rng.choice(tiny.CORPUS) for _ in range(40))  # longer than prompt-len tokens
            handle.write(json.dumps({"messages": [{"role": "user", "content": text}]}) + "\n")
    micro = args.micro_batch
    config = {
        "model_path": "policy",
        "reward_model": "reward",
        "bf16": not args.tiny,
        "max_prompt_length": args.prompt_len,
        "max_new_tokens": args.new_tokens,
        "per_device_batch_size": micro,
        "gradient_accumulation_steps": args.rollouts_per_gpu // micro,
        "num_mini_batches": 1,
        "num_ppo_epochs": 4,
        "max_steps": args.steps,
        "save_every": 1000,
        "torch_compile": args.compile,
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(json.dumps(config))


if __name__ == "__main__":
    main()
