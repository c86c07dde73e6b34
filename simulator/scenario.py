"""A simulated team runs the loop through the REST API until the figures can be read.

``simulate`` plays a working day:
1. the manager imports the prompts; the ML engineer registers the base model and waits for it;
2. labelers write demonstrations and the reviewer accepts (or rejects, then the author revises) them;
3. the engineer switches the loop on with the plan's thresholds and config templates: from here on
   celery beat starts every step (SFT, sampling, reward model, PPO, promotion; with
   ``min_win_rate_to_promote`` the loop itself asks people to judge each new policy first);
4. labelers rank what the loop puts in the queue and judge the evaluation tasks it makes, while the
   loop needs labels: until a reward model exists, then ``fresh_tasks`` more completed tasks for the
   platform's reward checks; afterwards they only judge;
5. with ``dpo`` in the plan, once the reward model exists the engineer trains DPO from the same SFT
   policy on the same preference snapshot and asks people to judge it against the SFT policy.
It stops once the PPO policy's evaluation is complete, the reward model has been checked on fresh
tasks and DPO (if any) is judged, or raises ``SimulationError`` when a run fails or time runs out.

Setup that has no REST endpoint (the project, its users and their roles) is done beforehand by
``manage.py simulation_setup``, which prints the accounts this module logs in with.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from simulator.answers import BuiltSource, HhSource, pairs_of
from simulator.client import Client, HttpTransport
from simulator.noise import (
    INSTRUCTGPT_AGREEMENT,
    RunningCalibration,
    calibrate_temperature,
    expected_agreement,
)
from simulator.preferences import HiddenPreference, preference_get
from simulator.team import CAREFUL, CARELESS, Labeler, Reviewer, revise_rejected, write_demonstration


class SimulationError(RuntimeError):
    """The loop did not get where the plan needs it (a failed run, or time ran out)."""


@dataclass(frozen=True)
class Plan:
    """What the team does and how the loop is set up; ``TINY`` and ``SMOLLM2`` below are the two sizes."""

    name: str
    preference: str  # simulator.preferences name
    source: str  # "built" (BuiltSource) or "hh" (HhSource, needs a file)
    prompts: int  # imported into the queue
    demonstrations: int  # accepted demonstrations the team writes before the loop starts
    accept_from: float | None  # the reviewer rejects answers scoring below this (None: accepts all)
    base_model: dict  # POST /api/models/ fields: {"tiny": {...}}, {"path": ...} or {"gguf_file": ...}
    loop: dict  # PUT /api/projects/{id}/loop/ fields besides enabled and base_model
    fresh_tasks: int  # completed ranking tasks after the reward model's snapshot (its held-out set)
    # the loop's min_win_rate_to_promote: people judge each new policy against the current one before
    # it is promoted (the first evaluation, SFT against the base model, holds the test prompts out
    # before PPO sees any prompt). None: no gate; the engineer asks for PPO's evaluation once it exists.
    gate: float | None = None
    dpo: dict | None = None  # DPO run config overrides; None: no DPO run
    agreement: float = INSTRUCTGPT_AGREEMENT  # two careful labelers agree on this share of pairs
    timeout_s: float = 900.0


# The suite's tiny models on 2 CPU cores (tests/e2e/test_simulated_loop.py says why each size; the test
# leaves DPO out, bench/simulated_loop.py --tiny keeps it).
TINY = Plan(
    name="tiny", preference="tiny", source="built", prompts=480, demonstrations=40, accept_from=0.5,
    base_model={"tiny": {}},
    loop={
        "sft_min_new_demonstrations": 40, "reward_min_new_rankings": 180, "prompts_per_sampling_job": 30,
        "queue_low_water": 10, "preference_method": "reward_ppo", "auto_promote": True, "evaluation_prompts": 200,
        "config_templates": {
            "sft": {"max_steps": 120, "per_device_batch_size": 8, "max_length": 64, "learning_rate": 1.5e-3,
                    "lr_scheduler": "constant", "log_every": 10, "save_every": 1000},
            "reward": {"max_steps": 150, "per_device_batch_size": 8, "max_length": 64, "learning_rate": 5e-4,
                       "lr_scheduler": "constant", "log_every": 10, "save_every": 1000},
            "ppo": {"max_steps": 48, "per_device_batch_size": 16, "num_mini_batches": 2, "num_ppo_epochs": 2,
                    "learning_rate": 3e-4, "lr_scheduler": "constant", "kl_coef": 0.03, "max_new_tokens": 24,
                    "max_prompt_length": 48, "temperature": 1.0, "save_every": 1000},
            "dpo": {"max_steps": 100, "per_device_batch_size": 8, "max_length": 64, "learning_rate": 3e-4,
                    "lr_scheduler": "constant", "beta": 0.1, "log_every": 10, "save_every": 1000},
            "sample": {"max_new_tokens": 24, "temperature": 1.0, "batch_size": 16},
            "score": {"max_length": 64, "batch_size": 16},
        },
    },
    fresh_tasks=16, dpo={}, timeout_s=900.0,
)

# SmolLM2-135M-Instruct on one H200 (bench/simulated_loop.py; figures in bench/RESULTS.md): about 9
# minutes in all. missing_eos_penalty came after the two measured runs: in one of them PPO learnt to
# run every answer to max_new_tokens (EOS in 1.6 % of rollouts, KL 7.3) and tied SFT.
SMOLLM2 = Plan(
    name="smollm2", preference="rich", source="hh", prompts=900, demonstrations=160, accept_from=0.5,
    base_model={},  # given on the command line: {"gguf_file": ...} or {"path": ...}
    loop={
        "sft_min_new_demonstrations": 160, "reward_min_new_rankings": 480, "prompts_per_sampling_job": 96,
        "queue_low_water": 24, "preference_method": "reward_ppo", "auto_promote": True, "evaluation_prompts": 100,
        "config_templates": {
            "sft": {"num_epochs": 2, "per_device_batch_size": 16, "max_length": 512, "learning_rate": 2e-5,
                    "bf16": True, "log_every": 5, "save_every": 10000},
            "reward": {"num_epochs": 1, "per_device_batch_size": 16, "max_length": 512, "learning_rate": 2e-5,
                       "bf16": True, "log_every": 5, "save_every": 10000},
            "ppo": {"max_steps": 24, "per_device_batch_size": 32, "num_mini_batches": 2, "num_ppo_epochs": 2,
                    "learning_rate": 1e-5, "kl_coef": 0.05, "max_new_tokens": 128, "max_prompt_length": 256,
                    "temperature": 0.8, "missing_eos_penalty": 1.0, "bf16": True, "save_every": 10000},
            "dpo": {"num_epochs": 1, "per_device_batch_size": 8, "max_length": 512, "learning_rate": 2e-6,
                    "beta": 0.1, "bf16": True, "log_every": 5, "save_every": 10000},
            "sample": {"max_new_tokens": 128, "temperature": 0.8, "top_p": 0.95, "batch_size": 64, "bf16": True},
            "score": {"max_length": 512, "batch_size": 32, "bf16": True},
        },
    },
    fresh_tasks=40, dpo={}, timeout_s=560.0,
)

PLANS = {"tiny": TINY, "smollm2": SMOLLM2}


@dataclass(frozen=True)
class Accounts:
    """Who logs in: what ``manage.py simulation_setup`` printed."""

    project: int
    password: str
    manager: str  # manager of the project and an ML engineer (it drives the training API)
    reviewer: str
    labelers: list[str]
    careless: list[str]

    @classmethod
    def from_json(cls, data: dict) -> Accounts:
        return cls(project=data["project"], password=data["password"], manager=data["manager"],
                   reviewer=data["reviewer"], labelers=list(data["labelers"]), careless=list(data["careless"]))


@dataclass
class Record:
    """What the simulation did and saw, for the report."""

    project: int
    plan: str
    seed: int  # every labeler's noise comes from random.Random(f"{seed}:{username}")
    temperature: float  # the careful labelers' temperature at the end
    calibration_agreement: float  # two careful labelers' expected agreement on every pair they were given
    initial_temperature: float  # calibrated on the answer source, before any task
    styles: dict[str, str]  # username -> careful / careless
    rankings_per_task: int
    timings: dict[str, float] = field(default_factory=dict)  # event -> seconds since the start
    models: dict[str, int] = field(default_factory=dict)  # base / sft / reward / ppo / dpo -> model id
    evaluations: dict[str, int] = field(default_factory=dict)  # "ppo" / "dpo" / "sft" -> evaluation id
    demonstrations: dict[str, int] = field(default_factory=dict)
    work: dict[str, dict[str, int]] = field(default_factory=dict)  # username -> rankings / judgements / …
    runs: list[dict] = field(default_factory=list)  # every run's state changes, as seen
    temperatures: dict[str, float] = field(default_factory=dict)  # "task:username" -> a careful labeler's T
    platform_notes: list[str] = field(default_factory=list)  # what went wrong on the platform's side
    http: dict[str, float] = field(default_factory=dict)  # the team's requests and the time they took

    def to_json(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def source_for(plan: Plan, *, hh_path: Path | None, seed: int = 0):
    if plan.source == "built":
        return BuiltSource(seed=seed)
    if hh_path is None:
        raise SimulationError(f"plan {plan.name!r} writes demonstrations from HH-RLHF: give its file (--hh PATH)")
    return HhSource(hh_path, seed=seed)


def calibrate(plan: Plan, source) -> tuple[float, float]:
    """Return the careful labelers' temperature and the agreement it gives, on pairs of the source's answers."""
    preference = preference_get(plan.preference)
    diffs = [preference.score(a) - preference.score(b) for a, b in pairs_of(source.sample_answers(400), count=4000)]
    temperature = calibrate_temperature(diffs, target=plan.agreement)
    return temperature, expected_agreement(diffs, temperature)


class Simulation:
    """The team, the engineer and the loop's state as the API shows it."""

    def __init__(self, *, transport: HttpTransport, accounts: Accounts, plan: Plan, source, seed: int | None = None,
                 log: Callable[[str], None] = print) -> None:
        """``seed`` seeds every labeler's noise (and is recorded); None draws one, so runs are independent:
        with one fixed seed every run replays the same luck of the draw (seed 0 happened to make careful
        labelers agree 5 points less than their temperatures promise, run after run)."""
        seed = random.SystemRandom().randrange(2**31) if seed is None else seed
        self.plan, self.source, self.log, self.transport = plan, source, log, transport
        self.project = accounts.project
        self.preference: HiddenPreference = preference_get(plan.preference)
        initial, calibrated = calibrate(plan, source)
        self.calibration = RunningCalibration(initial=initial, target=plan.agreement)
        self.engineer = Client(transport, accounts.manager, accounts.password)
        self.reviewer = Reviewer(Client(transport, accounts.reviewer, accounts.password), self.preference,
                                 accept_from=plan.accept_from)
        self.labelers = [
            Labeler(Client(transport, name, accounts.password), CARELESS if name in accounts.careless else CAREFUL,
                    initial, random.Random(f"{seed}:{name}"))
            for name in [*accounts.labelers, *accounts.careless]
        ]
        project = self.engineer.get(f"/api/projects/{self.project}/")
        self.record = Record(
            project=self.project, plan=plan.name, seed=seed, temperature=initial, calibration_agreement=calibrated,
            initial_temperature=initial,
            styles={labeler.username: labeler.style for labeler in self.labelers},
            rankings_per_task=project["rankings_per_task"],
        )
        self.started = time.monotonic()
        self._ranked: dict[int, list[datetime]] = {}  # ranking task -> when each of our rankings was made
        self._fresh_after: datetime | None = None  # the reward model's labels_until
        self._dpo_run: int | None = None
        self._judging = False  # an evaluation waits for judgements
        self._evaluation_states: dict[int, str] = {}
        self._resting: set[str] = set()  # labelers with nothing to judge until an evaluation changes state
        self._checked_tasks = 0  # fresh tasks the platform has checked the reward model on
        self._run_states: dict[int, str] = {}
        self._calibrated_tasks: set[int] = set()

    # ---- the day, top to bottom ----

    def run(self) -> Record:
        self._mark("start")
        self._import_prompts()
        self.record.models["base"] = self._register_base()
        self._mark("base model")
        self._write_demonstrations()
        self._mark("demonstrations accepted")
        self.engineer.call("PUT", f"/api/projects/{self.project}/loop/", {
            "enabled": True, "base_model": self.record.models["base"], "min_win_rate_to_promote": self.plan.gate,
            **self.plan.loop,
        })
        self._mark("loop on")
        last_look = 0.0
        while not self._done():
            if time.monotonic() - self.started > self.plan.timeout_s:
                raise SimulationError(f"time ran out after {self.plan.timeout_s:.0f} s: {self._where()}")
            if time.monotonic() - last_look > 1.5:
                self._look()
                last_look = time.monotonic()
            if not self._work_round():
                time.sleep(1.0)
        self._mark("done")
        self.record.work = {
            labeler.username: {"demonstrations": labeler.demonstrations, "rankings": labeler.rankings,
                               "judgements": labeler.judgements, "skipped": labeler.skipped}
            for labeler in self.labelers
        }
        self.record.demonstrations = {"accepted": self.reviewer.accepted, "rejected": self.reviewer.rejected}
        self.record.http = {"requests": self.transport.requests, "seconds": round(self.transport.seconds, 1)}
        self.record.temperature = self.calibration.temperature
        self.record.calibration_agreement = self.calibration.agreement() or self.record.calibration_agreement
        return self.record

    def _mark(self, event: str) -> None:
        self.record.timings[event] = round(time.monotonic() - self.started, 1)
        self.log(f"[{self.record.timings[event]:7.1f} s] {event}")

    # ---- setup through the API ----

    def _import_prompts(self) -> None:
        lines = "".join(json.dumps({"prompt": text}) + "\n" for text in self.source.prompts(self.plan.prompts))
        report = self.engineer.upload(f"/api/projects/{self.project}/import/", fields={"format": "prompts-jsonl"},
                                      filename="prompts.jsonl", content=lines.encode())
        self.log(f"imported {report['created']} prompts")

    def _register_base(self) -> int:
        name = f"{self.plan.name}-base"
        self.engineer.post("/api/models/", {"project": self.project, "name": name, **self.plan.base_model},
                           expect=(201, 202))
        while True:
            found = self.engineer.get(f"/api/models/?project={self.project}&kind=base&limit=100")["results"]
            model = next((m for m in found if m["name"] == name), None)
            if model is not None:
                return model["id"]
            self._watch_runs()
            time.sleep(1.0)

    def _write_demonstrations(self) -> None:
        while self.reviewer.accepted < self.plan.demonstrations:
            wrote = 0
            for labeler in self.labelers:
                if self.reviewer.accepted + wrote >= self.plan.demonstrations:
                    break
                wrote += write_demonstration(labeler, project_id=self.project, source=self.source)
            reviewed = self.reviewer.review_queue(self.project)
            revised = sum(revise_rejected(labeler, project_id=self.project, source=self.source)
                          for labeler in self.labelers)
            if not (wrote or reviewed or revised):
                raise SimulationError("the prompt queue ran dry before the demonstrations were written")

    # ---- watching the loop ----

    def _look(self) -> None:
        """Read models, evaluations and runs; start DPO and its evaluation when their time comes."""
        self._watch_runs()
        models = self.engineer.get(f"/api/models/?project={self.project}&limit=200")["results"]
        by_kind: dict[str, list[dict]] = {}
        for model in sorted(models, key=lambda m: m["id"]):
            if model["run"] is not None:
                by_kind.setdefault(model["kind"], []).append(model)
        for kind, key in (("sft", "sft"), ("reward", "reward")):
            if by_kind.get(kind) and key not in self.record.models:
                self.record.models[key] = by_kind[kind][0]["id"]
                self._mark(f"{key} model {by_kind[kind][0]['name']}")
        for model in by_kind.get("policy", []):
            detail = self.engineer.get(f"/api/runs/{model['run']['id']}/")
            key = "ppo" if detail["kind"] == "ppo" else "dpo"
            if key not in self.record.models:
                self.record.models[key] = model["id"]
                self._mark(f"{key} model {model['name']}")
        if "reward" in self.record.models and self._fresh_after is None:
            reward = self.engineer.get(f"/api/models/{self.record.models['reward']}/")
            snapshot = self.engineer.get(f"/api/snapshots/{reward['snapshot']['id']}/")
            self._fresh_after = _when(snapshot["labels_until"])
        if self.plan.dpo is not None and "reward" in self.record.models and self._dpo_run is None:
            self._dpo_run = self._start_dpo()
        self._find_evaluations()
        if "reward" in self.record.models:
            reward = self.engineer.get(f"/api/models/{self.record.models['reward']}/")
            self._checked_tasks = ((reward.get("reward_agreement") or {}).get("total") or {}).get("tasks", 0)

    def _start_dpo(self) -> int:
        reward = self.engineer.get(f"/api/models/{self.record.models['reward']}/")
        answer = self.engineer.post("/api/runs/", {
            "project": self.project, "kind": "dpo", "input_model": reward["parent"]["id"],
            "snapshot": reward["snapshot"]["id"], "config": self.plan.dpo, "name": f"{self.plan.name}-dpo",
        }, expect=(202,)).body
        self._mark(f"dpo run {answer['id']} started")
        return answer["id"]

    def _find_evaluations(self) -> None:
        evaluations = self.engineer.get(f"/api/evaluations/?project={self.project}&limit=100")["results"]
        sft, base = self.record.models.get("sft"), self.record.models.get("base")
        for key in ("ppo", "dpo"):
            model = self.record.models.get(key)
            if model is None or key in self.record.evaluations:
                continue
            found = next((e for e in evaluations if {m["id"] for m in e["models"]} == {model, sft}), None)
            if found is None and (key == "dpo" or self.plan.gate is None):  # else the loop asks for it
                found = self.engineer.post("/api/evaluations/", {
                    "project": self.project, "models": [model, sft],
                    "num_prompts": self.plan.loop.get("evaluation_prompts", 50),
                }, expect=(202,)).body
            if found is not None:
                self.record.evaluations[key] = found["id"]
                self._mark(f"evaluation {found['id']}: {key} against sft")
        if "sft" not in self.record.evaluations and sft is not None:
            found = next((e for e in evaluations if {m["id"] for m in e["models"]} == {sft, base}), None)
            if found is not None:
                self.record.evaluations["sft"] = found["id"]
                self._mark(f"evaluation {found['id']}: sft against base")
        self._judging = any(e["state"] == "judging" for e in evaluations)
        states = {e["id"]: e["state"] for e in evaluations}
        if states != self._evaluation_states:
            self._resting.clear()  # an evaluation started judging (or a new one came): everyone may judge again
        self._evaluation_states = states

    def _watch_runs(self) -> None:
        """Log each run's state as it changes; raise when a run the plan needs failed.

        A failed ``score`` run (a reward check) is noted in the record and not fatal: the check is
        tried again with the next tasks, and the report says whether any check succeeded.
        """
        for run in self.engineer.get(f"/api/runs/?project={self.project}&limit=200")["results"]:
            if self._run_states.get(run["id"]) == run["state"]:
                continue
            self._run_states[run["id"]] = run["state"]
            self.record.runs.append({"id": run["id"], "kind": run["kind"], "state": run["state"],
                                     "at_s": round(time.monotonic() - self.started, 1)})
            self.log(f"[{time.monotonic() - self.started:7.1f} s]   run {run['id']} ({run['kind']}) {run['state']}")
            if run["state"] == "failed":
                error = self.engineer.get(f"/api/runs/{run['id']}/").get("error")
                if run["kind"] != "score":
                    raise SimulationError(f"run {run['id']} ({run['kind']}) failed: {error}")
                self.record.platform_notes.append(f"reward check run {run['id']} failed: {error}")

    def _fresh_completed(self) -> int:
        if self._fresh_after is None:
            return 0
        need = self.record.rankings_per_task
        return sum(1 for times in self._ranked.values() if len(times) >= need and min(times) > self._fresh_after)

    def _wants_rankings(self) -> bool:
        return "reward" not in self.record.models or self._fresh_completed() < self.plan.fresh_tasks

    def _where(self) -> str:
        loop = self.engineer.get(f"/api/projects/{self.project}/loop/")
        steps = "; ".join(f"{s.get('title')}: {s.get('waiting_for')}" for s in loop.get("steps", []))
        return f"models {self.record.models}, evaluations {self.record.evaluations}, loop: {steps}"

    def _done(self) -> bool:
        """The PPO (and DPO) policy judged against SFT, and the reward model checked on fresh tasks."""
        needed = ["ppo"] + (["dpo"] if self.plan.dpo is not None else [])
        if any(self._evaluation_states.get(self.record.evaluations.get(key)) != "complete" for key in needed):
            return False
        return self._fresh_completed() >= self.plan.fresh_tasks and self._checked_tasks > 0

    # ---- the team at work ----

    def _work_round(self) -> bool:
        """Each labeler takes one task if the loop needs one; return whether anyone worked.

        Once the loop needs no more rankings, labelers only judge evaluation tasks (served first); one
        who is served a ranking task then skips it (the lease would hide evaluation tasks from them) and
        rests until an evaluation changes state (a new one, or one whose tasks are now there to judge).
        """
        wants_rankings = self._wants_rankings()
        if not (wants_rankings or self._judging):
            return False
        worked = False
        for labeler in self.labelers:
            if not wants_rankings and labeler.username in self._resting:
                continue
            reply = labeler.client.post(f"/api/ranking-tasks/next/?project={self.project}", expect=(200, 204))
            if reply.status == 204:
                continue
            task = reply.body
            if task["purpose"] != "evaluation" and not wants_rankings:
                labeler.skip(task)
                self._resting.add(labeler.username)
                continue
            if task["purpose"] != "evaluation" and task["id"] not in self._calibrated_tasks:
                self._calibrated_tasks.add(task["id"])
                texts = dict.fromkeys(response["content"] for response in task["responses"])
                temperature = self.calibration.add([self.preference.score(text) for text in texts])
                for member in self.labelers:
                    member.temperature = temperature
            if labeler.style == CAREFUL:
                self.record.temperatures[f"{task['id']}:{labeler.username}"] = labeler.temperature
            ranking = labeler.work_on(task, self.preference)
            if task["purpose"] != "evaluation":
                self._ranked.setdefault(task["id"], []).append(_when(ranking["created_at"]))
            worked = True
        return worked


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
