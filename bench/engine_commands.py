"""Throughput and MFU of the engine's REAL `sft` and `reward` commands (TRL's trainers), one GPU.

    python3 bench/engine_commands.py --out engine_commands.json           # one H200, ~2 minutes
    python3 bench/engine_commands.py --compile --out engine_commands.json # + `torch_compile: true` runs
    python3 bench/engine_commands.py --tiny --out /tmp/engine_commands.json  # CPU dry run

`--compile` first runs each task with the config's `torch_compile: true` (runs `sft_compiled`,
`reward_compiled`), then uncompiled as before; `--batch-factor N` adds compiled runs with N times
the micro-batch (`sft_compiled_xN`, `reward_compiled_xN`), last; `--packing [N…]` adds `sft_packed` (`packing: true`,
one packed row per micro-batch) or `sft_packed_bN` (N packed rows per micro-batch), the same rows
per optimizer step through gradient accumulation; compiled too under --compile. `--deadline` keeps the whole script inside one device call: each
command's timeout is cut to what is left, and the JSON is rewritten after every command.

`bench/train_throughput.py` times a standalone training step (compiled decoder, fused loss); this
script runs `python -m training.engine sft|reward --run-dir DIR` as subprocesses, exactly as the web
side does, on a Qwen2.5-0.5B-shaped model with random weights (bench/common.py's shape) and
make-tiny's tokenizer (its ids all fit the 151936-entry vocabulary). Every row is exactly `--seq`
tokens: SFT answers are longer and TRL truncates them to max_length, reward rows are built to the
exact length with TRL's own tokenisation, so no batch holds padding and the tokens counted are the
tokens computed. bf16 autocast on fp32 master weights (`bf16: true`), logging every step, no
checkpoint inside the run (save_every above max_steps; the final save_pretrained comes after).

Step time = difference of consecutive `time` stamps in metrics.jsonl (written by the engine's
callback after each optimizer step; the Trainer's loss `.item()` has synchronised the GPU by then),
so it holds everything the command does per step: data loading and collation, forward, backward,
clipping, optimizer, metrics. The first `--warmup` steps are left out. FLOPs per token come from
bench/common.py, the same count as the standalone figures in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402
from training.engine.tiny import CORPUS, build_tokenizer  # noqa: E402

SYSTEM = "You are a helpful assistant."


def build_model_folder(folder: Path, *, tiny: bool):
    """Save a random Qwen2.5-0.5B-shaped causal LM (bf16 on disk) and make-tiny's tokenizer; return both."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = build_tokenizer(vocab_size=512)
    config = common.qwen_config(
        tiny,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    assert len(tokenizer) <= config.vocab_size
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):  # initialising 494 M weights on the GPU takes a second, not ten
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # count tokens with the tokenizer the commands load (it tokenizes as the one built, see tiny.py)
    return AutoTokenizer.from_pretrained(folder), model


def single_token_words(tokenizer) -> list[str]:
    """Words w whose ' w' is one token, so a text of n of them is exactly n tokens."""
    words = sorted({w.strip(".,?!:") for line in CORPUS for w in line.split()} - {""})
    found = [w for w in words if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    assert len(found) >= 5, found
    return found


def chat_length(tokenizer, messages: list[dict]) -> int:
    """Tokens TRL's RewardTrainer makes of a conversation (trl.data_utils._tokenize)."""
    try:
        from trl.data_utils import _tokenize
    except ImportError:  # pragma: no cover - the same call, written out
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    return len(_tokenize(tokenizer, messages)["input_ids"])


def text_of(words: list[str], rng: random.Random, n: int) -> str:
    return "".join(" " + rng.choice(words) for _ in range(n))  # n tokens: each ' word' is one


def write_sft_data(path: Path, tokenizer, words, *, rows: int, seq: int) -> tuple[int, float]:
    """Dialogues whose answer runs past `seq` tokens (TRL truncates them to seq).

    Return the shortest row before truncation and the share of the seq - 1 next-token positions
    that carry a label (assistant tokens): on the GPU TRL's fused LM head scores only those.
    """
    rng = random.Random(1)
    lengths, scored = [], []
    with open(path, "w") as handle:
        for i in range(rows):
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Row {i}: {text_of(words, rng, 8)}"},
                {"role": "assistant", "content": text_of(words, rng, seq + 32)},
            ]
            encoded = tokenizer.apply_chat_template(
                messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            lengths.append(len(encoded["input_ids"]))
            scored.append(sum(encoded["assistant_masks"][1:seq]) / (seq - 1))
            handle.write(json.dumps({"messages": messages}) + "\n")
    assert min(lengths) > seq, "every SFT row must be truncated to exactly seq tokens"
    return min(lengths), statistics.mean(scored)


def write_reward_data(path: Path, tokenizer, words, *, pairs: int, seq: int) -> int:
    """Pairs whose chosen and rejected conversations are exactly `seq` tokens each."""
    rng = random.Random(2)
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Answer at length."}]
    base = chat_length(tokenizer, prompt + [{"role": "assistant", "content": ""}])
    n = seq - base
    with open(path, "w") as handle:
        for i in range(pairs):
            chosen = [{"role": "assistant", "content": text_of(words, rng, n)}]
            rejected = [{"role": "assistant", "content": text_of(words, rng, n)}]
            for answer in (chosen, rejected):
                got = chat_length(tokenizer, prompt + answer)
                assert got == seq, f"reward row of {got} tokens, wanted {seq}"
            row = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "margin": 0, "group": f"g{i}"}
            handle.write(json.dumps(row) + "\n")
    return seq


def run_command(task: str, run_dir: Path, *, timeout: float, compiled: bool = False, gpus: int = 1) -> dict:
    """Run `python -m training.engine TASK --run-dir RUN_DIR` (under torchrun for several GPUs).

    Return its exit code and wall times."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # NVLink multicast (NVLS) is off on the lent machines' NCCL (the device tool's KINDS.md)
    env.update(NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
    if compiled:
        env.setdefault("TORCH_LOGS", "recompiles")  # a recompile inside the timed steps shows in the log
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus)]
        if gpus > 1
        else [sys.executable]
    )
    command = [*launcher, "-m", "training.engine", task, "--run-dir", str(run_dir)]
    print("===", " ".join(command), flush=True)
    start = time.time()
    try:
        code = subprocess.run(command, cwd=REPO, env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        print(f"=== {task}: killed after {timeout} s", flush=True)
        code = 124
    return {"exit_code": code, "started_at": start, "wall_s": time.time() - start}


def step_figures(
    run_dir: Path, *, warmup: int, tokens_per_step: int, flops: float, flops_palm: float, gpus: int = 1
) -> dict:
    """Per-step times from metrics.jsonl stamps, then tokens/s and MFU over the steps after warm-up."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = {}
    for line in lines:
        if "loss" in line and "eval_accuracy" not in line:  # training lines, not the final eval line
            steps[line["step"]] = line
    order = sorted(steps)
    times = {s: steps[s]["time"] for s in order}
    diffs = [times[s] - times[s - 1] for s in order if s - 1 in times and s > warmup]
    # tokens per step as TRL counted them (SFT logs a running num_tokens; non-padding tokens only)
    counted = [
        steps[s]["num_tokens"] - steps[s - 1]["num_tokens"]
        for s in order
        if s - 1 in steps and "num_tokens" in steps[s] and "num_tokens" in steps[s - 1]
    ]
    median = statistics.median(diffs)
    window = times[order[-1]] - times[warmup]
    mean = window / (order[-1] - warmup)
    peak = common.DATASHEET_PEAK_TFLOPS * 1e12 * gpus  # MFU per GPU
    return {
        "steps_logged": len(order),
        "warmup_steps_skipped": warmup,
        "step_time": {**common.summary(diffs), "mean_s": mean, "all_s": diffs},
        "first_step_s_after_start": None,  # filled by the caller
        "tokens_per_step": tokens_per_step,
        "tokens_per_step_logged_by_trl": sorted(set(counted)) or None,
        "tokens_per_s": tokens_per_step / median,
        "tokens_per_s_mean": tokens_per_step / mean,
        "model_flops_per_token": flops,
        "gpus": gpus,
        "model_tflops": flops * tokens_per_step / median / 1e12 / gpus,  # per GPU
        "mfu_datasheet": flops * tokens_per_step / median / peak,
        "mfu_datasheet_mean": flops * tokens_per_step / mean / peak,
        "mfu_datasheet_palm_attention": flops_palm * tokens_per_step / median / peak,
        "final_loss": steps[order[-1]]["loss"],
        "first_step_time": times[order[0]],
        "metrics_lines": lines,
    }


# RESULTS.md's headline standalone rows, same micro-batch and seq (h200-run1/sft.json is the first
# try, whose loss chunk was not compiled)
STANDALONE = {"sft": "h200-run2/sft.json", "reward": "h200-run1/reward.json"}


def standalone(task: str) -> dict | None:
    """The standalone step's figures from bench/results (same model, micro-batch, seq)."""
    path = REPO / "bench" / "results" / STANDALONE[task]
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return {
        "file": str(path.relative_to(REPO)),
        "tokens_per_s": data["tokens_per_s"],
        "mfu_datasheet": data["mfu_datasheet"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["sft", "reward"], choices=["sft", "reward"])
    parser.add_argument(
        "--compile", action="store_true", help="also run each task with torch_compile: true (first)"
    )
    parser.add_argument(
        "--packing",
        type=int,
        nargs="*",
        help="also run sft with packing: true, with these many packed rows per micro-batch (none given: 1)",
    )
    parser.add_argument(
        "--batch-factor",
        type=int,
        default=0,
        help="with --compile: also run each task compiled with this many times the micro-batch, last",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="above 1: also run each task compiled under torchrun on this many GPUs (the same micro-batch per GPU)",
    )
    parser.add_argument("--skip-plain", action="store_true", help="leave out the uncompiled runs")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--sft-batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--reward-batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--warmup", type=int, default=10, help="first steps left out (compilation happens there)"
    )
    parser.add_argument("--work", default="/tmp/engine-bench", help="run folders (model files: not in $OUT)")
    parser.add_argument("--timeout", type=float, default=200, help="seconds per uncompiled command")
    parser.add_argument("--compile-timeout", type=float, default=300, help="seconds per compiled command")
    parser.add_argument("--deadline", type=float, default=570, help="seconds for the whole script")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run on a tiny model")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.tiny:
        args.seq, args.sft_batch, args.reward_batch, args.steps, args.warmup = 128, 2, 2, 6, 2
    cuda = torch.cuda.is_available()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model_folder = work / "model"
    tokenizer, model = build_model_folder(model_folder, tiny=args.tiny)
    flops = {
        "sft": [
            common.train_flops_per_token(model, args.seq, with_lm_head=True, causal_half=h)
            for h in (True, False)
        ],
        "reward": [
            common.train_flops_per_token(model, args.seq, with_lm_head=False, causal_half=h)
            for h in (True, False)
        ],
    }
    parameters = sum(p.numel() for p in model.parameters())
    del model
    if cuda:
        torch.cuda.empty_cache()
    words = single_token_words(tokenizer)
    print(f"model folder written in {time.time() - t0:.1f} s; {len(words)} single-token words", flush=True)

    common_config = {
        "model_path": str(model_folder),
        "learning_rate": 1e-5,
        "max_steps": args.steps,
        "max_length": args.seq,
        "save_every": 10 * args.steps,  # no checkpoint inside the timed steps
        "log_every": 1,
        "bf16": cuda,
        "eval_fraction": 0.0,
    }
    result = {
        "model": "Qwen2.5-0.5B shape (bench/common.py), random weights" if not args.tiny else "tiny",
        "parameters_total": parameters,
        "seq_len": args.seq,
        "bf16": cuda,
        "env": common.environment(),
    }
    try:
        import datasets
        import trl

        result["env"].update(trl=trl.__version__, datasets=datasets.__version__)
    except ImportError:
        pass

    # (run name, task, config overrides): compiled runs first, so a deadline cuts the old rows, not the new
    runs = []
    for compiled in ([True] if args.compile else []) + ([] if args.skip_plain else [False]):
        suffix = "_compiled" if compiled else ""
        runs += [(task + suffix, task, {"torch_compile": True} if compiled else {}) for task in args.tasks]
    if args.packing is not None and "sft" in args.tasks:
        # packed rows of seq tokens per micro-batch, the same rows per optimizer step through gradient
        # accumulation: with SDPA a micro-batch's packed rows become one sequence with a full
        # block-diagonal mask (see sft.Config.packing)
        for position, rows in enumerate(args.packing or [1], start=1 if args.compile else 0):
            packed = {
                "packing": True,
                "per_device_batch_size": rows,
                "gradient_accumulation_steps": max(1, args.sft_batch // rows),
                "torch_compile": args.compile,
            }
            runs.insert(position, ("sft_packed" if rows == 1 else f"sft_packed_b{rows}", "sft", packed))

    if args.batch_factor > 1 and args.compile:
        sizes = {"sft": args.sft_batch, "reward": args.reward_batch}
        runs += [
            (
                f"{task}_compiled_x{args.batch_factor}",
                task,
                {"torch_compile": True, "batch": args.batch_factor * sizes[task]},
            )
            for task in args.tasks
        ]

    if args.gpus > 1:
        runs += [
            (f"{task}_compiled_{args.gpus}gpus", task, {"torch_compile": True, "gpus": args.gpus})
            for task in args.tasks
        ]

    for name, task, overrides in runs:
        overrides = dict(overrides)
        batch_override = overrides.pop("batch", None)
        gpus = overrides.pop("gpus", 1)
        left = args.deadline - (time.time() - t0) - 15  # keep time for the matmul peak and the JSON
        compiled = overrides.get("torch_compile", False)
        timeout = min(args.compile_timeout if compiled else args.timeout, left)
        if timeout < 30:
            print(f"=== {name}: skipped, {left:.0f} s left before the deadline", flush=True)
            result[name] = {"skipped": "deadline"}
            continue
        run_dir = work / name
        shutil.rmtree(run_dir, ignore_errors=True)  # an earlier run's checkpoints would be resumed
        run_dir.mkdir()
        if task == "sft":
            batch = batch_override or args.sft_batch
            # rows per optimizer step and GPU: packed runs reach the same through gradient accumulation
            step_rows = overrides.get("per_device_batch_size", batch) * overrides.get(
                "gradient_accumulation_steps", 1
            )
            length, scored = write_sft_data(
                run_dir / "train.jsonl", tokenizer, words, rows=gpus * step_rows * args.steps, seq=args.seq
            )
            tokens_per_step = gpus * step_rows * args.seq
            extra = {"per_device_batch_size": batch}
            lm_head = common.QWEN25_05B if not args.tiny else common.TINY
            lm_head_flops = 6 * lm_head["vocab_size"] * lm_head["hidden_size"]
        else:
            batch = batch_override or args.reward_batch
            length = write_reward_data(
                run_dir / "pairs.jsonl", tokenizer, words, pairs=gpus * batch * args.steps, seq=args.seq
            )
            tokens_per_step = gpus * 2 * batch * args.seq
            extra = {"per_device_batch_size": batch}
        config = {**common_config, **extra, **overrides}
        (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        run = run_command(task, run_dir, timeout=timeout, compiled=compiled, gpus=gpus)
        if task == "sft":
            # TRL's fused head skips unlabelled positions (prompt, role header); the standalone count
            # charges the LM head to every token: this is the count with the positions actually scored
            run["labelled_position_share"] = scored
            run["model_flops_per_token_scored_positions"] = flops["sft"][0] - lm_head_flops * (1 - scored)
        entry = {"command": f"python -m training.engine {task} --run-dir DIR", "config": config, **run}
        entry["row_tokens_before_truncation" if task == "sft" else "row_tokens"] = length
        result_file = run_dir / "result.json"
        entry["result_json"] = json.loads(result_file.read_text()) if result_file.exists() else None
        if run["exit_code"] == 0 and (run_dir / "metrics.jsonl").exists():
            figures = step_figures(
                run_dir,
                warmup=args.warmup,
                tokens_per_step=tokens_per_step,
                flops=flops[task][0],
                flops_palm=flops[task][1],
                gpus=gpus,
            )
            figures["first_step_s_after_start"] = figures.pop("first_step_time") - run["started_at"]
            entry.update(figures)
            if "model_flops_per_token_scored_positions" in entry:
                entry["mfu_datasheet_scored_positions"] = (
                    entry["model_flops_per_token_scored_positions"]
                    * tokens_per_step
                    / entry["step_time"]["median_s"]
                    / (common.DATASHEET_PEAK_TFLOPS * 1e12 * gpus)
                )
            base = standalone(task)
            if base is not None:
                entry["standalone"] = base
                entry["ratio_to_standalone"] = entry["tokens_per_s"] / base["tokens_per_s"]
            print(
                f"=== {name}: {entry['tokens_per_s']:,.0f} tokens/s (median step "
                f"{entry['step_time']['median_s']:.3f} s), MFU {entry['mfu_datasheet']:.1%}; "
                f"first step {entry['first_step_s_after_start']:.1f} s after start, wall {run['wall_s']:.1f} s",
                flush=True,
            )
        result[name] = entry
        if args.out:  # after each command, so a later kill leaves what was measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    names = [name for name, _, _ in runs]
    for name in names:  # vs the plain run (no compile, no packing) of the same task, same call
        plain = result.get(name.split("_")[0], {})
        if name != name.split("_")[0] and "tokens_per_s" in result[name] and "tokens_per_s" in plain:
            result[name]["ratio_to_plain_command"] = result[name]["tokens_per_s"] / plain["tokens_per_s"]
    for name in names:  # weak scaling: N GPUs against one, the same micro-batch per GPU, same call
        one = result.get(name.rsplit("_", 1)[0], {})
        if name.endswith("gpus") and "tokens_per_s" in result[name] and "tokens_per_s" in one:
            result[name]["scaling_efficiency"] = result[name]["tokens_per_s"] / (
                args.gpus * one["tokens_per_s"]
            )
    if cuda and not args.tiny:
        peak = common.measured_matmul_tflops(torch.device("cuda"))
        result["measured_matmul_tflops"] = peak
        for name in names:
            if "model_tflops" in result[name]:
                result[name]["mfu_measured_peak"] = result[name]["model_tflops"] / peak
    result["total_wall_s"] = time.time() - t0
    common.write_json(args.out, result)
    if any(result[name].get("exit_code", 1) != 0 for name in names):
        sys.exit(1)


if __name__ == "__main__":
    main()
