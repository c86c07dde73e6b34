"""Tune the tiny loop's PPO offline: rerun `ppo` on one loop's SFT policy and reward models, judge by the hidden preference.

    # a loop whose run folders are kept (bench/simulated_loop.py --tiny --keep, or the e2e test's tmp_path)
    python bench/tiny_ppo_sweep.py --runs VAR/data/runs/1 --out /tmp/sweep.json --jobs 2 \\
        --ppo '{"lr1e-3": {"learning_rate": 1e-3, "max_steps": 24}, "lr3e-4": {"learning_rate": 3e-4, "max_steps": 48}}' \\
        --reward '{"loop": null, "seed1": {"seed": 1}, "steps300": {"max_steps": 300}}'

A full loop takes minutes and draws a new reward model each time; PPO alone takes seconds on the
tiny models. This takes the loop's SFT policy, its reward model's pairs and config, its PPO config
and its evaluation's held-out prompts (read from the run folders' config.json files), trains the
reward models asked for (`--reward`: name -> config overrides, null for the loop's own model) and
checks each against the hidden preference on pairs of SFT answers (`score`), then runs `ppo` with
each override set of `--ppo` against each reward model and judges the policy's answers against
SFT's, both sampled as the evaluation samples them (temperature 1, --answers per prompt, the same
seed), with the noise-free hidden preference (`simulator.preferences`, the plan's). Every engine
command runs as its own process with one thread (on CPU the tiny runs are deterministic: the loop's
own PPO run is reproduced exactly). Writes the figures as JSON to --out as they come.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.preferences import preference_get  # noqa: E402

ENGINE_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
              "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="a loop's run folders (data/runs/<project>)")
    parser.add_argument("--ppo", default='{"loop": {}}', help="JSON: name -> PPO config overrides")
    parser.add_argument("--reward", default='{"loop": null}',
                        help="JSON: name -> reward config overrides to train another model on the loop's pairs "
                             "(null: the loop's own reward model)")
    parser.add_argument("--preference", default="tiny", help="simulator.preferences name")
    parser.add_argument("--answers", type=int, default=2, help="answers per held-out prompt and policy")
    parser.add_argument("--jobs", type=int, default=2, help="engine processes at a time")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    loop = loop_runs(args.runs)
    hidden = preference_get(args.preference).score
    work = args.work or Path(tempfile.mkdtemp(prefix="tiny-ppo-sweep-"))
    figures: dict = {"runs": str(args.runs), "loop": {k: str(v) for k, v in loop.items()}}

    def save() -> None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")

    sft = sample(loop["sft"] / "model", loop["evaluation"] / "prompts.jsonl", work / "sft-answers", args.answers)
    pairs = hidden_pairs(sample(loop["sft"] / "model", loop["evaluation"] / "prompts.jsonl", work / "sft-k4", 4,
                                seed=7), loop["evaluation"] / "prompts.jsonl", hidden)
    figures["sft"] = describe(sft, hidden)
    with ThreadPoolExecutor(args.jobs) as pool:
        rewards = dict(pool.map(lambda item: (item[0], reward_model(loop, work, item[0], item[1], pairs)),
                                json.loads(args.reward).items()))
        figures["reward_models"] = {name: info for name, (_, info) in rewards.items()}
        save()

        def one(job):
            (reward_name, (model, _)), (ppo_name, overrides) = job
            run = work / f"ppo-{reward_name}-{ppo_name}"
            config = {**json.loads((loop["ppo"] / "config.json").read_text()), "model_path": str(loop["sft"] / "model"),
                      "reward_model": str(model), "prompts_file": "prompts.jsonl", **overrides}
            fresh_run(run, config, {"prompts.jsonl": loop["ppo"] / "prompts.jsonl"})
            engine("ppo", run)
            answers = sample(run / "model", loop["evaluation"] / "prompts.jsonl", run / "answers", args.answers)
            last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
            return f"{reward_name} | {ppo_name}", {**judge(answers, sft, hidden), **describe(answers, hidden),
                                                   "kl_last": round(last["kl"], 2), "overrides": overrides}

        figures["ppo"] = {}
        for key, result in pool.map(one, itertools.product(rewards.items(), json.loads(args.ppo).items())):
            figures["ppo"][key] = result
            print(key, json.dumps({k: v for k, v in result.items() if k != "examples"}), flush=True)
            save()
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def loop_runs(runs: Path) -> dict[str, Path]:
    """Find the loop's PPO run, the SFT and reward runs it used, and its evaluation's sampling run."""
    configs = {path.parent: json.loads(path.read_text()) for path in runs.glob("*/config.json")}
    ppo = next(run for run, config in configs.items() if "reward_model" in config and "kl_coef" in config)
    # the runs' config.json files hold absolute paths: take the run folders' names (a copied folder works)
    found = {"ppo": ppo, "sft": runs / Path(configs[ppo]["model_path"]).parent.name,
             "reward": runs / Path(configs[ppo]["reward_model"]).parent.name}
    found["evaluation"] = next(run for run, config in configs.items() if config.get("num_responses") == 1)
    return found


def engine(command: str, run: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "training.engine", command, "--run-dir", str(run)], cwd=ROOT,
                          env=ENGINE_ENV, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{command} in {run} exited {done.returncode}: {done.stderr[-2000:]}")


def fresh_run(run: Path, config: dict, inputs: dict[str, Path]) -> None:
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    for name, source in inputs.items():
        shutil.copy(source, run / name)
    (run / "config.json").write_text(json.dumps(config))


def sample(model: Path, prompts: Path, run: Path, answers: int, *, seed: int = 1234) -> list[list[str]]:
    """Return ``answers`` answers per prompt, sampled as the loop's evaluation samples (temperature 1, 24 tokens)."""
    fresh_run(run, {"model_path": str(model), "num_responses": answers, "max_new_tokens": 24, "temperature": 1.0,
                    "batch_size": 16, "seed": seed}, {"prompts.jsonl": prompts})
    engine("sample", run)
    return [[r["content"] for r in json.loads(line)["responses"]]
            for line in (run / "samples.jsonl").read_text().splitlines()]


def hidden_pairs(answers: list[list[str]], prompts: Path, hidden) -> list[dict]:
    """Pairs of answers to one prompt that the hidden preference orders (ties left out), better one first."""
    contexts = [json.loads(line) for line in prompts.read_text().splitlines()]
    pairs = []
    for row, texts in zip(contexts, answers, strict=True):
        context = row.get("context") or row.get("messages")
        for a, b in itertools.combinations(texts, 2):
            if hidden(a) != hidden(b):
                better, worse = (a, b) if hidden(a) > hidden(b) else (b, a)
                pairs.append({"prompt": context, "chosen": [{"role": "assistant", "content": better}],
                              "rejected": [{"role": "assistant", "content": worse}]})
    return pairs


def reward_model(loop: dict, work: Path, name: str, overrides: dict | None, pairs: list[dict]):
    """Return (model folder, figures): the loop's own reward model, or one trained with these overrides."""
    model, info = loop["reward"] / "model", {"trained": False}
    if overrides is not None:
        run = work / f"reward-{name}"
        config = {**json.loads((loop["reward"] / "config.json").read_text()), "model_path": str(loop["sft"] / "model"),
                  "train_file": "pairs.jsonl", **overrides}
        fresh_run(run, config, {"pairs.jsonl": loop["reward"] / "pairs.jsonl"})
        engine("reward", run)
        model = run / "model"
        info = {"trained": True, "overrides": overrides,
                "eval_accuracy": json.loads((run / "result.json").read_text())["metrics"].get("eval_accuracy")}
    check = work / f"score-{name}"
    fresh_run(check, {"model_path": str(model), "max_length": 128, "batch_size": 32}, {})
    (check / "pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    engine("score", check)
    info["accuracy_vs_hidden_on_sft_pairs"] = json.loads((check / "result.json").read_text())["metrics"][
        "pairwise_accuracy"]
    print("reward", name, json.dumps(info), flush=True)
    return model, info


def judge(mine: list[list[str]], theirs: list[list[str]], hidden) -> dict:
    wins = losses = ties = 0
    for a, b in zip(itertools.chain(*mine), itertools.chain(*theirs), strict=True):
        wins += hidden(a) > hidden(b)
        losses += hidden(a) < hidden(b)
        ties += hidden(a) == hidden(b)
    return {"win_rate": round((wins + ties / 2) / (wins + losses + ties), 4), "wins": wins, "losses": losses,
            "ties": ties}


def describe(answers: list[list[str]], hidden) -> dict:
    flat = list(itertools.chain(*answers))
    return {"hidden_mean": round(statistics.mean(map(hidden, flat)), 3),
            "words_mean": round(statistics.mean(len(text.split()) for text in flat), 2), "examples": flat[:3]}


if __name__ == "__main__":
    sys.exit(main())
