"""A reward model on real human preferences, through the platform: import → snapshot → run → score.

    python bench/hh_reward.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --hh hh-rlhf-harmless-sample.jsonl \
        --recipes baseline low_lr lora --seeds 0 1 2 --out hh_reward.json           # one H200
    python bench/hh_reward.py --tiny --hh PATH --recipes baseline --seeds 0 --out /tmp/hh_tiny.json   # CPU dry run

Like bench/loop_gpu.py it runs the platform's own services in one process (SQLite, no broker; this
process plays the GPU worker through `run_execute`): the GGUF becomes the base model by an
`import-gguf` run; the HH-RLHF lines are imported as K = 2 ranking tasks carrying their human
preference (`skip_invalid`: Anthropic's file holds 4 lines that can't be tasks); a fixed 20 % of the
tasks (seeded) is held out; a `preferences` snapshot of the other tasks trains each recipe with each
seed (`reward` run, nothing held out inside it), and a `score` run of that reward model on the
held-out tasks' snapshot gives its pairwise accuracy on pairs the training never saw. An ensemble
per recipe averages the seeds' margins pair by pair.
"""

from __future__ import annotations

import argparse
import io
import json
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
RECIPES = {
    "baseline": {},
    "low_lr": {"learning_rate": 5e-6, "num_epochs": 1, "warmup_ratio": 0.1, "lr_scheduler": "cosine"},
    "mid_lr": {"learning_rate": 1e-5, "num_epochs": 1, "warmup_ratio": 0.1, "lr_scheduler": "cosine"},
    "lora": {"learning_rate": 2e-4, "num_epochs": 2, "warmup_ratio": 0.1, "lr_scheduler": "cosine",
             "lora": {"r": 32, "alpha": 64, "dropout": 0.05}},
    "no_margin": {"margin_scale": 0.0},
}
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 1234


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, help="the base model as GGUF (SmolLM2-135M-Instruct)")
    parser.add_argument("--hh", type=Path, required=True)
    parser.add_argument("--recipes", nargs="+", default=["baseline"], choices=sorted(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model, 60 lines, short runs (CPU dry run)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.tiny and not args.gguf:
        parser.error("--gguf is required unless --tiny")

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
    held = sorted(task_ids[: int(len(task_ids) * HELD_OUT_FRACTION)])
    train = sorted(task_ids[len(held):])
    train_snapshot = _snapshot(snapshot_request(project=project, kind="preferences", options={"task_ids": train}))
    test_snapshot = _snapshot(snapshot_request(project=project, kind="preferences", options={"task_ids": held}))
    figures["split"] = {"train_tasks": len(train), "held_out_tasks": len(held),
                        "train_pairs": train_snapshot.row_count, "held_out_pairs": test_snapshot.row_count}

    for recipe in args.recipes:
        config = {**BASE, **RECIPES[recipe]}
        if args.tiny:
            config.update(max_length=128, per_device_batch_size=4, num_epochs=1)
        else:
            config.update(bf16=True)
        per_seed, margins = [], []
        for seed in args.seeds:
            r0 = time.monotonic()
            reward_run = _execute(run_trigger(project=project, kind=RunKind.REWARD, input_model=base,
                                              snapshot=train_snapshot, config_overrides={**config, "seed": seed},
                                              output_name=f"{recipe}-seed{seed}"))
            score_run = _execute(run_trigger(project=project, kind=RunKind.SCORE, input_model=reward_run.output_model,
                                             snapshot=test_snapshot,
                                             config_overrides={"max_length": config["max_length"],
                                                               "bf16": not args.tiny}))
            scores = _scores(score_run)
            margins.append([row["margin"] for row in scores])
            per_seed.append({"seed": seed, "held_out_accuracy": score_run.result["metrics"]["pairwise_accuracy"],
                             "train_metrics": reward_run.result["metrics"], "seconds": round(time.monotonic() - r0, 1)})
            print(json.dumps({recipe: per_seed[-1]}), flush=True)
        accuracies = [row["held_out_accuracy"] for row in per_seed]
        ensemble = [statistics.fmean(pair) for pair in zip(*margins, strict=True)]
        figures["recipes"][recipe] = {
            "config": config, "seeds": per_seed,
            "held_out_accuracy_mean": round(statistics.fmean(accuracies), 4),
            "held_out_accuracy_sd": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else None,
            "ensemble_held_out_accuracy": round(sum(m > 0 for m in ensemble) / len(ensemble), 4),
        }
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


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
