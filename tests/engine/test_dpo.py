from transformers import AutoModelForCausalLM

from tests.engine.helpers import model_without_pad_token, read_jsonl, write_jsonl
from tests.engine.test_reward import marker_rankings
from training.engine import dpo
from training.engine.run_dir import RunDir


def test_dpo_runs_end_to_end_and_lowers_its_loss(tiny_model, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", marker_rankings(40, seed=1))
    config = dpo.Config(
        model_path=str(tiny_model), max_steps=16, log_every=4, save_every=8, learning_rate=1e-3, beta=0.1
    )

    result = dpo.main(config, RunDir(tmp_path))

    losses = [line["loss"] for line in read_jsonl(tmp_path / "metrics.jsonl")]
    assert result.status == "succeeded" and result.step == 16
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert losses[0] < 0.75  # starts near log 2 = 0.693: policy and reference are the same weights
    assert result.metrics["rewards/accuracies"] > 0.5
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "model").config.model_type == "qwen2"


def test_dpo_trains_a_model_whose_tokenizer_has_no_pad_token(tiny_model, tmp_path):
    model_path = model_without_pad_token(tiny_model, tmp_path / "no-pad")
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "pairs.jsonl", marker_rankings(4, seed=2))

    result = dpo.main(
        dpo.Config(model_path=str(model_path), max_steps=2, per_device_batch_size=2), RunDir(run)
    )

    assert result.status == "succeeded"  # TRL pads with EOS
