"""Schemathesis over the OpenAPI schema, in process (WSGI), as each role: the suite's bounded run
(tests/config/test_api_fuzz.py) and the long one (bench/fuzz.py) share this module.

Each operation gets generated requests in both of Schemathesis' modes — positive (what the schema
allows) and negative (what it doesn't) — half of them on the ids of rows that exist (the world's
project, dialogue, task, run…), half on generated ids. Every response is checked for a server
error (5xx) and, where the status is documented, against the response schema; failures are
counted, never raised, so one run measures everything.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import schemathesis
from django.contrib.auth.models import Permission
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup

from annotation.models import Role
from annotation.services.api_tokens import api_token_create
from annotation.services.dialogues import dialogue_submit
from config.wsgi import application
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.ranking.factories import RankingFactory, RankingTaskFactory
from tests.training.factories import (
    DatasetSnapshotFactory,
    SamplingJobFactory,
    TrainingRunFactory,
    metric_points_add,
    trained_model,
)
from training.models import ModelKind, RunKind, RunState

ROLES = ("labeler", "reviewer", "manager", "engineer", "outsider")
# Revoking the token the run authenticates with would turn every later request into a 401.
EXCLUDED = {("POST", "/api/auth/token/revoke/")}
CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass
class World:
    """One project with a row of every kind, its people in each role, and an outsider."""

    tokens: dict[str, str]
    ids: dict[str, list]  # path parameter name -> ids (or keys) that exist


def world_build() -> World:
    project, elsewhere = ProjectFactory(name="Fuzzed project"), ProjectFactory(name="Someone else's")
    users = {role: UserFactory(username=f"fuzz-{role}") for role in ROLES}
    for role in (Role.LABELER, Role.REVIEWER, Role.MANAGER):
        MembershipFactory(project=project, user=users[role], role=role)
    MembershipFactory(project=project, user=users["engineer"], role=Role.LABELER)
    users["engineer"].user_permissions.add(Permission.objects.get(codename="use_training_api"))
    MembershipFactory(project=elsewhere, user=users["outsider"], role=Role.MANAGER)

    PromptFactory(project=project)
    draft = DialogueFactory(project=project, author=users["labeler"])
    submitted = DialogueFactory(project=project, author=users["labeler"])
    dialogue_submit(dialogue=submitted, author=users["labeler"])
    tasks = [RankingTaskFactory(project=project) for _ in range(3)]
    RankingFactory(task=tasks[0], labeler=users["reviewer"])
    base = trained_model(project, kind=ModelKind.BASE, run_kind=RunKind.SFT, name="base")
    run = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.RUNNING, step=2, total_steps=9,
                             finished_at=None, input_model=base)
    metric_points_add(run, [{"step": step, "loss": 1.0 / step} for step in (1, 2)])
    failed = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.FAILED, input_model=base)
    snapshot = DatasetSnapshotFactory(project=project)
    job = SamplingJobFactory(project=project, model=base)
    tokens = {role: api_token_create(user=user, name="fuzz")[1] for role, user in users.items()}
    return World(tokens=tokens, ids={
        "project_id": [project.pk, elsewhere.pk],
        "dialogue_id": [draft.pk, submitted.pk],
        "task_id": [task.pk for task in tasks],
        "run_id": [run.pk, failed.pk],
        "model_id": [base.pk],
        "snapshot_id": [snapshot.pk],
        "job_id": [job.pk],
        "evaluation_id": [1],
        "key": ["sft", "preferences", "ppo", "promote", "sample"],
    })


def schema_load(token: str) -> schemathesis.BaseSchema:
    """The schema the API serves (drf-spectacular), loaded through the WSGI app: requests stay in process."""
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application,
                                          headers={"Authorization": f"Token {token}"})


@dataclass
class FuzzResult:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: Counter = field(default_factory=Counter)  # "METHOD /path" -> count
    schema_violations: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # the first failures, as curl commands with the reason

    def add(self, other: FuzzResult) -> None:
        self.requests += other.requests
        for mine, theirs in ((self.statuses, other.statuses), (self.server_errors, other.server_errors),
                             (self.schema_violations, other.schema_violations)):
            mine.update(theirs)
        self.examples += other.examples[: max(0, 40 - len(self.examples))]


def operations(schema: schemathesis.BaseSchema, *, only: set[str] | None = None) -> list:
    """Every operation but the excluded ones (``only``: those labels, "POST /api/runs/", alone)."""
    found = [result.ok() for result in schema.get_all_operations()]
    kept = (op for op in found if (op.method.upper(), op.path) not in EXCLUDED and (not only or op.label in only))
    return sorted(kept, key=lambda op: op.label)


def cases_generate(schema: schemathesis.BaseSchema, *, ids: dict[str, list], per_operation: int,
                   seed: int = 0, only: set[str] | None = None) -> list:
    """Generate about ``per_operation`` requests for every operation: positive and negative, each half on
    existing ids (when the path names one) and half on generated ones. The same requests are then sent
    as each role (``cases_send``): generating costs more than sending."""
    cases: list = []
    rng = random.Random(seed)
    for operation in operations(schema, only=only):
        names = [p.name for p in operation.path_parameters]
        others = [p for p in operation.iter_parameters() if p.location != "path"] or operation.body
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            known = {name: rng.choice(ids[name]) for name in names if name in ids}
            for fixed in ({}, known) if known else ({},):
                if mode == GenerationMode.NEGATIVE and not others and (fixed or not names):
                    continue  # nothing left to break: Hypothesis would try hundreds of times before giving up
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)

                @hypothesis_seed(rng.randrange(2**32))
                @settings(max_examples=max(1, per_operation // 4), deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def collect(case):
                    cases.append(case)

                try:
                    collect()
                except Unsatisfiable:  # e.g. a body whose every value is valid
                    pass
    return cases


def cases_send(cases: list, *, token: str, progress=None) -> FuzzResult:
    """Send every case with this token; count statuses, server errors and schema violations."""
    result = FuzzResult()
    headers = {"Authorization": f"Token {token}"}
    for index, case in enumerate(cases):
        _send_one(case, headers=headers, result=result)
        if progress is not None and index % 500 == 499:
            progress(result)
    return result


def _send_one(case, *, headers: dict, result: FuzzResult) -> None:
    response = case.call(headers=headers)
    result.requests += 1
    result.statuses[response.status_code] += 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        label = f"{case.method.upper()} {case.operation.path}"
        for failure in group.exceptions:
            kind = result.server_errors if type(failure).__name__ == "ServerError" else result.schema_violations
            key = f"{label}: {failure.title}"
            kind[key] += 1
            if kind[key] == 1 and len(result.examples) < 40:  # the first of each kind, with how to send it again
                result.examples.append(f"{response.status_code} {key}: {str(failure.message)[:400]}\n"
                                       f"    {case.as_curl_command()[:600]}")
