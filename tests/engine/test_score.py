"""`score`: a reward model's scores for a pairs file, and how often they order the pairs as labelled."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.engine.helpers import read_jsonl, run_engine_cli, write_config, write_jsonl
from training.engine import score
from training.engine.conversations import render_scored
from training.engine.run_dir import RunDir

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


PAIRS = [
    {
        "prompt": QUESTION,
        "chosen": answer("Paris."),
        "rejected": answer("I do not know."),
        "margin": 2.0,
        "group": "ranking-1",
        "id": 7,
        "task": "task-3",
    },
    {"prompt": QUESTION, "chosen": answer("Paris."), "rejected": answer("Bread."), "group": "ranking-1"},
    {"prompt": QUESTION, "chosen": answer("It is Paris."), "rejected": answer("Milk."), "group": "ranking-2"},
    {"prompt": QUESTION, "chosen": answer("The capital of France is Paris."), "rejected": answer("No.")},
]


@pytest.fixture(scope="module")
def reward_model(tiny_model, tmp_path_factory):
    """make-tiny's network as a one-score classifier with a seeded random head: a reward model."""
    folder = tmp_path_factory.mktemp("reward-model")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def score_alone(model, tokenizer, messages: list[dict]) -> float:
    """The head's output at the conversation's last token, one conversation at a time, no padding."""
    ids = torch.tensor([render_scored(tokenizer, messages)])
    with torch.no_grad():
        return model.score(model.model(ids).last_hidden_state[0, -1]).item()


def test_score_writes_each_pairs_scores_as_the_reward_model_reads_them(reward_model, tmp_path):
    write_config(tmp_path, model_path=str(reward_model), batch_size=3)
    write_jsonl(tmp_path / "pairs.jsonl", PAIRS)

    process = run_engine_cli("score", tmp_path)

    assert process.returncode == 0, process.stderr
    model = AutoModelForSequenceClassification.from_pretrained(reward_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward_model)
    lines = read_jsonl(tmp_path / "scores.jsonl")
    assert [line.get("id") for line in lines] == [7, None, None, None]
    assert [line.get("task") for line in lines] == ["task-3", None, None, None]
    assert [line["group"] for line in lines] == ["ranking-1", "ranking-1", "ranking-2", "line-4"]
    for line, pair in zip(lines, PAIRS, strict=True):
        chosen = score_alone(model, tokenizer, pair["prompt"] + pair["chosen"])
        rejected = score_alone(model, tokenizer, pair["prompt"] + pair["rejected"])
        assert line["chosen_score"] == pytest.approx(chosen, abs=1e-5)
        assert line["rejected_score"] == pytest.approx(rejected, abs=1e-5)
        assert line["margin"] == pytest.approx(line["chosen_score"] - line["rejected_score"])
        assert line["agrees"] is (line["chosen_score"] > line["rejected_score"])

    result = json.loads((tmp_path / "result.json").read_text())
    metrics = result["metrics"]
    assert result["status"] == "succeeded" and result["paths"]["scores"] == str(tmp_path / "scores.jsonl")
    assert all(isinstance(value, int | float) for value in metrics.values())  # flat numbers for the web side
    assert metrics == {**score.agreement_figures(lines), "truncated_pairs": 0}
    assert metrics["pairs"] == 4 and metrics["groups"] == 3
    assert sum(bin_["count"] for bin_ in result["histogram"]["margin"]) == 4
    assert not (tmp_path / "scores.jsonl.partial").exists()


def test_a_reward_model_with_a_zero_head_ties_every_pair(reward_model, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(reward_model)
    torch.nn.init.zeros_(model.score.weight)
    model.save_pretrained(tmp_path / "zero")
    AutoTokenizer.from_pretrained(reward_model).save_pretrained(tmp_path / "zero")
    write_jsonl(tmp_path / "pairs.jsonl", PAIRS)

    result = score.main(score.Config(model_path=str(tmp_path / "zero")), RunDir(tmp_path))

    lines = read_jsonl(tmp_path / "scores.jsonl")
    assert {(line["chosen_score"], line["rejected_score"], line["agrees"]) for line in lines} == {
        (0.0, 0.0, False)
    }
    assert result.metrics["pairwise_accuracy"] == 0.0 and result.metrics["mean_margin"] == 0.0
    tie_bin = {"low": -0.5, "high": 0.0, "count": 4}
    assert tie_bin in result.histogram["margin"]


def test_agreement_figures_over_pairs_and_over_groups_by_hand():
    # (group, margin): ranking a gets 2 of 3 right, b 0 of 1, c 1 of 2 (a tie does not agree)
    margins = [("a", 1.0), ("a", -1.0), ("a", 2.0), ("b", -0.5), ("c", 3.0), ("c", 0.0)]
    lines = [
        score.score_line({"group": group}, chosen_score=margin, rejected_score=0.0)
        for group, margin in margins
    ]

    figures = score.agreement_figures(lines)

    assert figures["pairs"] == 6 and figures["groups"] == 3
    assert figures["pairwise_accuracy"] == pytest.approx(3 / 6)
    assert figures["group_accuracy_mean"] == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    assert figures["group_accuracy_at_least_half"] == pytest.approx(2 / 3)  # a and c
    assert figures["mean_margin"] == pytest.approx(4.5 / 6)


def test_margin_histogram_bins_are_fixed_and_closed_on_the_right():
    bins = score.margin_histogram([-9.0, -4.0, -0.5, 0.0, 0.1, 0.5, 4.0, 4.5])

    counts = {(bin_["low"], bin_["high"]): bin_["count"] for bin_ in bins}
    assert list(counts) == [
        (None, -4.0),
        (-4.0, -2.0),
        (-2.0, -1.0),
        (-1.0, -0.5),
        (-0.5, 0.0),
        (0.0, 0.5),
        (0.5, 1.0),
        (1.0, 2.0),
        (2.0, 4.0),
        (4.0, None),
    ]
    assert counts == {
        (None, -4.0): 2,
        (-4.0, -2.0): 0,
        (-2.0, -1.0): 0,
        (-1.0, -0.5): 1,
        (-0.5, 0.0): 1,
        (0.0, 0.5): 2,
        (0.5, 1.0): 0,
        (1.0, 2.0): 0,
        (2.0, 4.0): 1,
        (4.0, None): 1,
    }


def test_score_of_a_broken_pairs_line_exits_2_naming_it(reward_model, tmp_path):
    write_config(tmp_path, model_path=str(reward_model))
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps(PAIRS[0]) + "\n" + json.dumps({"prompt": QUESTION}) + "\n"
    )

    process = run_engine_cli("score", tmp_path)

    assert process.returncode == 2
    assert "pairs.jsonl line 2: chosen" in process.stderr
