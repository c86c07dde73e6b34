import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

from tests.engine.helpers import model_without_pad_token, read_jsonl, write_jsonl
from training.engine import reward
from training.engine.config import config_from_dict
from training.engine.conversations import render_scored
from training.engine.errors import EngineError
from training.engine.run_dir import RunDir

MARKER = "banana"
WORDS = "the a sea wind cat dog read story sun day week good answer question model user help paris bread milk".split()


def marker_rankings(count: int, seed: int) -> list[dict]:
    """Pairs from 3-way rankings: the answer holding MARKER beats two answers without it."""
    rng = random.Random(seed)

    def words(n: int) -> list[str]:
        return [rng.choice(WORDS) for _ in range(n)]

    pairs = []
    for ranking in range(count):
        prompt = [{"role": "user", "content": f"Tell me about the {rng.choice(WORDS)}."}]
        best = words(rng.randint(4, 8))
        best.insert(rng.randint(0, len(best)), MARKER)
        for _ in range(2):
            pairs.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": " ".join(best)}],
                    "rejected": [{"role": "assistant", "content": " ".join(words(rng.randint(4, 9)))}],
                    "margin": 0.0,
                    "group": f"ranking-{ranking}",
                }
            )
    return pairs


@pytest.fixture(scope="module")
def trained_reward_run(tiny_model, tmp_path_factory):
    run = tmp_path_factory.mktemp("reward")
    write_jsonl(run / "pairs.jsonl", marker_rankings(100, seed=0))
    config = reward.Config(
        model_path=str(tiny_model),
        num_epochs=3,
        learning_rate=2e-3,
        per_device_batch_size=8,
        eval_fraction=0.2,
        save_every=1000,
    )
    return run, reward.main(config, RunDir(run))


def test_reward_model_learns_the_marker_preference_on_held_out_rankings(trained_reward_run):
    run, result = trained_reward_run

    assert result.status == "succeeded"
    assert result.metrics["eval_pairs"] >= 40
    assert result.metrics["eval_accuracy"] >= 0.95
    assert result.metrics["train_accuracy_pairs"] == 200 - result.metrics["eval_pairs"]  # an epoch's worth
    assert 0.0 <= result.metrics["train_accuracy_last_epoch"] <= 1.0
    assert read_jsonl(run / "metrics.jsonl")[-1]["eval_accuracy"] == result.metrics["eval_accuracy"]


def test_training_accuracy_covers_the_last_epoch_of_pairs_not_the_last_logging_window(tiny_model, tmp_path):
    # 24 training pairs in batches of 4, two epochs: 12 steps, each logging its batch's accuracy
    write_jsonl(tmp_path / "pairs.jsonl", marker_rankings(12, seed=5))
    config = reward.Config(
        model_path=str(tiny_model),
        num_epochs=2,
        per_device_batch_size=4,
        learning_rate=2e-3,
        log_every=1,
        eval_fraction=0.0,
        save_every=1000,
    )

    result = reward.main(config, RunDir(tmp_path))

    batches = [line["accuracy"] for line in read_jsonl(tmp_path / "metrics.jsonl") if "accuracy" in line]
    assert len(batches) == 12
    assert "accuracy" not in result.metrics  # one logging window: a batch of 4 pairs
    assert result.metrics["train_accuracy_pairs"] == 24
    assert result.metrics["train_accuracy_last_epoch"] == pytest.approx(sum(batches[6:]) / 6)


def test_a_run_shorter_than_an_epoch_reports_training_accuracy_over_the_pairs_it_saw(tiny_model, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", marker_rankings(12, seed=5))
    config = reward.Config(
        model_path=str(tiny_model), max_steps=2, per_device_batch_size=4, log_every=1, eval_fraction=0.0
    )

    result = reward.main(config, RunDir(tmp_path))

    batches = [line["accuracy"] for line in read_jsonl(tmp_path / "metrics.jsonl") if "accuracy" in line]
    assert result.metrics["train_accuracy_pairs"] == 8
    assert result.metrics["train_accuracy_last_epoch"] == pytest.approx(sum(batches) / 2)


def test_saved_reward_model_scores_unseen_answers_with_the_marker_higher(trained_reward_run):
    run, _ = trained_reward_run
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    prompt = [{"role": "user", "content": "Tell me about the dog."}]

    def score(answer: str) -> float:  # at the answer's <|im_end|>, as reward trained it and PPO reads it
        ids = render_scored(tokenizer, prompt + [{"role": "assistant", "content": answer}])
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits.item()

    assert score(f"the dog can read a {MARKER} story") > score("the dog can read a good story")
    assert score(f"{MARKER} sun day") > score("milk sun day")


def test_reward_with_lora_saves_a_merged_classifier_with_a_trained_head(tiny_model, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", marker_rankings(12, seed=2))
    config = config_from_dict(
        reward.Config,
        {
            "model_path": str(tiny_model),
            "max_steps": 4,
            "learning_rate": 1e-2,
            "eval_fraction": 0.0,
            "lora": {"r": 4},
        },
    )

    result = reward.main(config, RunDir(tmp_path))

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert result.status == "succeeded"
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    set_seed(0)  # the seed the run initialised its new score head with
    untrained = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    assert not torch.equal(model.score.weight, untrained.score.weight)  # the head was trained and kept
    base_layer = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[base_layer], untrained.state_dict()[base_layer])  # merged


def test_pairs_longer_than_max_length_are_shortened_not_dropped(tiny_model, tmp_path):
    # A long system turn pushes every pair past max_length; TRL alone would drop them all (and
    # with them every held-out ranking). Each pair loses that turn and keeps the rest, whole.
    long_prompt = [{"role": "system", "content": " ".join(WORDS * 6)}]
    pairs = marker_rankings(6, seed=3)
    for pair in pairs:
        pair["prompt"] = long_prompt + pair["prompt"]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    config = reward.Config(
        model_path=str(tiny_model), max_length=48, max_steps=2, per_device_batch_size=4, eval_fraction=0.5
    )

    result = reward.main(config, RunDir(tmp_path))

    assert result.status == "succeeded"
    assert result.metrics["truncated_pairs"] == len(pairs)
    assert result.metrics["eval_pairs"] == 6  # three held-out rankings of two pairs, none lost
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows, truncated = reward.tokenize_pairs([{**pairs[0], "weight": 1.0}], tokenizer, max_length=48)
    assert truncated == 1 and len(render_scored(tokenizer, pairs[0]["prompt"] + pairs[0]["chosen"])) > 48
    assert rows[0]["chosen_ids"] == render_scored(tokenizer, pairs[0]["prompt"][1:] + pairs[0]["chosen"])


def test_a_tokenizer_without_pad_token_pads_with_eos(tiny_model, tmp_path):
    model_path = model_without_pad_token(tiny_model, tmp_path / "no-pad")
    assert AutoTokenizer.from_pretrained(model_path).pad_token is None
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "pairs.jsonl", marker_rankings(6, seed=4))
    config = reward.Config(
        model_path=str(model_path), max_steps=2, per_device_batch_size=4, eval_fraction=0.5
    )

    result = reward.main(config, RunDir(run))

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForSequenceClassification.from_pretrained(run / "model")
    assert result.status == "succeeded" and result.metrics["eval_pairs"] > 0
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert model.config.pad_token_id == tokenizer.eos_token_id


def test_a_conversation_ending_in_the_padding_eos_is_scored_at_that_eos(tiny_model):
    # EOS pads, and the chosen conversation ends in EOS (as Llama 3's turns end in <|eot_id|>): the
    # score is the head's value there, where PPO reads it, not one token earlier
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1).eval()
    eos = AutoTokenizer.from_pretrained(tiny_model).eos_token_id
    model.config.pad_token_id = eos
    chosen, rejected = [5, 6, 7, eos], [5, 8]
    batch = reward.DataCollatorForPreference(pad_token_id=eos)(
        [{"chosen_ids": chosen, "rejected_ids": rejected, "margin": 0.0}]
    )

    with torch.no_grad():
        chosen_score, rejected_score, _ = reward.score_pairs(model, batch)
        expected = [
            model.score(model.model(torch.tensor([ids])).last_hidden_state)[0, -1, 0]
            for ids in (chosen, rejected)
        ]

    torch.testing.assert_close(chosen_score[0], expected[0])
    torch.testing.assert_close(rejected_score[0], expected[1])


def test_train_top_layers_trains_only_the_top_layers_the_norm_and_the_head(tiny_model, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", marker_rankings(12, seed=7))
    before = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    layers = reward.decoder_layers(before)
    config = reward.Config(model_path=str(tiny_model), train_top_layers=1, num_epochs=1, learning_rate=1e-2,
                           per_device_batch_size=4, eval_fraction=0.0, save_every=1000)

    result = reward.main(config, RunDir(tmp_path))

    assert result.status == "succeeded"
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", num_labels=1)
    changed = {name for name, weight in after.named_parameters()
               if not torch.equal(weight, dict(before.named_parameters())[name])}
    top = f"layers.{len(layers) - 1}."
    assert changed and all(top in name or "norm" in name or name.startswith("score") for name in changed), changed
    assert not any(f"layers.{index}." in name for name in changed for index in range(len(layers) - 1))
    assert any(top in name for name in changed) and not any("embed" in name for name in changed)


def test_train_top_layers_beyond_the_model_is_a_clear_config_error(tiny_model, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", marker_rankings(4, seed=8))
    config = reward.Config(model_path=str(tiny_model), train_top_layers=99, eval_fraction=0.0, save_every=1000)

    with pytest.raises(EngineError, match="train_top_layers is 99 but the model has"):
        reward.main(config, RunDir(tmp_path))


def test_train_top_layers_and_lora_are_refused_together():
    with pytest.raises(EngineError, match="don't combine"):
        config_from_dict(reward.Config, {"model_path": "/m", "train_top_layers": 2, "lora": {"r": 4}})
