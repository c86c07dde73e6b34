import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.engine.helpers import model_without_pad_token, read_jsonl, write_config, write_jsonl
from training.engine import sft
from training.engine.config import config_from_dict
from training.engine.run_dir import RunDir

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And how many days are in a week?"},
    {"role": "assistant", "content": "Seven days."},
]


def assistant_char_spans(text: str) -> list[tuple[int, int]]:
    """Character spans an SFT loss may cover: each answer and the <|im_end|> that closes it."""
    spans, cursor = [], 0
    for message in CONVERSATION:
        if message["role"] == "assistant":
            start = text.index("<|im_start|>assistant\n" + message["content"], cursor) + len(
                "<|im_start|>assistant\n"
            )
            end = start + len(message["content"] + "<|im_end|>")
            spans.append((start, end))
            cursor = end
    return spans


def test_sft_labels_cover_assistant_tokens_only(tiny_model, tmp_path):
    run = write_config(tmp_path / "run", model_path=str(tiny_model), max_steps=1)
    write_jsonl(run / "train.jsonl", [{"messages": CONVERSATION}])
    trainer = sft.build_trainer(
        sft.Config(model_path=str(tiny_model), max_steps=1), RunDir(run), callbacks=[]
    )

    batch = trainer.data_collator([trainer.train_dataset[0]])
    input_ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert encoded["input_ids"] == input_ids  # the trainer tokenised exactly the rendered conversation
    spans = assistant_char_spans(text)
    trained_tokens = []
    for position, (start, end) in enumerate(encoded["offset_mapping"]):
        inside_answer = any(span_start <= start and end <= span_end for span_start, span_end in spans)
        expected = input_ids[position] if inside_answer else -100
        assert labels[position] == expected, f"token {position} {tokenizer.decode([input_ids[position]])!r}"
        if inside_answer:
            trained_tokens.append(input_ids[position])
    assert tokenizer.decode(trained_tokens) == "Paris.<|im_end|>Seven days.<|im_end|>"


def test_sft_trains_saves_and_logs(tiny_model, tmp_path):
    run = write_config(
        tmp_path / "run",
        model_path=str(tiny_model),
        max_steps=6,
        save_every=3,
        log_every=2,
        learning_rate=1e-3,
    )
    write_jsonl(run / "train.jsonl", [{"messages": CONVERSATION}] * 8)

    result = sft.main(sft.Config(**json.loads((run / "config.json").read_text())), RunDir(run))

    assert result.status == "succeeded" and result.step == 6
    lines = read_jsonl(run / "metrics.jsonl")
    assert [line["step"] for line in lines] == [2, 4, 6]
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert AutoModelForCausalLM.from_pretrained(run / "model").config.model_type == "qwen2"
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-3",
        "checkpoint-6",
    ]


def test_sft_with_lora_saves_a_merged_model(tiny_model, tmp_path):
    run = write_config(tmp_path / "run")
    write_jsonl(run / "train.jsonl", [{"messages": CONVERSATION}] * 4)
    config = config_from_dict(
        sft.Config, {"model_path": str(tiny_model), "max_steps": 2, "learning_rate": 1e-2, "lora": {"r": 4}}
    )

    result = sft.main(config, RunDir(run))

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    tuned = AutoModelForCausalLM.from_pretrained(run / "model")
    assert result.status == "succeeded"
    assert not (run / "model" / "adapter_config.json").exists()
    changed = [
        name
        for (name, a), (_, b) in zip(base.named_parameters(), tuned.named_parameters(), strict=True)
        if not a.equal(b)
    ]
    assert changed and all("proj" in name for name in changed)  # adapters merged into the linear layers


def test_sft_trains_a_model_whose_tokenizer_has_no_pad_token(tiny_model, tmp_path):
    model_path = model_without_pad_token(tiny_model, tmp_path / "no-pad")
    run = write_config(tmp_path / "run")
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    write_jsonl(run / "train.jsonl", [{"messages": CONVERSATION}, {"messages": short}] * 2)

    result = sft.main(
        sft.Config(model_path=str(model_path), max_steps=2, per_device_batch_size=2), RunDir(run)
    )

    assert result.status == "succeeded"  # TRL pads with EOS; padding is never a label
