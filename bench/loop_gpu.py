"""Labels → a new policy's answers in the ranking queue, through the platform's own services and engine.

    python bench/loop_gpu.py --hh PATH/hh-rlhf-harmless-sample.jsonl --out loop_gpu.json          # one H200
    python bench/loop_gpu.py --hh PATH --tiny --rankings 40 --out /tmp/loop_tiny.json              # CPU dry run

What it measures, in one process on one machine (SQLite and no broker: this process plays the GPU
worker, calling the same `run_execute` a Celery gpu worker calls, so each run is claimed, its folder
written, the engine launched as a subprocess and the run settled from result.json):
  1. setup (not timed as part of the loop): a project with K = 4, a base model (`make-tiny` with
     Qwen2.5-0.5B's shape: hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864; a locally trained
     BPE tokenizer), RANKINGS ranking tasks built from HH-RLHF lines (the chosen and rejected answers
     plus two answers of other lines) and one ranking each, through the ranking services.
  2. the loop, timed: a `preferences` snapshot → `reward` run (1 epoch over every pair) → promote →
     a `prompts` snapshot → `ppo` run from the base model against the new reward model → promote →
     a sampling job (K answers per prompt, its snapshot, its `sample` run, the answers ingested as
     ranking tasks). Each stage's wall time is reported, and the total.
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

QWEN25_05B_SHAPE = {"hidden_size": 896, "num_layers": 24, "num_heads": 14, "num_kv_heads": 2,
                    "intermediate_size": 4864, "vocab_size": 16000, "max_position_embeddings": 4096}
TINY_SHAPE = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128,
              "vocab_size": 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hh", type=Path, required=True, help="HH-RLHF JSONL (chosen/rejected transcripts)")
    parser.add_argument("--rankings", type=int, default=1000, help="ranking tasks, one ranking each")
    parser.add_argument("--prompts", type=int, default=250, help="prompts the new policy answers (K each)")
    parser.add_argument("--ppo-steps", type=int, default=16)
    parser.add_argument("--tiny", action="store_true", help="a tiny model and small settings (CPU dry run)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="rlhf-loop-bench-"))
    for sub in ("broker/queue", "broker/processed", "broker/control", "celery-results", "data"):
        (var / sub).mkdir(parents=True)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings.local", "RLHF_VAR_DIR": str(var),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                       "TOKENIZERS_PARALLELISM": "false"})
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    figures: dict = {"rankings": args.rankings, "prompts": args.prompts, "tiny": args.tiny}
    gpu = not args.tiny
    project, base = _setup(args, figures)
    started = time.monotonic()
    reward = _train(project, "reward", figures, input_model=base, config={
        "num_epochs": 1, "per_device_batch_size": 16 if gpu else 4, "max_length": 512 if gpu else 128,
        "learning_rate": 1e-5, "bf16": gpu, "torch_compile": gpu, "log_every": 10, "save_every": 10_000,
    })
    _promote(reward, figures, "promote_reward")
    policy = _train(project, "ppo", figures, input_model=base, reward_model=reward, config={
        "max_steps": args.ppo_steps, "per_device_batch_size": 16 if gpu else 2, "num_mini_batches": 4 if gpu else 1,
        "max_prompt_length": 256 if gpu else 64, "max_new_tokens": 128 if gpu else 8, "bf16": gpu,
        "torch_compile": gpu, "save_every": 10_000,
    })
    _promote(policy, figures, "promote_policy")
    job = _sample(project, policy, args, figures, gpu=gpu)
    figures["loop_total_s"] = round(time.monotonic() - started, 1)
    figures["tasks_in_queue_from_new_policy"] = job.tasks_created
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _setup(args, figures):
    from django.contrib.auth import get_user_model

    from annotation.models import Prompt, Role
    from annotation.services.dialogues import prompt_text_hash
    from annotation.services.projects import membership_set, project_create
    from ranking.services.imports import hh_transcript_parse
    from ranking.services.leasing import ranking_task_lease_next
    from ranking.services.rankings import ranking_submit
    from ranking.services.tasks import ResponseSpec, ranking_task_create
    from training.services.execution import run_execute
    from training.services.model_versions import model_make_tiny

    t0 = time.monotonic()
    project = project_create(name="Loop bench", slug="loop-bench")
    project.responses_per_task, project.rankings_per_task = 4, 1
    project.save()
    labelers = []
    for index in range(10):
        user = get_user_model().objects.create_user(f"labeler{index}", password="bench-password-123")
        membership_set(project=project, user=user, role=Role.LABELER)
        labelers.append(user)

    shape = TINY_SHAPE if args.tiny else QWEN25_05B_SHAPE
    run = model_make_tiny(project=project, name="base", config={"architecture": "qwen2", **shape})
    run_execute(run_id=run.pk, worker="bench", gpu_names=_gpus())
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    base = run.output_model
    figures["base_model"] = {"shape": shape, "parameters": base.metrics.get("parameters"),
                             "make_tiny_s": round((run.finished_at - run.created_at).total_seconds(), 1)}

    rows = [json.loads(line) for line in args.hh.read_text().splitlines() if line.strip()]
    rng = random.Random(0)
    made = 0
    for row in rows:
        if made >= args.rankings:
            break
        try:
            chosen, rejected = hh_transcript_parse(row["chosen"]), hh_transcript_parse(row["rejected"])
        except ValueError:  # a line the parser refuses is skipped
            continue
        if chosen[:-1] != rejected[:-1] or not chosen[-1]["content"].strip() or not rejected[-1]["content"].strip():
            continue
        others = [hh_transcript_parse(rng.choice(rows)["chosen"])[-1]["content"] for _ in range(2)]
        answers = [chosen[-1]["content"], rejected[-1]["content"], *others]
        if len({a.strip() for a in answers}) < 4 or not all(a.strip() for a in answers):
            continue
        ranking_task_create(project=project, context=chosen[:-1],
                            responses=[ResponseSpec(content=a, generator="hh-rlhf") for a in answers])
        if not Prompt.objects.filter(project=project, text_hash=prompt_text_hash(chosen[0]["content"])).exists():
            Prompt.objects.create(project=project, text=chosen[0]["content"],
                                  text_hash=prompt_text_hash(chosen[0]["content"]))
        made += 1
    for index in range(made):
        labeler = labelers[index % len(labelers)]
        task = ranking_task_lease_next(project=project, labeler=labeler).task
        by_content = {r.content: r.pk for r in task.responses.all()}
        ids = list(by_content.values())
        # the HH chosen answer first, the rejected one last, the two others between in random order
        middle = ids[2:]
        rng.shuffle(middle)
        ranking_submit(task=task, labeler=labeler, order=[[ids[0]], *[[i] for i in middle], [ids[1]]])
    figures["labels"] = {"ranking_tasks": made, "rankings": made, "pairs": made * 6,
                         "prompts": Prompt.objects.filter(project=project).count(),
                         "setup_s": round(time.monotonic() - t0, 1)}
    return project, base


def _gpus() -> list[str]:
    from training.services.execution import gpus_visible

    return gpus_visible()


def _train(project, kind, figures, *, input_model, reward_model=None, config):
    from training.services.runs import run_trigger

    t0 = time.monotonic()
    run = run_trigger(project=project, kind=kind, input_model=input_model, reward_model=reward_model,
                      config_overrides=config)
    model = _execute(run, figures, kind, t0)
    return model


def _execute(run, figures, label, t0):
    from training.services.execution import run_execute
    from training.services.snapshots import snapshot_build

    snapshot_s = 0.0
    if run.snapshot_id:
        s0 = time.monotonic()
        snapshot_build(snapshot=run.snapshot)  # what the default-queue worker does
        snapshot_s = time.monotonic() - s0
        run.snapshot.refresh_from_db()
    e0 = time.monotonic()
    run_execute(run_id=run.pk, worker="bench", gpu_names=_gpus())
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    engine_s = (run.finished_at - run.engine_started_at).total_seconds() if run.engine_started_at else None
    figures[label] = {
        "total_s": round(time.monotonic() - t0, 1),
        "snapshot_s": round(snapshot_s, 2),
        "snapshot_rows": run.snapshot.row_count if run.snapshot_id else None,
        "execute_s": round(time.monotonic() - e0, 1),
        "engine_s": round(engine_s, 1) if engine_s else None,
        "metrics": run.result.get("metrics") if run.result else None,
    }
    return getattr(run, "output_model", None)


def _promote(model, figures, label):
    from training.services.model_versions import model_promote

    t0 = time.monotonic()
    model_promote(model=model, reason="bench")
    figures[label] = {"total_s": round(time.monotonic() - t0, 3)}


def _sample(project, policy, args, figures, *, gpu: bool):
    from training.services.sampling import sampling_job_start

    t0 = time.monotonic()
    job = sampling_job_start(project=project, model=policy, num_prompts=args.prompts, responses_per_prompt=4,
                             config_overrides={"max_new_tokens": 128 if gpu else 8, "batch_size": 64 if gpu else 8,
                                               "bf16": gpu, "temperature": 1.0})
    _execute(job.run, figures, "sample", t0)
    job.refresh_from_db()
    figures["sample"]["tasks_created"] = job.tasks_created
    figures["sample"]["tasks_skipped"] = job.tasks_skipped
    return job


if __name__ == "__main__":
    sys.exit(main())
