"""A reward model on real human preferences, through the platform: import → snapshot → run → score.

    python bench/hh_reward.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --hh hh-rlhf-harmless-sample.jsonl \
        --recipes baseline low_lr lora --seeds 0 1 2 --out hh_reward.json           # one H200
    python bench/hh_reward.py ... --recipes top8 --seeds 0 --folds 5 --out top8.json  # 5-fold, one recipe
    python bench/hh_reward.py --merge baseline.json top8.json --out merged.json      # compare pair by pair
    python bench/hh_reward.py --tiny --hh PATH --recipes baseline --seeds 0 --out /tmp/hh_tiny.json   # CPU dry run

Like bench/loop_gpu.py it runs the platform's own services in one process (SQLite, no broker; this
process plays the GPU worker through `run_execute`): the GGUF becomes the base model by an
`import-gguf` run; the HH-RLHF lines are imported as K = 2 ranking tasks carrying their human
preference (`skip_invalid`: Anthropic's file holds 4 lines that can't be tasks); a fixed 20 % of the
tasks (seeded) is held out; a `preferences` snapshot of the other tasks trains each recipe with each
seed (`reward` run, nothing held out inside it), and a `score` run of that reward model on the
held-out tasks' snapshot gives its pairwise accuracy on pairs the training never saw. An ensemble
per recipe averages the seeds' margins pair by pair.

With `--folds K` every task is held out once (K disjoint folds, each scored by a model trained on the
other K-1): all 996 pairs are judged instead of 199, a 95 % interval of about ±3 points instead of
±7. Several processes (one recipe each, say two per GPU) can run at once and be compared afterwards,
pair by pair on the same split, with `--merge A.json B.json ... --out merged.json`: a sign test of
each recipe against the first, and an ensemble of every recipe.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each recipe changes; everything else is the measured starting point: lr 2e-5, 2 epochs,
# 16 pairs per step, max_length 1024, full fine-tuning.
BASE = {"learning_rate": 2e-5, "num_epochs": 2, "per_device_batch_size": 16, "max_length": 1024,
        "eval_fraction": 0.0, "log_every": 10, "save_every": 100_000}
_LORA = {"learning_rate": 2e-4, "num_epochs": 2, "warmup_ratio": 0.1, "lr_scheduler": "cosine",
         "lora": {"r": 32, "alpha": 64, "dropout": 0.05}}
RECIPES = {
    "baseline": {},
    "low_lr": {"learning_rate": 5e-6, "num_epochs": 1, "warmup_ratio": 0.1, "lr_scheduler": "cosine"},
    "mid_lr": {"learning_rate": 1e-5, "num_epochs": 1, "warmup_ratio": 0.1, "lr_scheduler": "cosine"},
    "lora": _LORA,
    "no_margin": {"margin_scale": 0.0},
    # the top of the network only: embeddings and the lower 22 of SmolLM2's 30 layers stay as pretrained
    "top8": {"train_top_layers": 8, "learning_rate": 5e-5, "num_epochs": 2, "warmup_ratio": 0.1,
             "lr_scheduler": "cosine"},
    "top4": {"train_top_layers": 4, "learning_rate": 1e-4, "num_epochs": 3, "warmup_ratio": 0.1,
             "lr_scheduler": "cosine"},
    "long_low": {"learning_rate": 5e-6, "num_epochs": 4, "warmup_ratio": 0.1, "lr_scheduler": "cosine"},
    # a frozen SmolLM2 and a linear score on its hidden states (training/engine/probe.py); no margin: HH's
    # pairs carry rank distance 1, which would only loosen the L2 penalty
    "probe": {"method": "probe", "margin_scale": 0.0},
    "probe_margin": {"method": "probe"},
    "probe_top16": {"method": "probe", "margin_scale": 0.0, "probe_layers": list(range(16, 31, 2))},
    "probe_every3": {"method": "probe", "margin_scale": 0.0, "probe_layers": list(range(3, 31, 3))},
    # around `lora`: one change each
    "lora_3ep": {**_LORA, "num_epochs": 3},
    "lora_1ep": {**_LORA, "learning_rate": 3e-4, "num_epochs": 1},
    "lora_lr1e4_3ep": {**_LORA, "learning_rate": 1e-4, "num_epochs": 3},
    "lora_r8": {**_LORA, "lora": {"r": 8, "alpha": 16, "dropout": 0.05}},
    "lora_r64": {**_LORA, "learning_rate": 1e-4, "lora": {"r": 64, "alpha": 128, "dropout": 0.05}},
    "lora_b8": {**_LORA, "learning_rate": 1e-4, "per_device_batch_size": 8},
    "lora_wd": {**_LORA, "weight_decay": 0.05, "lora": {"r": 32, "alpha": 64, "dropout": 0.1}},
    "lora_attn": {**_LORA, "lora": {"r": 32, "alpha": 64, "dropout": 0.05,
                                    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}},
}
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 1234


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, help="the base model as GGUF (SmolLM2-135M-Instruct)")
    parser.add_argument("--hh", type=Path, help="the HH-RLHF sample (jsonl)")
    parser.add_argument("--recipes", nargs="+", default=["baseline"], choices=sorted(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model, 60 lines, short runs (CPU dry run)")
    parser.add_argument("--folds", type=int, default=0,
                        help="k-fold cross-validation: every task held out once (default: one fixed 20 %% held out)")
    parser.add_argument("--merge", type=Path, nargs="+", help="merge these outputs of this bench and compare them")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return 0
    if not args.hh:
        parser.error("--hh is required unless --merge")
    if not args.tiny and not args.gguf:
        parser.error("--gguf is required unless --tiny")
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds is 0 (one fixed held-out share) or at least 2")

    var = Path(tempfile.mkdtemp(prefix="rlhf-hh-bench-"))
    for sub in ("broker/queue", "broker/processed", "broker/control", "celery-results", "data"):
        (var / sub).mkdir(parents=True)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings.local", "RLHF_VAR_DIR": str(var),
                       "RLHF_MODEL_IMPORT_ROOTS": "/",
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                       "TOKENIZERS_PARALLELISM": "false"})
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from annotation.services.projects import project_create
    from ranking.models import RankingTask
    from ranking.services.imports import ranking_tasks_import
    from training.models import RunKind
    from training.services.model_versions import model_import_gguf, model_make_tiny
    from training.services.runs import run_trigger
    from training.services.snapshots import snapshot_request

    figures: dict = {"recipes": {}, "tiny": args.tiny}
    project = project_create(name="HH reward bench", slug="hh-reward")
    t0 = time.monotonic()
    if args.tiny:
        base_run = model_make_tiny(project=project, name="base")
    else:
        base_run = model_import_gguf(project=project, name="SmolLM2-135M-Instruct", gguf_file=str(args.gguf))
    base = _execute(base_run).output_model
    figures["base"] = {"name": base.name, "parameters": base.metrics.get("parameters"),
                       "import_s": round(time.monotonic() - t0, 1)}

    lines = args.hh.read_bytes().splitlines(keepends=True)
    if args.tiny:
        lines = lines[:60]
    report = ranking_tasks_import(project=project, file=io.BytesIO(b"".join(lines)), format="hh-rlhf",
                                  created_by=None, skip_invalid=True)
    figures["import"] = {"tasks_created": report.tasks_created, "rankings_imported": report.rankings_imported,
                         "skipped": len(report.skipped_lines), "invalid": report.skipped_invalid["count"],
                         "invalid_lines": report.invalid_lines, "duplicates": report.duplicates["count"]}
    task_ids = list(RankingTask.objects.filter(project=project).order_by("pk").values_list("pk", flat=True))
    random.Random(SPLIT_SEED).shuffle(task_ids)
    folds = []
    for held in _held_out_sets(task_ids, args.folds):
        held_set = set(held)
        train = sorted(pk for pk in task_ids if pk not in held_set)
        train_snapshot = _snapshot(snapshot_request(project=project, kind="preferences", options={"task_ids": train}))
        test_snapshot = _snapshot(snapshot_request(project=project, kind="preferences",
                                                   options={"task_ids": sorted(held)}))
        folds.append((train_snapshot, test_snapshot))
    figures["split"] = {"folds": args.folds or None, "split_seed": SPLIT_SEED,
                        "train_tasks": [len(task_ids) - len(held) for held in _held_out_sets(task_ids, args.folds)],
                        "train_pairs": [train.row_count for train, _ in folds],
                        "held_out_pairs": [test.row_count for _, test in folds],
                        "held_out_pairs_total": sum(test.row_count for _, test in folds)}

    for recipe in args.recipes:
        config = {**BASE, **RECIPES[recipe]}
        if args.tiny:
            config.update(max_length=128, per_device_batch_size=4, num_epochs=1)
            if config.get("train_top_layers"):
                config["train_top_layers"] = 1
        else:
            config.update(bf16=True)
        per_seed = []
        for seed in args.seeds:
            r0 = time.monotonic()
            rows, fold_accuracies, train_metrics = [], [], []
            for index, (train_snapshot, test_snapshot) in enumerate(folds):
                reward_run = _execute(run_trigger(project=project, kind=RunKind.REWARD, input_model=base,
                                                  snapshot=train_snapshot, config_overrides={**config, "seed": seed},
                                                  output_name=f"{recipe}-seed{seed}-fold{index}"))
                score_run = _execute(run_trigger(project=project, kind=RunKind.SCORE,
                                                 input_model=reward_run.output_model, snapshot=test_snapshot,
                                                 config_overrides={"max_length": config["max_length"],
                                                                   "bf16": not args.tiny}))
                fold_rows = _scores(score_run)
                rows += [{"fold": index, "task": row.get("task"), "margin": row["margin"]} for row in fold_rows]
                fold_accuracies.append(score_run.result["metrics"]["pairwise_accuracy"])
                train_metrics.append(reward_run.result["metrics"])
                # a job stopped by its time limit still leaves the folds it finished
                partial = {"recipe": recipe, "seed": seed, "config": config, "fold_accuracies": fold_accuracies,
                           "train_metrics": train_metrics, "rows": rows}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.with_suffix(f".{recipe}.seed{seed}.partial.json").write_text(json.dumps(partial) + "\n")
            accuracy = sum(row["margin"] > 0 for row in rows) / len(rows)
            per_seed.append({"seed": seed, "held_out_accuracy": round(accuracy, 4), "held_out_pairs": len(rows),
                             "fold_accuracies": fold_accuracies, "train_metrics": train_metrics,
                             "seconds": round(time.monotonic() - r0, 1), "margins": [row["margin"] for row in rows],
                             "tasks": [row["task"] for row in rows]})
            print(json.dumps({recipe: {k: v for k, v in per_seed[-1].items() if k not in ("margins", "tasks")}}),
                  flush=True)
        figures["recipes"][recipe] = {"config": config, "seeds": per_seed, **recipe_summary(per_seed)}
    write_figures(figures, args.out)
    return 0


def _held_out_sets(task_ids: list[int], folds: int) -> list[list[int]]:
    """The held-out tasks of each split: `folds` disjoint folds covering every task, or (0) one fixed 20 %."""
    if not folds:
        return [task_ids[: int(len(task_ids) * HELD_OUT_FRACTION)]]
    return [task_ids[index::folds] for index in range(folds)]


def recipe_summary(per_seed: list[dict]) -> dict:
    """Mean ± sd over seeds, a 95 % interval over pairs, and the seeds' ensemble (margins averaged per pair)."""
    accuracies = [row["held_out_accuracy"] for row in per_seed]
    pairs = per_seed[0]["held_out_pairs"]
    mean = statistics.fmean(accuracies)
    ensemble = [statistics.fmean(pair) for pair in zip(*(row["margins"] for row in per_seed), strict=True)]
    ensemble_accuracy = sum(m > 0 for m in ensemble) / len(ensemble)
    return {
        "held_out_accuracy_mean": round(mean, 4),
        "held_out_accuracy_sd": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else None,
        "held_out_accuracy_ci95": [round(x, 4) for x in wilson_interval(mean, pairs)],
        "ensemble_held_out_accuracy": round(ensemble_accuracy, 4),
        "ensemble_ci95": [round(x, 4) for x in wilson_interval(ensemble_accuracy, pairs)],
        "ensemble_margins": ensemble,
    }


def wilson_interval(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95 % interval of a share of n independent trials."""
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_comparison(candidate: list[float], reference: list[float]) -> dict:
    """Exact two-sided sign test on the pairs that one reward model orders right and the other not (McNemar)."""
    only_candidate = sum(a > 0 >= b for a, b in zip(candidate, reference, strict=True))
    only_reference = sum(b > 0 >= a for a, b in zip(candidate, reference, strict=True))
    n, k = only_candidate + only_reference, min(only_candidate, only_reference)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"only_candidate_right": only_candidate, "only_reference_right": only_reference, "p_two_sided": p}


def merge(paths: list[Path], out: Path) -> dict:
    """Merge the JSON of several runs of this bench (say one process per recipe) and compare the recipes.

    Every file must come from the same split (same tasks, folds and seed); each recipe is compared
    with the first one pair by pair, and an ensemble of every recipe averages their seeds' margins, each
    run's margins divided by their own standard deviation first (the scales differ between recipes).
    """
    figures: dict = {"recipes": {}, "merged_from": [str(path) for path in paths]}
    for path in paths:
        part = json.loads(path.read_text())
        if "split" in figures and part["split"] != figures["split"]:
            raise SystemExit(f"{path}: another split than {paths[0]}")
        figures.update({key: part[key] for key in ("split", "base", "import", "tiny") if key in part})
        figures["recipes"].update(part["recipes"])
    tasks = {tuple(seed["tasks"]) for recipe in figures["recipes"].values() for seed in recipe["seeds"]}
    if len(tasks) != 1:
        raise SystemExit("the files' held-out pairs differ: they can't be compared pair by pair")
    names = list(figures["recipes"])
    first = figures["recipes"][names[0]]["ensemble_margins"]
    figures["against_" + names[0]] = {
        name: paired_comparison(figures["recipes"][name]["ensemble_margins"], first) for name in names[1:]}
    standardized = []
    for recipe in figures["recipes"].values():
        for seed in recipe["seeds"]:
            sd = statistics.pstdev(seed["margins"]) or 1.0
            standardized.append([m / sd for m in seed["margins"]])
    combined = [statistics.fmean(pair) for pair in zip(*standardized, strict=True)]
    share = sum(m > 0 for m in combined) / len(combined)
    figures["ensemble_of_every_recipe"] = {
        "runs": len(standardized), "held_out_accuracy": round(share, 4),
        "ci95": [round(x, 4) for x in wilson_interval(share, len(combined))],
        "against_" + names[0]: paired_comparison(combined, first)}
    write_figures(figures, out)
    return figures


def write_figures(figures: dict, out: Path) -> None:
    """Print the summary (no per-pair lists) and write everything to `out`."""
    def brief(value):
        if isinstance(value, dict):
            return {k: brief(v) for k, v in value.items() if k not in ("margins", "tasks", "ensemble_margins")}
        if isinstance(value, list):
            return [brief(v) for v in value]
        return value

    print(json.dumps(brief(figures), indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures) + "\n")


def _snapshot(snapshot):
    from training.services.snapshots import snapshot_build

    return snapshot_build(snapshot=snapshot)


def _execute(run):
    from training.services.execution import gpus_visible, run_execute
    from training.services.snapshots import snapshot_build

    if run.snapshot_id and run.snapshot.state == "building":
        snapshot_build(snapshot=run.snapshot)
    run_execute(run_id=run.pk, worker="bench", gpu_names=gpus_visible())
    run.refresh_from_db()
    if run.state != "succeeded":
        raise SystemExit(f"run {run.pk} ({run.kind}) {run.state}: {run.error}")
    return run


def _scores(run) -> list[dict]:
    from training.services.storage import data_path

    path = data_path(run.run_dir) / "scores.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
