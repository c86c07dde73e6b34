"""Conversations as token ids: what a reward model scores, and how a long conversation is shortened.

Every command that reads a conversation renders it with the model's own chat template (`render`).
Two rules keep the commands in agreement:

- Where a score sits (`render_scored`). PPO reads the reward model at the answer's end-of-turn token
  (`<|im_end|>`, `<|eot_id|>`, `</s>`: the EOS the policy emits, or an unfinished answer's last
  token). A template writes more after it (ChatML's newline), so a rendered conversation is cut right
  after the final turn's last special token when only whitespace follows it; reward trains, and
  `score` reads, the score exactly where PPO looks.
- How a conversation too long for `max_length` is shortened (`fit_conversation`): on message
  boundaries, re-rendered, never by cutting tokens off the front of the rendering (which, with
  SmolLM2's template, left a lone `<|im_start|>` taken for a BOS in front of half a message). The
  prompt loses its oldest turns first (the system turn last); if its last turn alone is still too
  long, the oldest remaining message keeps the end of its text; then, where asked, the answers do.
  reward, dpo, ppo and sample all shorten this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from training.engine.chat_masks import special_token_ids
from training.engine.errors import EngineError

Messages = list[dict[str, Any]]


def render(tokenizer, messages: Messages, *, add_generation_prompt: bool = False) -> list[int]:
    """Tokenize the messages as the chat template renders them (no special token beyond the template's)."""
    from jinja2 import TemplateError

    try:
        encoded = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as error:
        raise EngineError(f"the chat template refused a conversation: {error}") from None
    return list(encoded["input_ids"])


def render_scored(tokenizer, messages: Messages, *, special_ids: set[int] | None = None) -> list[int]:
    """Render a conversation that ends with an answer, cut right after the answer's end-of-turn token.

    The end of turn is the last special token, when nothing but whitespace follows it (ChatML's
    `<|im_end|>` before its newline; Llama 3's `<|eot_id|>` and Llama 2's `</s>` end the rendering
    anyway). A template that closes no turn with a special token is left as it renders.
    """
    ids = render(tokenizer, messages)
    special = special_token_ids(tokenizer) if special_ids is None else special_ids
    last = next((i for i in range(len(ids) - 1, -1, -1) if ids[i] in special), None)
    if last is None or tokenizer.decode(ids[last + 1 :]).strip():
        return ids
    return ids[: last + 1]


def fit_conversation(
    prompt: Messages,
    answers: list[Messages],
    *,
    max_length: int,
    length: Callable[[Messages], int],
    cut_answers: bool = True,
) -> tuple[Messages, list[Messages], bool]:
    """Shorten prompt (and answers) on message boundaries until every prompt + answer fits max_length.

    `answers` are alternative endings sharing the prompt (a pair's chosen and rejected; `[]` for a
    prompt alone); `length(messages)` is the token count of the rendering the caller will use. Return
    (prompt, answers, shortened). In order: the prompt's oldest turns go (a leading assistant turn
    with them, so it starts as a user or system turn), the system turn last, the turn being answered
    never; then the oldest remaining message keeps the end of its text, down to none; then, with
    `cut_answers`, so does each answer still too long (its end carries the score). Raise EngineError
    when even empty messages don't fit (max_length shorter than the template's own tokens); without
    `cut_answers`, return the shortest prompt and let the caller cut the answers.
    """
    endings = answers or [[]]

    def fits(messages: Messages) -> bool:
        return all(length(messages + ending) <= max_length for ending in endings)

    if fits(prompt):
        return prompt, answers, False
    kept = list(prompt)
    while len(kept) > 1:
        kept = _without_oldest_turn(kept)
        if fits(kept):
            return kept, answers, True
    kept = _keep_end_of_text(kept, 0, fits)
    if fits(kept) or not cut_answers:
        return kept, answers, True

    fitted = []
    for ending in endings:
        messages = kept + ending
        for index in range(len(kept), len(messages)):
            messages = _keep_end_of_text(messages, index, lambda m: length(m) <= max_length)
        if length(messages) > max_length:
            raise EngineError(
                f"max_length {max_length} is too short: with every message emptied, the chat template "
                f"still renders {length(messages)} tokens"
            )
        fitted.append(messages[len(kept) :])
    return kept, fitted if answers else answers, True


def fit_prompt(tokenizer, messages: Messages, *, max_length: int) -> list[int]:
    """Render a prompt with the generation prompt in at most max_length tokens (fit_conversation's way)."""
    ids = render(tokenizer, messages, add_generation_prompt=True)
    if len(ids) <= max_length:
        return ids

    def length(kept: Messages) -> int:
        return len(render(tokenizer, kept, add_generation_prompt=True))

    kept, _, _ = fit_conversation(messages, [], max_length=max_length, length=length)
    return render(tokenizer, kept, add_generation_prompt=True)


def _without_oldest_turn(messages: Messages) -> Messages:
    """Drop the oldest message before the last one (a system one only when no other is left)."""
    earlier = messages[:-1]
    index = next((i for i, message in enumerate(earlier) if message["role"] != "system"), 0)
    kept = messages[:index] + messages[index + 1 :]
    # a conversation must not open with the assistant (Llama 2's template refuses it)
    while len(kept) > 1:
        first = next(i for i, message in enumerate(kept) if message["role"] != "system" or i == len(kept) - 1)
        if first == len(kept) - 1 or kept[first]["role"] != "assistant":
            break
        kept = kept[:first] + kept[first + 1 :]
    return kept


def _keep_end_of_text(messages: Messages, index: int, fits: Callable[[Messages], bool]) -> Messages:
    """Return messages with messages[index] keeping the longest end of its text that fits (none if none does)."""
    content = messages[index]["content"]

    def with_last(characters: int) -> Messages:
        tail = content[len(content) - characters :] if characters else ""
        return [*messages[:index], {**messages[index], "content": tail}, *messages[index + 1 :]]

    if fits(with_last(len(content))):
        return messages
    low, high = 0, len(content) - 1  # the most characters known to fit (if any do) .. that might
    while low < high:
        middle = (low + high + 1) // 2
        if fits(with_last(middle)):
            low = middle
        else:
            high = middle - 1
    return with_last(low)
