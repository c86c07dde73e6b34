"""A conversation too long for max_length is shortened on message boundaries and re-rendered.

Cutting the rendered tokens from the left, as before, kept SmolLM2's `<|im_start|>` (its BOS) in
front of half a message. Each command that shortens (reward, dpo, ppo prompts, sample prompts) must
keep a rendering that opens as the template opens a conversation. SmolLM2's template runs on
make-tiny's tokenizer with `<|im_start|>` as BOS, as SmolLM2's tokenizer has it.
"""

import pytest
import torch

from tests.engine.helpers import SMOLLM2_TEMPLATE, smollm2_like_model, smollm2_like_tokenizer, write_jsonl
from tests.engine.test_chat_masks import LLAMA2_TEMPLATE, tokenizer_for
from training.engine import dpo, ppo, sampling
from training.engine.configs import SampleConfig
from training.engine.conversations import fit_conversation, fit_prompt, render, render_scored
from training.engine.errors import EngineError
from training.engine.reward_model import tokenize_pairs
from training.engine.run_dir import RunDir

SYSTEM = {"role": "system", "content": "You are terse."}
LONG_CHAT = [
    SYSTEM,
    {"role": "user", "content": "Tell me a story about a cat who learned to read, a long one please."},
    {
        "role": "assistant",
        "content": "The cat found a book by the sea and read it day after day, week after week.",
    },
    {"role": "user", "content": "What is the capital of France? Answer the question briefly and politely."},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "How many days are there in a week?"},
]
ANSWER = [{"role": "assistant", "content": "There are seven days in a week."}]
SMOLLM2_OPENING = "<|im_start|>system\n"


def suffix_rendering(tokenizer, ids: list[int], messages: list[dict], **kwargs) -> list[dict] | None:
    """The trailing slice of messages (after the system turn, if kept) whose rendering ids is, or None."""
    for start in range(len(messages)):
        for kept in (messages[start:], [messages[0], *messages[start:]]):
            try:
                if render(tokenizer, kept, **kwargs) == ids:
                    return kept
            except EngineError:  # Llama 2's template refuses turns that don't alternate
                continue
    return None


def test_ppo_prompts_drop_their_oldest_turns_and_keep_the_system_turn():
    tokenizer = smollm2_like_tokenizer()
    full = render(tokenizer, LONG_CHAT, add_generation_prompt=True)
    max_len = len(full) - 10

    (ids,) = ppo.tokenize_prompts([{"context": LONG_CHAT}], tokenizer, max_len=max_len)

    assert len(ids) <= max_len
    assert tokenizer.decode(ids).startswith(SMOLLM2_OPENING + "You are terse.<|im_end|>\n<|im_start|>user\n")
    assert suffix_rendering(tokenizer, ids, LONG_CHAT, add_generation_prompt=True) == [SYSTEM, *LONG_CHAT[3:]]


def test_a_turn_too_long_alone_keeps_the_end_of_its_text_under_the_templates_opening():
    tokenizer = smollm2_like_tokenizer()
    question = (
        "Please write a short poem about the sea and the wind. " * 10 + "What is the capital of France?"
    )
    prompt = [{"role": "user", "content": question}]

    ids = fit_prompt(tokenizer, prompt, max_length=80)

    text = tokenizer.decode(ids)
    assert len(ids) <= 80 and len(render(tokenizer, prompt, add_generation_prompt=True)) > 80
    # the default system turn SmolLM2's template writes, then the user turn's header and its last words
    assert text.startswith(SMOLLM2_OPENING + "You are a helpful AI assistant named SmolLM")
    assert "<|im_start|>user\n" in text
    assert text.endswith("What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_reward_pairs_are_shortened_on_message_boundaries_sharing_one_prompt():
    tokenizer = smollm2_like_tokenizer()
    pair = {
        "prompt": LONG_CHAT,
        "chosen": ANSWER,
        "rejected": [{"role": "assistant", "content": "Seven."}],
        "margin": 0.0,
        "weight": 1.0,
    }
    max_length = len(render_scored(tokenizer, LONG_CHAT + ANSWER)) - 10

    (row,), shortened = tokenize_pairs([pair], tokenizer, max_length=max_length)

    assert shortened == 1
    kept_prompt = [SYSTEM, *LONG_CHAT[3:]]
    assert row["chosen_ids"] == render_scored(tokenizer, kept_prompt + ANSWER)
    assert row["rejected_ids"] == render_scored(tokenizer, kept_prompt + pair["rejected"])
    assert len(row["chosen_ids"]) <= max_length
    assert tokenizer.decode(row["chosen_ids"]).startswith(SMOLLM2_OPENING)


def test_an_answer_too_long_alone_keeps_its_end_where_the_score_sits():
    tokenizer = smollm2_like_tokenizer()
    long_answer = [{"role": "assistant", "content": "The sea and the wind. " * 30 + "The end."}]
    pair = {"prompt": LONG_CHAT[-1:], "chosen": long_answer, "rejected": ANSWER, "margin": 0.0, "weight": 1.0}

    (row,), shortened = tokenize_pairs([pair], tokenizer, max_length=64)

    chosen = tokenizer.decode(row["chosen_ids"])
    assert shortened == 1 and len(row["chosen_ids"]) <= 64
    assert chosen.startswith(SMOLLM2_OPENING) and chosen.endswith("The end.<|im_end|>")
    assert "<|im_start|>user\n<|im_end|>" in chosen  # the question gave its text first


def test_sample_prompts_are_shortened_on_message_boundaries(tiny_model, tmp_path, monkeypatch):
    model_path = smollm2_like_model(tiny_model, tmp_path / "smol")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path)
    full = render(tokenizer, LONG_CHAT, add_generation_prompt=True)
    config = SampleConfig(model_path=str(model_path), max_prompt_length=len(full) - 10, num_responses=1)
    seen = {}

    def generate(model, input_ids, attention_mask, params, **kwargs):
        seen["ids"] = input_ids[attention_mask.bool()].tolist()
        return torch.full((input_ids.size(0), 2), tokenizer.eos_token_id)

    monkeypatch.setattr(sampling, "generate", generate)
    sampling.generate_answers(model, tokenizer, [LONG_CHAT], config, torch.device("cpu"))

    assert len(seen["ids"]) <= config.max_prompt_length
    assert suffix_rendering(tokenizer, seen["ids"], LONG_CHAT, add_generation_prompt=True) == [
        SYSTEM,
        *LONG_CHAT[3:],
    ]


def test_dpo_shortens_long_prompts_instead_of_dropping_their_pairs(tiny_model, tmp_path):
    model_path = smollm2_like_model(tiny_model, tmp_path / "smol")
    run = tmp_path / "run"
    run.mkdir()
    rejected = [{"role": "assistant", "content": "Seven."}]
    write_jsonl(run / "pairs.jsonl", [{"prompt": LONG_CHAT, "chosen": ANSWER, "rejected": rejected}] * 4)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    max_length = len(render(tokenizer, LONG_CHAT, add_generation_prompt=True)) - 5
    config = dpo.Config(model_path=str(model_path), max_steps=1, max_length=max_length)

    trainer = dpo.build_trainer(config, RunDir(run), callbacks=[])

    assert len(trainer.train_dataset) == 4 and trainer.truncated_pairs == 4
    row = trainer.train_dataset[0]
    assert len(row["prompt_ids"]) + len(row["chosen_ids"]) <= max_length
    assert tokenizer.decode(row["prompt_ids"]).startswith(SMOLLM2_OPENING + "You are terse.")
    assert tokenizer.decode(row["chosen_ids"]).startswith("There are seven days")


def test_dropping_turns_never_leaves_the_assistant_first_for_a_template_that_refuses_it():
    tokenizer = tokenizer_for(LLAMA2_TEMPLATE)  # raises unless turns alternate user / assistant
    chat = [message for message in LONG_CHAT if message["role"] != "system"]
    max_length = len(render(tokenizer, chat)) - 5

    ids = fit_prompt(tokenizer, chat, max_length=max_length)

    assert suffix_rendering(tokenizer, ids, chat, add_generation_prompt=True) == chat[2:]
    assert ids[0] == tokenizer.bos_token_id


def test_fit_conversation_keeps_what_fits_and_says_whether_it_shortened():
    def length(messages):  # one token per character of content, for the arithmetic
        return sum(len(message["content"]) for message in messages)

    chat = [{"role": "system", "content": "sys"}, {"role": "user", "content": "aaaa"}]
    chat += [{"role": "assistant", "content": "bb"}, {"role": "user", "content": "question"}]
    answers = [[{"role": "assistant", "content": "yes"}], [{"role": "assistant", "content": "no"}]]

    assert fit_conversation(chat, answers, max_length=20, length=length) == (chat, answers, False)
    assert fit_conversation(chat, answers, max_length=15, length=length)[0] == [chat[0], chat[3]]
    assert fit_conversation(chat, answers, max_length=11, length=length)[0] == [chat[3]]
    kept, fitted, shortened = fit_conversation(chat, answers, max_length=6, length=length)
    assert kept == [{"role": "user", "content": "ion"}] and fitted == answers and shortened
    kept, fitted, _ = fit_conversation(chat, answers, max_length=2, length=length)
    assert kept == [{"role": "user", "content": ""}] and fitted == [
        [{"role": "assistant", "content": "es"}],
        answers[1],
    ]


def test_max_length_shorter_than_the_templates_own_tokens_is_a_clear_error():
    tokenizer = smollm2_like_tokenizer()
    assert tokenizer.chat_template == SMOLLM2_TEMPLATE

    with pytest.raises(EngineError, match="max_length 5 is too short"):
        fit_prompt(tokenizer, LONG_CHAT, max_length=5)
