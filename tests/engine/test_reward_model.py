"""The reward model is trained, and read, at the token where PPO scores an answer: its end of turn."""

import pytest
import torch

from tests.engine.helpers import smollm2_like_tokenizer
from tests.engine.test_chat_masks import LLAMA2_TEMPLATE, LLAMA3_TEMPLATE, tokenizer_for
from training.engine import ppo, tiny
from training.engine.conversations import render, render_scored
from training.engine.reward_model import tokenize_pairs

PROMPT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And how many days are in a week?"},
]
ANSWER = "There are seven days in a week."


def make_tiny_tokenizer():
    return tiny.build_tokenizer(vocab_size=512)


@pytest.mark.parametrize("build", [make_tiny_tokenizer, smollm2_like_tokenizer], ids=["make-tiny", "smollm2"])
def test_reward_trains_the_score_on_the_token_ppo_scores_for_the_same_answer(build):
    tokenizer = build()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pair = {
        "prompt": PROMPT,
        "chosen": [{"role": "assistant", "content": ANSWER}],
        "rejected": [{"role": "assistant", "content": "I do not know."}],
        "margin": 0.0,
        "weight": 1.0,
    }
    (row,), _ = tokenize_pairs([pair], tokenizer, max_length=1024)

    # PPO: the policy reads the prompt, writes the answer and its EOS, then pads to max_new_tokens
    (prompt_ids,) = ppo.tokenize_prompts([{"context": PROMPT}], tokenizer, max_len=512)
    answer_ids = tokenizer.encode(ANSWER, add_special_tokens=False) + [eos]
    responses = torch.tensor([answer_ids + [pad] * 5])
    mask, has_eos = ppo.response_mask(responses, [eos])
    sequence = prompt_ids + responses[0].tolist()
    scored = int(ppo.scored_positions(mask, prompt_width=len(prompt_ids))[0])

    assert has_eos.item() and sequence[scored] == eos
    # the reward row is exactly what PPO scores, and the score is read at its last token
    assert row["chosen_ids"] == sequence[: scored + 1]
    assert tokenizer.decode(row["chosen_ids"]).endswith(ANSWER + "<|im_end|>")


def test_ppo_scores_an_answer_without_eos_at_its_last_token():
    eos, pad = 2, 0
    responses = torch.tensor([[5, 6, 7, 8], [5, eos, pad, pad], [eos, pad, pad, pad]])

    mask, has_eos = ppo.response_mask(responses, [eos])

    assert has_eos.tolist() == [False, True, True]
    assert ppo.scored_positions(mask, prompt_width=3).tolist() == [6, 4, 3]


@pytest.mark.parametrize("template", [LLAMA3_TEMPLATE, LLAMA2_TEMPLATE], ids=["llama3", "llama2"])
def test_a_template_that_ends_on_its_end_of_turn_token_is_scored_as_it_renders(template):
    tokenizer = tokenizer_for(template)
    messages = [*PROMPT, {"role": "assistant", "content": ANSWER}]

    ids = render_scored(tokenizer, messages)

    assert ids == render(tokenizer, messages)
    assert ids[-1] == tokenizer.eos_token_id


def test_a_template_without_special_tokens_is_scored_as_it_renders():
    tokenizer = make_tiny_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    messages = [*PROMPT, {"role": "assistant", "content": ANSWER}]

    assert render_scored(tokenizer, messages) == render(tokenizer, messages)
