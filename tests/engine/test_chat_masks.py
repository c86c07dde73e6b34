"""SFT's assistant mask from templates without `{% generation %}` markers, token by token.

The templates are the real ones (SmolLM2-135M-Instruct's ChatML as its GGUF and tokenizer_config
carry it, Meta-Llama-3-8B-Instruct's, Llama-2-chat's, Qwen3's as TRL ships it) on make-tiny's
locally trained BPE, given the special tokens each template writes.
"""

import json
import shutil
from pathlib import Path

import pytest
import trl
from transformers import AutoTokenizer

from tests.engine.helpers import SMOLLM2_TEMPLATE, read_jsonl, write_config, write_jsonl
from training.engine import sft, tiny
from training.engine.__main__ import main as cli_main
from training.engine.chat_masks import marked_template, tokenize_dialogues, tokenize_with_assistant_mask
from training.engine.errors import EngineError
from training.engine.run_dir import RunDir

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
# Qwen3's template with thinking off: the generation prompt opens an empty <think> block that the
# rendered assistant turn does not have, so the prompt is not the start of the turn
THINKING_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n\n</think>\n\n' }}{% endif %}"
)

DIALOGUE = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And how many days are in a week?"},
    {"role": "assistant", "content": "Seven days."},
]


def tokenizer_for(template: str):
    """make-tiny's BPE with the template and the special tokens it writes."""
    tokenizer = tiny.build_tokenizer(vocab_size=512)
    tokenizer.chat_template = template
    if template is LLAMA3_TEMPLATE:
        tokenizer.add_tokens(["<|start_header_id|>", "<|end_header_id|>"], special_tokens=True)
        tokenizer.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    if template is LLAMA2_TEMPLATE:
        tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
    return tokenizer


def trained_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    """The trained tokens, one list per unbroken run (one per assistant turn)."""
    runs = []
    for index, (token, trained) in enumerate(zip(ids, mask, strict=True)):
        if trained and (index == 0 or not mask[index - 1]):
            runs.append([])
        if trained:
            runs[-1].append(token)
    return runs


def trained_and_untrained(tokenizer, messages):
    """Return (the trained runs of ids, the untrained text) after checking the ids are the template's."""
    ids, mask = tokenize_with_assistant_mask(tokenizer, messages)
    assert ids == tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    runs = trained_runs(ids, mask)
    untrained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    return runs, untrained


def ids_of(tokenizer, *pieces: str) -> list[int]:
    """Tokenize each piece on its own (special tokens by name) and join the ids."""
    ids = []
    for piece in pieces:
        special = tokenizer.convert_tokens_to_ids(piece) if piece in tokenizer.get_vocab() else None
        ids += [special] if special is not None else tokenizer(piece, add_special_tokens=False)["input_ids"]
    return ids


def test_smollm2_chatml_trains_each_answer_and_its_im_end_only():
    tokenizer = tokenizer_for(SMOLLM2_TEMPLATE)

    runs, untrained = trained_and_untrained(tokenizer, DIALOGUE)

    assert runs == [ids_of(tokenizer, "Paris.", "<|im_end|>"), ids_of(tokenizer, "Seven days.", "<|im_end|>")]
    assert untrained == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n\n"  # the role header before the answer, the newline after its <|im_end|>
        "<|im_start|>user\nAnd how many days are in a week?<|im_end|>\n"
        "<|im_start|>assistant\n\n"
    )


def test_smollm2_default_system_prompt_is_not_trained():
    tokenizer = tokenizer_for(SMOLLM2_TEMPLATE)
    dialogue = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]

    runs, untrained = trained_and_untrained(tokenizer, dialogue)

    assert runs == [ids_of(tokenizer, "Hello.", "<|im_end|>")]
    assert untrained == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n\n"
    )


def test_llama3_trains_each_answer_and_its_eot_id_only():
    tokenizer = tokenizer_for(LLAMA3_TEMPLATE)

    runs, untrained = trained_and_untrained(tokenizer, DIALOGUE)

    assert runs == [ids_of(tokenizer, "Paris.", "<|eot_id|>"), ids_of(tokenizer, "Seven days.", "<|eot_id|>")]
    assert untrained == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd how many days are in a week?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama2_trains_each_answer_and_its_eos_only():
    tokenizer = tokenizer_for(LLAMA2_TEMPLATE)

    runs, untrained = trained_and_untrained(tokenizer, DIALOGUE)

    # the template writes ' ' + answer + ' ' + eos: the answer's tokens carry those spaces
    assert runs == [ids_of(tokenizer, " Paris. ", "</s>"), ids_of(tokenizer, " Seven days. ", "</s>")]
    assert untrained == (
        "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is the capital of France? [/INST]"
        "<s>[INST] And how many days are in a week? [/INST]"
    )


def test_a_template_with_generation_markers_gets_the_mask_they_mark():
    tokenizer = tiny.build_tokenizer(vocab_size=512)  # make-tiny's template marks answer + <|im_end|>

    ids, mask = tokenize_with_assistant_mask(tokenizer, DIALOGUE)

    marked = tokenizer.apply_chat_template(
        DIALOGUE, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert ids == marked["input_ids"] and mask == marked["assistant_masks"]


def test_a_template_that_is_not_prefix_preserving_is_a_clear_error():
    tokenizer = tokenizer_for(THINKING_TEMPLATE)

    with pytest.raises(EngineError) as error:
        tokenize_with_assistant_mask(tokenizer, DIALOGUE)

    message = str(error.value)
    assert message.startswith(
        "the chat template is not prefix-preserving, so the assistant's tokens can't be masked: "
        "rendered alone, messages[:2] with the generation prompt reads"
    )
    assert "<think>" in message


def test_the_prefix_method_serves_templates_without_markers_that_trl_does_not_know():
    assert marked_template(tokenizer_for(SMOLLM2_TEMPLATE)) is None
    assert marked_template(tokenizer_for(LLAMA2_TEMPLATE)) is None
    assert marked_template(tiny.build_tokenizer(vocab_size=512)) == tiny.CHAT_TEMPLATE  # its own markers


def test_a_template_trl_knows_is_masked_by_trls_marked_version_even_if_not_prefix_preserving():
    qwen3 = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    tokenizer = tokenizer_for(qwen3)
    with pytest.raises(EngineError, match="not prefix-preserving"):  # its generation prompt lacks <think>
        tokenize_with_assistant_mask(tokenizer, DIALOGUE)

    [(ids, mask)] = tokenize_dialogues(tokenizer, [DIALOGUE], where="train.jsonl")

    trained = [tokenizer.decode(run) for run in trained_runs(ids, mask)]
    # TRL's training template writes the empty thinking block into every answer and marks the
    # newline after <|im_end|> too
    assert trained == [
        "<think>\n\n</think>\n\nParis.<|im_end|>\n",
        "<think>\n\n</think>\n\nSeven days.<|im_end|>\n",
    ]


def model_with_template(tiny_model, folder, template):
    shutil.copytree(tiny_model, folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)
    return folder


def test_sft_trains_a_model_whose_template_has_no_generation_markers(tiny_model, tmp_path):
    model = model_with_template(tiny_model, tmp_path / "smol-template", SMOLLM2_TEMPLATE)
    run = write_config(tmp_path / "run", model_path=str(model), max_steps=2, log_every=1)
    write_jsonl(run / "train.jsonl", [{"messages": DIALOGUE}] * 4)
    config = sft.Config(model_path=str(model), max_steps=2, log_every=1)
    tokenizer = AutoTokenizer.from_pretrained(model)

    row = sft.build_trainer(config, RunDir(run), callbacks=[]).train_dataset[0]
    trained = [token for token, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
    assert tokenizer.decode(trained) == "Paris.<|im_end|>Seven days.<|im_end|>"

    result = sft.main(config, RunDir(run))

    assert result.status == "succeeded" and result.step == 2
    assert [line["step"] for line in read_jsonl(run / "metrics.jsonl")] == [1, 2]


def test_sft_on_a_template_that_is_not_prefix_preserving_exits_2_naming_the_dialogue(
    tiny_model, tmp_path, capsys
):
    model = model_with_template(tiny_model, tmp_path / "thinking-template", THINKING_TEMPLATE)
    run = write_config(tmp_path / "run", model_path=str(model), max_steps=1)
    write_jsonl(run / "train.jsonl", [{"messages": DIALOGUE}])

    code = cli_main(["sft", "--run-dir", str(run)])

    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert error.startswith(
        "error: train.jsonl dialogue 1: the chat template is not prefix-preserving, so the assistant's tokens "
        "can't be masked: "
    )
    assert json.loads((run / "result.json").read_text())["status"] == "failed"
