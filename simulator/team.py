"""The simulated team: labelers who write demonstrations and rank or judge answers, and a reviewer.

Everything goes through the REST API with each person's own token, as the browser pages would:
``POST /api/dialogues/next-prompt/`` → ``PUT /api/dialogues/{id}/`` → ``POST …/submit/`` for a
demonstration; ``GET /api/dialogues/review-queue/`` → ``POST …/review/`` for the reviewer;
``POST /api/ranking-tasks/next/`` → ``POST /api/ranking-tasks/{id}/rankings/`` for a ranking or a
judgement. Nobody here reads the database.

Careful labelers rank by the hidden score with Bradley–Terry noise (``noise.py``) and take their time
(``time_spent_ms`` drawn around half a minute, reported, not slept). Careless ones order answers at
random, in a second or two: the project's ranking quality page should flag them.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass

from simulator.client import Client
from simulator.noise import noisy_order, preference_probability
from simulator.preferences import HiddenPreference

CAREFUL, CARELESS = "careful", "careless"


@dataclass
class Labeler:
    """One labeler: an API client, a style (careful or careless) and, if careful, a noise temperature."""

    client: Client
    style: str
    temperature: float
    rng: random.Random
    demonstrations: int = 0
    rankings: int = 0
    judgements: int = 0
    skipped: int = 0

    @property
    def username(self) -> str:
        return self.client.username

    def seconds_spent(self) -> float:
        """How long this ranking took, as reported to the platform (never slept)."""
        if self.style == CARELESS:
            return self.rng.uniform(0.8, 2.5)
        return math.exp(self.rng.gauss(math.log(30.0), 0.4))  # a median of half a minute

    def order_answers(self, responses: list[dict], preference: HiddenPreference) -> list[list[int]]:
        """Return my ranking of the answers, best first: groups of response ids (identical texts tie)."""
        texts = list(dict.fromkeys(response["content"] for response in responses))
        if self.style == CARELESS:
            ranked = self.rng.sample(texts, len(texts))
        else:
            order = noisy_order([preference.score(text) for text in texts], self.temperature, self.rng)
            ranked = [texts[index] for index in order]
        return [[r["id"] for r in responses if r["content"] == text] for text in ranked]

    def judge_answers(self, responses: list[dict], preference: HiddenPreference) -> list[list[int]]:
        """Return my judgement of an evaluation task: ``[[best], [the others]]``, or ``[[all]]`` for a tie.

        A careful judge picks the best as the first pick of a Plackett–Luce ranking (so between two
        answers, Bradley–Terry again); identical answers tie. A careless one picks at random.
        """
        texts = list(dict.fromkeys(response["content"] for response in responses))
        if len(texts) == 1:
            return [[r["id"] for r in responses]]
        if self.style == CARELESS:
            best = self.rng.choice(texts)
        else:
            best = texts[noisy_order([preference.score(t) for t in texts], self.temperature, self.rng)[0]]
        return [[r["id"] for r in responses if r["content"] == best],
                [r["id"] for r in responses if r["content"] != best]]

    def work_on(self, task: dict, preference: HiddenPreference) -> dict:
        """Rank (or judge) a task I hold the lease of; return the ranking as the platform recorded it."""
        evaluation = task.get("purpose") == "evaluation"
        responses = task["responses"]
        order = (self.judge_answers if evaluation else self.order_answers)(responses, preference)
        ranking = self.client.post(
            f"/api/ranking-tasks/{task['id']}/rankings/",
            {"order": order, "time_spent_ms": int(1000 * self.seconds_spent())},
            expect=(201,), headers={"Idempotency-Key": uuid.uuid4().hex},
        ).body
        if evaluation:
            self.judgements += 1
        else:
            self.rankings += 1
        return ranking

    def skip(self, task: dict) -> None:
        self.client.post(f"/api/ranking-tasks/{task['id']}/skip/", {"reason": "not needed now"}, expect=(204,))
        self.skipped += 1


class Reviewer:
    """Accepts a demonstration whose answer scores at least ``accept_from`` under the hidden preference."""

    def __init__(self, client: Client, preference: HiddenPreference, *, accept_from: float | None) -> None:
        self.client, self.preference, self.accept_from = client, preference, accept_from
        self.accepted = self.rejected = 0

    def review_queue(self, project_id: int) -> int:
        """Review everything waiting for me; return how many were reviewed."""
        waiting = self.client.all_pages(f"/api/dialogues/review-queue/?project={project_id}")
        for dialogue in waiting:
            answer = dialogue["turns"][-1]["content"]
            if self.accept_from is None or self.preference.score(answer) >= self.accept_from:
                self.client.post(f"/api/dialogues/{dialogue['id']}/review/", {"decision": "accept"})
                self.accepted += 1
            else:
                self.client.post(f"/api/dialogues/{dialogue['id']}/review/",
                                 {"decision": "reject", "comment": "The answer could be better: try again."})
                self.rejected += 1
        return len(waiting)


def write_demonstration(labeler: Labeler, *, project_id: int, source) -> bool:
    """Lease the next prompt and write, save and submit a demonstration for it; False when none is left."""
    reply = labeler.client.post(f"/api/dialogues/next-prompt/?project={project_id}", expect=(200, 201, 204))
    if reply.status == 204:
        return False
    dialogue = reply.body
    prompt = dialogue["prompt"]["text"]
    _save_and_submit(labeler, dialogue, prompt=prompt, answer=source.answer(prompt))
    labeler.demonstrations += 1
    return True


def revise_rejected(labeler: Labeler, *, project_id: int, source) -> int:
    """Rewrite and resubmit each of my demonstrations rejected once with another answer; return how many.

    One rejected twice stays rejected: the labeler moves on to other prompts.
    """
    rejected = labeler.client.all_pages(f"/api/dialogues/?project={project_id}&status=rejected")
    rejected = [dialogue for dialogue in rejected if dialogue["round"] < 2]
    for dialogue in rejected:
        prompt = dialogue["turns"][0]["content"]
        _save_and_submit(labeler, dialogue, prompt=prompt, answer=source.answer(prompt, attempt=dialogue["round"]))
    return len(rejected)


def _save_and_submit(labeler: Labeler, dialogue: dict, *, prompt: str, answer: str) -> None:
    turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    saved = labeler.client.call("PUT", f"/api/dialogues/{dialogue['id']}/",
                                {"version": dialogue["version"], "turns": turns}).body
    labeler.client.post(f"/api/dialogues/{dialogue['id']}/submit/", {"version": saved["version"]})


def expected_preference(diff: float, temperature: float, style: str) -> float:
    """Return the probability that a labeler of this style prefers the answer ahead by ``diff``."""
    return 0.5 if style == CARELESS else preference_probability(diff, temperature)
