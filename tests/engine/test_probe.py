"""`reward` with method "probe": a frozen model and a linear score on its pooled hidden states (probe.py)."""

import json

import pytest
import torch

from tests.engine.helpers import read_jsonl, smollm2_like_model, write_jsonl
from tests.engine.test_ppo import ppo_run_dir, run_in_process
from tests.engine.test_reward import marker_rankings
from training.engine import probe, reward, score
from training.engine.config import config_from_dict
from training.engine.conversations import render
from training.engine.errors import EngineError
from training.engine.reward_model import load_reward_model, score_rows, tokenize_pairs
from training.engine.run_dir import RunDir


@pytest.fixture(scope="module")
def probe_run(tiny_model, tmp_path_factory):
    run = tmp_path_factory.mktemp("probe")
    write_jsonl(run / "pairs.jsonl", marker_rankings(100, seed=0))
    config = reward.Config(model_path=str(tiny_model), method="probe", eval_fraction=0.2, margin_scale=0.0)
    return run, reward.main(config, RunDir(run))


def test_probe_learns_the_marker_preference_on_held_out_rankings(probe_run):
    run, result = probe_run

    assert result.status == "succeeded"
    figures = result.metrics
    # the marker word is in the answer; its averaged hidden states carry it even in a random tiny model
    assert figures["eval_accuracy"] >= 0.8, figures
    assert figures["eval_pairs"] == 40 and figures["train_pairs"] == 160
    assert figures["cv_accuracy"] >= 0.8 and figures["train_accuracy"] >= figures["eval_accuracy"] - 0.2
    assert figures["probe_l2"] in reward.Config.__dataclass_fields__["probe_l2"].default
    assert figures["probe_layers"] == [1, 2]  # the tiny model's 2 layers, default_layers(2)
    assert (run / "model" / probe.PROBE_FILE).is_file() and (run / "model" / probe.WEIGHTS_FILE).is_file()
    described = json.loads((run / "model" / probe.PROBE_FILE).read_text())
    assert [row["l2"] for row in described["cross_validation"]] == list(reward.Config(model_path="m").probe_l2)
    assert read_jsonl(run / "metrics.jsonl")[-1]["eval_accuracy"] == figures["eval_accuracy"]


def test_score_command_scores_with_the_probe_as_training_did(probe_run, tmp_path):
    run, result = probe_run
    held_out = marker_rankings(20, seed=5)
    write_jsonl(tmp_path / "pairs.jsonl", held_out)
    config = score.Config(model_path=str(run / "model"))

    outcome = score.main(config, RunDir(tmp_path))

    assert outcome.status == "succeeded"
    assert outcome.metrics["pairwise_accuracy"] >= 0.8, outcome.metrics
    lines = read_jsonl(tmp_path / "scores.jsonl")
    assert len(lines) == 40 and all(line["margin"] == line["chosen_score"] - line["rejected_score"] for line in lines)
    # the same scores as the probe loaded by hand, on the same rows
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = load_reward_model(run / "model", dtype=torch.float32, pad_token_id=tokenizer.pad_token_id)
    assert isinstance(model, probe.ProbeRewardModel)
    rows, _ = tokenize_pairs([{**pair, "weight": 1.0} for pair in held_out[:3]], tokenizer, 1024, answer_starts=True)
    with torch.no_grad():
        chosen, rejected = score_rows(model, rows, pad_token_id=tokenizer.pad_token_id, device=torch.device("cpu"))
    expected = [(line["chosen_score"], line["rejected_score"]) for line in lines[:3]]
    torch.testing.assert_close(torch.stack([chosen, rejected], 1), torch.tensor(expected), rtol=1e-4, atol=1e-4)


def test_scores_centre_on_the_training_conversations(probe_run):
    run, result = probe_run
    lines_path = run / "pairs.jsonl"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = load_reward_model(run / "model", dtype=torch.float32, pad_token_id=tokenizer.pad_token_id)
    rows, _ = tokenize_pairs([{**pair, "weight": 1.0} for pair in read_jsonl(lines_path)], tokenizer, 1024,
                             answer_starts=True)
    with torch.no_grad():
        chosen, rejected = score_rows(model, rows, pad_token_id=tokenizer.pad_token_id, device=torch.device("cpu"))
    # centred on the training conversations (80 % of these): the mean of all is near 0, the spread is not
    assert abs(torch.cat([chosen, rejected]).mean().item()) < 0.25 * torch.cat([chosen, rejected]).std().item()


def test_the_answer_starts_after_the_generation_prompt_as_in_ppo(tiny_model, tmp_path):
    model = smollm2_like_model(tiny_model, tmp_path / "smol")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    pair = {"prompt": [{"role": "user", "content": "Hi there"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Go away."}], "margin": 0.0, "weight": 1.0}

    (row,), _ = tokenize_pairs([pair], tokenizer, 1024, answer_starts=True)

    query = render(tokenizer, pair["prompt"], add_generation_prompt=True)
    assert row["answer_start"] == len(query) and row["chosen_ids"][: len(query)] == query
    answer = tokenizer.decode(row["chosen_ids"][row["answer_start"]:])
    assert answer == "Hello!" + tokenizer.eos_token  # the text and its end of turn: what PPO generates


def test_ppo_layout_scores_like_the_score_command(probe_run):
    """PPO left-pads prompts and right-pads answers; the probe must score a conversation the same either way."""
    run, _ = probe_run
    from transformers import AutoTokenizer

    from training.engine.ppo import scored_positions

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = load_reward_model(run / "model", dtype=torch.float32, pad_token_id=tokenizer.pad_token_id)
    pairs = [{**pair, "weight": 1.0} for pair in marker_rankings(2, seed=9)]
    rows, _ = tokenize_pairs(pairs, tokenizer, 1024, answer_starts=True)
    with torch.no_grad():
        expected, _ = score_rows(model, rows, pad_token_id=tokenizer.pad_token_id, device=torch.device("cpu"))
    prompts = [row["chosen_ids"][: row["answer_start"]] for row in rows]
    answers = [row["chosen_ids"][row["answer_start"]:] for row in rows]
    prompt_width, width = max(map(len, prompts)), max(map(len, answers))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (prompt_width - len(p)) + p + a + [pad] * (width - len(a))
                        for p, a in zip(prompts, answers, strict=True)])
    att = torch.tensor([[0] * (prompt_width - len(p)) + [1] * (len(p) + len(a)) + [0] * (width - len(a))
                        for p, a in zip(prompts, answers, strict=True)])
    mask = att[:, prompt_width:].bool()
    answer = torch.zeros_like(att, dtype=torch.bool)
    answer[:, -width:] = mask
    positions = (att.cumsum(1) - 1).clamp(min=0)

    with torch.no_grad():
        scores = model(ids, att, answer, scored_positions(mask, prompt_width), position_ids=positions)

    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)


def test_ppo_trains_against_a_probe_reward_model(probe_run, tmp_path, tiny_model, capsys):
    run, _ = probe_run
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model, reward_model=str(run / "model"), max_steps=2,
                          save_every=100)

    code, err = run_in_process(run_dir, capsys)

    assert code == 0, err
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [line["step"] for line in metrics] == [1, 2]
    assert all(isinstance(line["score"], float) for line in metrics)


def test_fit_picks_the_strength_by_cross_validation_and_stronger_shrinks_the_weights():
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(40, generator=generator)
    differences = torch.randn(300, 40, generator=generator)
    labels = torch.rand(300, generator=generator) < torch.sigmoid(differences @ direction)
    differences[~labels] *= -1  # every row is "chosen minus rejected": flip the pairs the labels reverse
    zeros, ones = torch.zeros(300), torch.ones(300)

    fit = probe.fit_linear_preference(differences, zeros, ones, l2_grid=(1e-3, 1.0, 1e3), folds=5, seed=0)
    weak = probe.fit_linear_preference(differences, zeros, ones, l2_grid=(1e-3,), folds=5, seed=0)
    strong = probe.fit_linear_preference(differences, zeros, ones, l2_grid=(1e3,), folds=5, seed=0)

    assert [row["l2"] for row in fit.cross_validation] == [1e-3, 1.0, 1e3]
    assert fit.l2 != 1e3  # shrinking every weight to almost nothing loses to the others
    assert strong.weight.norm() < weak.weight.norm() / 10
    # the fitted score on raw features is weight / scale: it points along the hidden direction
    cosine = torch.nn.functional.cosine_similarity(fit.weight / fit.scale, direction, dim=0)
    assert cosine > 0.8
    assert weak.cross_validation == []  # one strength: nothing to pick


def test_default_layers_spread_over_the_top_two_thirds():
    assert probe.default_layers(30) == (10, 15, 20, 25, 30)
    assert probe.default_layers(2) == (1, 2)
    assert probe.default_layers(1) == (1,)


def test_probe_layers_beyond_the_model_is_a_clear_config_error(tiny_model, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", marker_rankings(4, seed=8))
    config = reward.Config(model_path=str(tiny_model), method="probe", probe_layers=(1, 9), eval_fraction=0.0)

    with pytest.raises(EngineError, match="probe_layers holds 9 but the model has 2 layers"):
        reward.main(config, RunDir(tmp_path))
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lora": {"r": 4}}, "method probe trains no network weights"),
        ({"train_top_layers": 1}, "method probe trains no network weights"),
        ({"probe_l2": []}, "probe_l2 must list at least one positive strength"),
        ({"probe_l2": [1, -1]}, "probe_l2 must list at least one positive strength"),
        ({"probe_folds": 1}, "probe_folds must be at least 2"),
        ({"probe_layers": [-1]}, "probe_layers must not be negative"),
        ({"method": "knn"}, "method"),
    ],
)
def test_bad_probe_configs_are_refused_with_a_message(overrides, message):
    with pytest.raises(EngineError, match=message):
        config_from_dict(reward.Config, {"model_path": "/m", "method": "probe", **overrides})
