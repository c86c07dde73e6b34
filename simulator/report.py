"""The figures: what the loop achieved under the hidden preference, beside what the platform reports.

Everything is read through the API as the project's manager (tasks with their answers, generators and
rankings; models, runs and their metrics; evaluations; reward agreement; ranking quality) and judged
with the hidden preference the simulator alone knows. The reward model's per-answer scores come from
the engine's ``score`` command (``reward_scores.py``) when the data root is at hand.

- ``labelers``: the calibrated temperature and, on the tasks ranked twice, how often two labelers
  agreed and how often a careful one ordered a pair as the hidden preference does (its ceiling).
- ``reward_model``: its engine ``eval_accuracy`` (its own held-out split, noisy labels) and, on the
  fresh tasks ranked after its snapshot (never trained on), its accuracy against the labels and
  against the noise-free hidden order, each also as a share of the labelers' ceiling.
- ``policies``: PPO (and DPO) against SFT on the held-out prompts of the platform's evaluation, judged
  by the noise-free hidden preference: wins, losses, ties, the win rate (ties half) with its 95 %
  Wilson interval and the one-sided binomial p-value of the wins among decisive prompts; PPO's KL to
  the SFT policy from its run's metrics.
- ``in_loop``: the platform's own figures (the evaluation's win rate, the reward agreement and its
  ceiling) next to what the simulator expects of them given the answers, the hidden scores and each
  labeler's noise, with a z-score: they agree when |z| is small (within the 95 % interval: |z| < 1.96).
- ``careless``: the ranking quality page's warnings for every labeler.
"""

from __future__ import annotations

import random
import statistics
from datetime import datetime
from pathlib import Path

from simulator.client import Client, HttpTransport
from simulator.noise import noisy_order, preference_probability
from simulator.preferences import HiddenPreference, preference_get
from simulator.reward_scores import reward_model_scores
from simulator.scenario import Accounts, Plan, Record, Simulation
from simulator.stats import Z_95, binomial_tail, poisson_binomial_z, share, wilson
from simulator.team import CARELESS


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _pairs(order: list[list[int]]) -> list[tuple[int, int]]:
    """Return the (better, worse) answer pairs of an order given as groups, best first (ties give none)."""
    return [(a, b) for i, group in enumerate(order) for later in order[i + 1:] for a in group for b in later]


class Report:
    """Reads the project through the manager's client and computes the figures (``build``)."""

    def __init__(self, *, client: Client, record: Record, plan: Plan, preference: HiddenPreference,
                 data_root: Path | None) -> None:
        self.client, self.record, self.plan, self.preference = client, record, plan, preference
        self.data_root = data_root
        self.temperature = record.temperature
        project = record.project
        self.tasks = client.all_pages(f"/api/ranking-tasks/?project={project}")
        self.models = {m["id"]: m for m in client.all_pages(f"/api/models/?project={project}")}
        self._score_cache: dict[str, float] = {}

    def hidden(self, text: str) -> float:
        if text not in self._score_cache:
            self._score_cache[text] = self.preference.score(text)
        return self._score_cache[text]

    def p_prefers(self, labeler: str | None, task_id: int, better: str, worse: str) -> float:
        """The probability that this labeler, ranking this task, put ``better`` above ``worse`` (answer texts)."""
        if self.record.styles.get(labeler) == CARELESS:
            return 0.5
        temperature = self.record.temperatures.get(f"{task_id}:{labeler}", self.temperature)
        return preference_probability(self.hidden(better) - self.hidden(worse), temperature)

    def build(self) -> dict:
        figures = {
            "plan": self.plan.name, "preference": self.plan.preference, "project": self.record.project,
            "seed": self.record.seed,
            "timings_s": self.record.timings, "models": self.record.models, "evaluations": self.record.evaluations,
            "demonstrations": self.record.demonstrations, "work": self.record.work, "runs": self.record.runs,
            "platform_notes": self.record.platform_notes, "http": self.record.http,
            "temperatures": self.record.temperatures,  # each careful ranking's T: the figures can be recomputed
            "labelers": self._labelers(),
        }
        figures["reward_model"], reward_in_loop = self._reward_model()
        figures["policies"], evaluation_in_loop = self._policies()
        figures["in_loop"] = {**reward_in_loop, "evaluations": evaluation_in_loop}
        figures["careless"] = self._careless()
        return figures

    # ---- labelers ----

    def _ranking_tasks(self) -> list[dict]:
        return [t for t in self.tasks if t["purpose"] == "ranking" and not t.get("is_gold")]

    def _labelers(self) -> dict:
        careful_right = careful_pairs = 0
        careful_tasks = []
        for task in self._ranking_tasks():
            text = {r["id"]: r["content"] for r in task["responses"]}
            careful = [r for r in task["rankings"] if self.record.styles.get(r["labeler"]) != CARELESS]
            for ranking in careful:
                for a, b in _pairs(ranking["order"]):
                    if self.hidden(text[a]) != self.hidden(text[b]):
                        careful_pairs += 1
                        careful_right += self.hidden(text[a]) > self.hidden(text[b])
            if len(careful) >= 2:
                careful_tasks.append({**task, "rankings": careful})
        observed = self._labeler_agreement(careful_tasks)["observed"]
        check = self._noise_check({"pairs": observed["n"], "pairs_agreed": observed["successes"]}, careful_tasks,
                                  _orders_agreement, replicates=100)
        return {
            "temperature": self.temperature, "initial_temperature": self.record.initial_temperature,
            "target_agreement": self.plan.agreement, "calibration_agreement": self.record.calibration_agreement,
            "careful_agreement_on_tasks": {**observed, "expected": check.get("expected"), "z": check.get("z")},
            "careful_accuracy_vs_hidden": share(careful_right, careful_pairs),
        }

    # ---- the reward model ----

    def _reward_model(self) -> tuple[dict, dict]:
        model_id = self.record.models.get("reward")
        if model_id is None:
            return {"measured": False, "why": "no reward model"}, {}
        model = self.client.get(f"/api/models/{model_id}/")
        snapshot = self.client.get(f"/api/snapshots/{model['snapshot']['id']}/")
        cutoff = _when(snapshot["labels_until"])
        need = self.record.rankings_per_task
        fresh = [t for t in self._ranking_tasks()
                 if len(t["rankings"]) >= need and all(_when(r["created_at"]) > cutoff for r in t["rankings"])]
        fresh.sort(key=lambda t: max(_when(r["created_at"]) for r in t["rankings"]))
        figures: dict = {"id": model_id, "name": model["name"], "metrics": model["metrics"],
                         "engine_eval_accuracy": model["metrics"].get("eval_accuracy"), "held_out_tasks": len(fresh)}
        platform = model.get("reward_agreement") or {}
        in_loop: dict = {"reward_agreement": {"platform": platform.get("total"), "ceiling_platform": platform.get("ceiling")}}
        scores = self._reward_scores(model, fresh)
        if scores is None:
            figures.update(measured=False, why="no data root given: the reward model's scores can't be read")
            return figures, in_loop
        figures["measured"] = True
        vs_labels = self._rm_against_labels(fresh, scores)
        vs_hidden_right = vs_hidden_n = labels_right = labels_n = 0
        for task in fresh:
            text = {r["id"]: r["content"] for r in task["responses"]}
            ids = list(text)
            for i, a in enumerate(ids):
                for b in ids[i + 1:]:
                    ha, hb = self.hidden(text[a]), self.hidden(text[b])
                    if ha == hb or scores[(task["id"], a)] == scores[(task["id"], b)]:
                        continue
                    vs_hidden_n += 1
                    vs_hidden_right += (ha > hb) == (scores[(task["id"], a)] > scores[(task["id"], b)])
            for ranking in task["rankings"]:
                if self.record.styles.get(ranking["labeler"]) == CARELESS:
                    continue
                for a, b in _pairs(ranking["order"]):
                    if self.hidden(text[a]) != self.hidden(text[b]):
                        labels_n += 1
                        labels_right += self.hidden(text[a]) > self.hidden(text[b])
        ceiling = self._labeler_agreement(fresh)
        accuracy_hidden = share(vs_hidden_right, vs_hidden_n)
        labelers_hidden = share(labels_right, labels_n)
        figures.update(
            accuracy_vs_labels=vs_labels["observed"],
            labelers_agreement=ceiling["observed"],
            share_of_ceiling_labels=_ratio(vs_labels["observed"]["share"], ceiling["observed"]["share"]),
            accuracy_vs_hidden=accuracy_hidden,
            careful_labelers_accuracy_vs_hidden=labelers_hidden,
            share_of_ceiling_hidden=_ratio(accuracy_hidden["share"], labelers_hidden["share"]),
            p_value_vs_chance=binomial_tail(vs_hidden_right, vs_hidden_n) if vs_hidden_n else None,
        )
        # the platform checked the oldest completed fresh tasks first: compare on as many of them
        checked = (platform.get("total") or {}).get("tasks") or 0
        if checked:
            same = fresh[:checked]
            in_loop["reward_agreement"].update(self._noise_check(
                platform["total"], same, lambda task, orders: _rm_agreement(task, orders, scores)))
            in_loop["reward_agreement"]["simulator_on_same_tasks"] = self._rm_against_labels(same, scores)["observed"]
            in_loop["labelers_ceiling"] = {"platform": platform.get("ceiling"),
                                           **self._noise_check(platform.get("ceiling") or {}, same, _orders_agreement)}
        return figures, in_loop

    def _reward_scores(self, model: dict, tasks: list[dict]) -> dict[tuple[int, int], float] | None:
        if self.data_root is None or not tasks:
            return None
        folder = Path(model["storage_path"])
        folder = folder if folder.is_absolute() else self.data_root / folder
        keys, items = [], []
        for task in tasks:
            for response in task["responses"]:
                keys.append((task["id"], response["id"]))
                items.append((task["context"], response["content"]))
        template = self.plan.loop.get("config_templates", {}).get("score", {})
        scores = reward_model_scores(model_dir=folder, items=items, max_length=template.get("max_length", 1024),
                                     bf16=template.get("bf16", False))
        return dict(zip(keys, scores, strict=True))

    def _rm_against_labels(self, tasks: list[dict], scores: dict) -> dict:
        """How often the reward model orders the labelers' pairs as they did."""
        agreed = compared = 0
        for task in tasks:
            a, c = _rm_agreement(task, [r["order"] for r in task["rankings"]], scores)
            agreed, compared = agreed + a, compared + c
        return {"observed": share(agreed, compared)}

    def _labeler_agreement(self, tasks: list[dict]) -> dict:
        """Labelers' agreement with each other, as the platform counts it."""
        agreed = compared = 0
        for task in tasks:
            a, c = _orders_agreement(task, [r["order"] for r in task["rankings"]])
            agreed, compared = agreed + a, compared + c
        return {"observed": share(agreed, compared)}

    def _noise_check(self, platform: dict, tasks: list[dict], statistic, replicates: int = 400) -> dict:
        """Compare a platform share with what the labelers' noise makes of these tasks, by simulating it.

        Every ranking of the tasks is drawn again ``replicates`` times as its labeler would rank it (a
        careful one with the temperature of that moment, a careless one at random), and ``statistic``
        (task, orders) -> (agreed, compared) is summed over the tasks each time: the mean is what the
        share should be, the spread how far chance moves it (pairs of one ranking move together, which
        a binomial spread would miss). z = (platform − mean) / spread.
        """
        if not platform or not platform.get("pairs") or not tasks:
            return {}
        observed = platform["pairs_agreed"] / platform["pairs"]
        rng = random.Random(0)
        shares = []
        for _ in range(replicates):
            agreed = compared = 0
            for task in tasks:
                orders = [self._redraw(task, ranking["labeler"], rng) for ranking in task["rankings"]]
                a, c = statistic(task, orders)
                agreed, compared = agreed + a, compared + c
            if compared:
                shares.append(agreed / compared)
        mean, spread = statistics.fmean(shares), statistics.pstdev(shares)
        z = (observed - mean) / spread if spread else 0.0
        return {"expected": mean, "spread": spread, "z": z, "agrees_95": abs(z) < Z_95, "replicates": replicates,
                "expected_in_platform_interval": (platform.get("low") or 0) <= mean <= (platform.get("high") or 1)}

    def _redraw(self, task: dict, labeler: str | None, rng: random.Random) -> list[list[int]]:
        """Rank the task's answers again as this labeler did (simulator.team.Labeler.order_answers)."""
        texts = list(dict.fromkeys(r["content"] for r in task["responses"]))
        if self.record.styles.get(labeler) == CARELESS:
            ranked = rng.sample(texts, len(texts))
        else:
            temperature = self.record.temperatures.get(f"{task['id']}:{labeler}", self.temperature)
            ranked = [texts[i] for i in noisy_order([self.hidden(t) for t in texts], temperature, rng)]
        return [[r["id"] for r in task["responses"] if r["content"] == text] for text in ranked]

    # ---- policies against SFT ----

    def _policies(self) -> tuple[dict, dict]:
        figures, in_loop = {}, {}
        for key, against in (("ppo", "sft"), ("dpo", "sft"), ("sft", "base")):
            evaluation_id = self.record.evaluations.get(key)
            if evaluation_id is None:
                continue
            evaluation = self.client.get(f"/api/evaluations/{evaluation_id}/")
            model, baseline = self.models[self.record.models[key]], self.models[self.record.models[against]]
            result = self._evaluation(evaluation, model, baseline)
            figures[key] = {"model": model["name"], "against": baseline["name"], "evaluation": evaluation_id,
                            "prompts": evaluation["tasks_created"], "hidden": result["hidden"]}
            if key in ("ppo", "dpo"):
                figures[key]["run"] = self._run_figures(model)
            in_loop[key] = {"platform": result["platform"], **result["check"]}
        return figures, in_loop

    def _evaluation(self, evaluation: dict, model: dict, baseline: dict) -> dict:
        names = {m["name"] for m in evaluation["models"]}
        wins = losses = ties = 0
        probabilities, outcomes, examples = [], [], []
        for task in self.tasks:
            if task["purpose"] != "evaluation" or {r["generator"] for r in task["responses"]} != names:
                continue
            answer = {r["generator"]: r for r in task["responses"]}
            mine, theirs = answer[model["name"]], answer[baseline["name"]]
            hm, ht = self.hidden(mine["content"]), self.hidden(theirs["content"])
            if len(examples) < 4:
                examples.append({"prompt": task["context"][-1]["content"] if task["context"] else None,
                                 model["name"]: mine["content"], "hidden": round(hm, 3),
                                 baseline["name"]: theirs["content"], "hidden_baseline": round(ht, 3)})
            wins += hm > ht
            losses += hm < ht
            ties += hm == ht
            for ranking in task["rankings"]:
                best = set(ranking["order"][0])
                if len(ranking["order"]) == 1 or (mine["id"] in best) == (theirs["id"] in best):
                    outcomes.append(0.5)
                else:
                    outcomes.append(1.0 if mine["id"] in best else 0.0)
                if mine["content"] == theirs["content"]:
                    probabilities.append(0.5)
                else:
                    probabilities.append(
                        self.p_prefers(ranking["labeler"], task["id"], mine["content"], theirs["content"])
                    )
        n = wins + losses + ties
        decisive = wins + losses
        interval = wilson(wins + ties / 2, n)
        hidden = {
            "wins": wins, "losses": losses, "ties": ties, "prompts": n,
            "win_rate": (wins + ties / 2) / n if n else None,
            "low": interval[0] if interval else None, "high": interval[1] if interval else None,
            # H0: the policy is no better than SFT, so each decisive prompt is a fair coin at best
            "p_value": binomial_tail(wins, decisive) if decisive else None,
            "examples": examples,
        }
        pair = next((p for p in evaluation["results"]["pairs"]
                     if {p["model_a"]["id"], p["model_b"]["id"]} == {model["id"], baseline["id"]}), None)
        platform = None
        if pair is not None:
            flip = pair["model_a"]["id"] != model["id"]
            platform = {
                "wins": pair["wins_b" if flip else "wins_a"], "losses": pair["wins_a" if flip else "wins_b"],
                "ties": pair["ties"], "judgements": pair["judgements"],
                "win_rate": None if pair["win_rate"] is None else (1 - pair["win_rate"] if flip else pair["win_rate"]),
                "low": None if pair["ci_high"] is None else (1 - pair["ci_high"] if flip else pair["ci_low"]),
                "high": None if pair["ci_low"] is None else (1 - pair["ci_low"] if flip else pair["ci_high"]),
            }
        check: dict = {"simulator_judgements": len(outcomes),
                       "simulator_win_rate": sum(outcomes) / len(outcomes) if outcomes else None}
        if platform and platform["win_rate"] is not None and probabilities:
            expected, z = poisson_binomial_z(platform["win_rate"], probabilities)
            check.update(expected=expected, z=z, agrees_95=abs(z) < Z_95,
                         expected_in_platform_interval=platform["low"] <= expected <= platform["high"])
        return {"hidden": hidden, "platform": platform, "check": check}

    def _run_figures(self, model: dict) -> dict:
        run = self.client.get(f"/api/runs/{model['run']['id']}/")
        points = self.client.get(f"/api/runs/{run['id']}/metrics/")["points"]
        steps = [p for p in points if "kl" in p]
        figures: dict = {"id": run["id"], "kind": run["kind"], "steps": len(steps),
                         "result_metrics": (run.get("result") or {}).get("metrics")}
        if steps:
            last = steps[-3:]
            figures.update(
                kl_last=steps[-1]["kl"], kl_last3_mean=sum(p["kl"] for p in last) / len(last),
                kl_k3_last=steps[-1].get("kl_k3"), score_first=steps[0].get("score"),
                score_last3_mean=sum(p.get("score", 0.0) for p in last) / len(last),
                response_length_last=steps[-1].get("response_length"),
            )
        return figures

    # ---- careless labelers ----

    def _careless(self) -> dict:
        quality = self.client.get(f"/api/projects/{self.record.project}/ranking-quality/")
        labelers = [
            {"username": row["username"], "style": self.record.styles.get(row["username"], "other"),
             "warnings": row["warnings"], "ranked": row["ranked"], "agreement": row["agreement"],
             "agreement_tasks": row["agreement_tasks"], "median_time_ms": row["median_time_ms"]}
            for row in quality["labelers"]
        ]
        careless = [row for row in labelers if row["style"] == CARELESS]
        careful = [row for row in labelers if row["style"] != CARELESS]
        return {
            "careless_flagged": {row["username"]: bool(row["warnings"]) for row in careless},
            "all_careless_flagged": all(row["warnings"] for row in careless),
            "careful_flagged": [row["username"] for row in careful if row["warnings"]],
            "alpha": quality["alpha"], "labelers": labelers,
        }


def _orders_agreement(task: dict, orders: list[list[list[int]]]) -> tuple[int, int]:
    """Return (agreed, compared) over every ordered pair of rankings, as the platform's ceiling counts them."""
    agreed = compared = 0
    ranks = [{a: g for g, group in enumerate(order) for a in group} for order in orders]
    for i, order in enumerate(orders):
        for j, rank in enumerate(ranks):
            if i != j:
                for a, b in _pairs(order):
                    if rank[a] != rank[b]:
                        compared += 1
                        agreed += rank[a] < rank[b]
    return agreed, compared


def _rm_agreement(task: dict, orders: list[list[list[int]]], scores: dict) -> tuple[int, int]:
    """Return (agreed, compared) over the rankings' pairs: the reward model scores the better one higher."""
    pairs = [pair for order in orders for pair in _pairs(order)]
    return sum(scores[(task["id"], a)] > scores[(task["id"], b)] for a, b in pairs), len(pairs)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def simulate_and_report(*, url: str, accounts: Accounts, plan, source, data_root: Path | None, seed: int | None = None,
                        log=print) -> dict:
    """Run the simulation against ``url`` and return the report's figures."""
    transport = HttpTransport(url)
    simulation = Simulation(transport=transport, accounts=accounts, plan=plan, source=source, seed=seed, log=log)
    record = simulation.run()
    return Report(client=simulation.engineer, record=record, plan=plan, preference=preference_get(plan.preference),
                  data_root=data_root).build()
