"""`torch_compile` (regional: the decoder layers) and sft's `packing`: what reaches TRL, and that packing keeps the loss right."""

import json
from collections import Counter

import pytest
import torch

from tests.engine.helpers import read_jsonl, write_config, write_jsonl
from training.engine import dpo, ppo, reward, sft
from training.engine.config import config_from_dict
from training.engine.errors import EngineError
from training.engine.hf import compile_decoder_layers, compile_trainer_models
from training.engine.run_dir import RunDir

DIALOGUES = [
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And how many days are in a week?"},
        {"role": "assistant", "content": "Seven days."},
    ],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue, like the sea."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
]
PAIR = {
    "prompt": [{"role": "user", "content": "Say something kind."}],
    "chosen": [{"role": "assistant", "content": "You did well today."}],
    "rejected": [{"role": "assistant", "content": "Go away."}],
}


@pytest.mark.parametrize("command", [sft, reward, dpo])
def test_the_trainer_never_compiles_the_whole_model(command, tiny_model, tmp_path):
    run = write_config(tmp_path / "run")
    write_jsonl(run / "train.jsonl", [{"messages": dialogue} for dialogue in DIALOGUES])
    write_jsonl(run / "pairs.jsonl", [{**PAIR, "group": f"g{i}"} for i in range(4)])
    config = command.Config(model_path=str(tiny_model), max_steps=1, torch_compile=True)

    trainer = command.build_trainer(config, RunDir(run), callbacks=[])

    # torch_compile is ours (hf.compile_decoder_layers, once the trainer is built), not accelerate's
    assert trainer.args.torch_compile is False


def test_compiled_decoder_layers_share_one_graph_skip_the_mask_and_match_eager(tiny_model):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    masks_seen = []
    for layer in model.model.layers:
        layer.register_forward_pre_hook(
            lambda module, args, kwargs: masks_seen.append(kwargs.get("attention_mask")), with_kwargs=True
        )
    ids = torch.randint(3, model.config.vocab_size, (2, 24))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()

    assert compile_decoder_layers(model) == model.config.num_hidden_layers >= 2
    with torch.no_grad():
        # as in training: no KV cache (a cache's state would be guarded, a graph per layer)
        compiled_logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        eager_logits = eager(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits

    # one layer traced, the others reuse its graph: the compile costs one layer whatever the depth
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    # the mask is built outside the compiled layers, so an unpadded batch reaches SDPA with none
    # (is_causal: the flash kernel on GPU); the whole-model compile would trace a full mask instead
    assert masks_seen == [None] * model.config.num_hidden_layers
    torch.testing.assert_close(compiled_logits, eager_logits, atol=1e-4, rtol=1e-4)
    assert set(model.state_dict()) == set(eager.state_dict())  # checkpoints see the plain model
    torch._dynamo.reset()


def test_ppo_reads_the_shared_torch_compile_and_no_other_name():
    raw = {"model_path": "m", "reward_model": "builtin:length"}
    assert config_from_dict(ppo.Config, raw).torch_compile is False
    assert config_from_dict(ppo.Config, {**raw, "torch_compile": True}).torch_compile is True
    with pytest.raises(EngineError, match="compile"):  # the old ppo-only name is an unknown key now
        config_from_dict(ppo.Config, {**raw, "compile": True})


def test_compiled_sft_trains(tiny_model, tmp_path):
    """One tiny compiled run on CPU: the decoder layers really compile, and the run succeeds."""
    import torch._dynamo

    run = write_config(
        tmp_path / "run", model_path=str(tiny_model), max_steps=2, log_every=1, torch_compile=True
    )
    write_jsonl(run / "train.jsonl", [{"messages": dialogue} for dialogue in DIALOGUES] * 2)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()

    result = sft.main(sft.Config(**json.loads((run / "config.json").read_text())), RunDir(run))

    assert result.status == "succeeded" and result.step == 2
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # dynamo traced the model
    assert [line["step"] for line in read_jsonl(run / "metrics.jsonl")] == [1, 2]
    assert (run / "model" / "config.json").exists()
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("command", "lora"),
    [(dpo, None), (reward, {"r": 4, "alpha": 8})],  # DPO compiles its reference too; LoRA wraps the layers
    ids=["dpo", "reward-lora"],
)
def test_compiled_runs_with_a_reference_model_or_lora_train(command, lora, tiny_model, tmp_path):
    run = write_config(
        tmp_path / "run", model_path=str(tiny_model), max_steps=2, log_every=1, torch_compile=True, lora=lora
    )
    write_jsonl(run / "pairs.jsonl", [{**PAIR, "group": f"g{i}"} for i in range(8)])
    config = config_from_dict(command.Config, json.loads((run / "config.json").read_text()))
    trainer = command.build_trainer(config, RunDir(run), callbacks=[])
    compile_trainer_models(trainer)
    models = [trainer.model] + ([trainer.ref_model] if command is dpo else [])
    for model in models:  # the policy (under peft's wrapper with LoRA) and DPO's reference alike
        layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
        assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    torch._dynamo.reset()

    result = command.main(config, RunDir(run))

    assert result.status == "succeeded" and result.step == 2
    assert (run / "model" / "config.json").exists()
    torch._dynamo.reset()


def _sft_trainer(tiny_model, run, *, packing: bool, batch: int = 2):
    config = sft.Config(
        model_path=str(tiny_model), max_steps=1, max_length=128, per_device_batch_size=batch, packing=packing
    )
    return sft.build_trainer(config, RunDir(run), callbacks=[])


def test_sft_packing_keeps_assistant_only_labels_and_separate_dialogues(tiny_model, tmp_path):
    run = write_config(tmp_path / "run")
    write_jsonl(run / "train.jsonl", [{"messages": dialogue} for dialogue in DIALOGUES])
    # without packing, one row per dialogue; test_sft checks these labels cover assistant tokens only
    plain = _sft_trainer(tiny_model, run, packing=False).train_dataset
    expected = Counter((tuple(row["input_ids"]), tuple(row["labels"])) for row in plain)

    trainer = _sft_trainer(tiny_model, run, packing=True)
    packed = trainer.train_dataset
    assert len(packed) == 1  # the three short dialogues share one 128-token row
    row = packed[0]
    pieces, start = Counter(), 0
    for length in row["seq_lengths"]:
        ids, labels = row["input_ids"][start : start + length], row["labels"][start : start + length]
        pieces[(tuple(ids), tuple(labels))] += 1
        start += length
    assert start == len(row["input_ids"]) <= 128
    assert pieces == expected  # each dialogue whole, with the labels (assistant mask) it has unpacked

    batch = trainer.data_collator([row])
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, start)
    starts = [0, *[sum(row["seq_lengths"][:i]) for i in range(1, len(row["seq_lengths"]))]]
    assert (
        batch["position_ids"][0] == 0
    ).nonzero().flatten().tolist() == starts  # positions restart per dialogue
    assert all(batch["labels"][0, s] == -100 for s in starts)  # no dialogue learns from the one before it

    # each dialogue attends only to itself: its logits inside the packed row equal its logits alone
    model = trainer.model.eval()
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        for s, length in zip(starts, row["seq_lengths"], strict=True):
            alone = model(input_ids=batch["input_ids"][:, s : s + length]).logits[0]
            torch.testing.assert_close(together[s : s + length], alone, atol=1e-4, rtol=1e-4)


def test_sft_with_packing_trains(tiny_model, tmp_path):
    run = write_config(
        tmp_path / "run", model_path=str(tiny_model), max_steps=2, log_every=1, packing=True, max_length=64
    )
    write_jsonl(run / "train.jsonl", [{"messages": dialogue} for dialogue in DIALOGUES] * 4)

    result = sft.main(sft.Config(**json.loads((run / "config.json").read_text())), RunDir(run))

    assert result.status == "succeeded" and result.step == 2
    lines = read_jsonl(run / "metrics.jsonl")
    assert [line["step"] for line in lines] == [1, 2]
    assert all(line["num_tokens"] > 0 for line in lines)
