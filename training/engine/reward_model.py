"""How a reward model reads preference pairs: the rows `reward` trains on, and their scores.

A conversation (prompt + one answer) is rendered with the chat template and cut right after the
answer's end-of-turn token (`conversations.render_scored`). The score is the head's output at the
conversation's last token, that end of turn, which is where PPO reads the reward model.
"""

from __future__ import annotations

from typing import Any

import torch

from training.engine.chat_masks import special_token_ids
from training.engine.conversations import render_scored
from training.engine.errors import EngineError


def pad_with_eos_if_missing(tokenizer) -> None:
    """Pad with EOS when the tokenizer has no pad token (Llama-style); padding is masked out anyway."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise EngineError(
            "the model's tokenizer has neither a pad token nor an EOS token to pad the pairs with"
        )
    tokenizer.pad_token = tokenizer.eos_token


def tokenize_pairs(pairs: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """Render prompt + chosen and prompt + rejected as the reward model scores them.

    Each conversation ends with the answer's end-of-turn token (module docstring). A conversation
    longer than max_length keeps its last max_length tokens (and a leading BOS): the prompt loses its
    oldest turns first and the score, read at the last token, still sees the whole answer when it
    fits — the same left truncation PPO applies to prompts. Return the rows (chosen_ids,
    rejected_ids, margin, weight) and how many pairs were truncated.
    """
    if pairs and not tokenizer.chat_template:
        raise EngineError("the model's tokenizer has no chat template to render the pairs with")
    special = special_token_ids(tokenizer)
    rows, truncated = [], 0
    for pair in pairs:
        chosen = render_scored(tokenizer, pair["prompt"] + pair["chosen"], special_ids=special)
        rejected = render_scored(tokenizer, pair["prompt"] + pair["rejected"], special_ids=special)
        truncated += max(len(chosen), len(rejected)) > max_length
        rows.append(
            {
                "chosen_ids": keep_last_tokens(chosen, max_length, tokenizer.bos_token_id),
                "rejected_ids": keep_last_tokens(rejected, max_length, tokenizer.bos_token_id),
                "margin": pair["margin"],
                "weight": pair["weight"],
            }
        )
    return rows, truncated


def keep_last_tokens(ids: list[int], max_length: int, bos_token_id: int | None) -> list[int]:
    """Return the last max_length tokens of ids, keeping a leading BOS in front of them."""
    if len(ids) <= max_length:
        return ids
    if bos_token_id is not None and ids[0] == bos_token_id and max_length > 1:
        return ids[:1] + ids[len(ids) - max_length + 1 :]
    return ids[-max_length:]


def score_pairs(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Score a collated batch in one forward pass; return (chosen scores, rejected scores, outputs).

    A conversation's score is the score head's output at its last attended token, which the head's
    forward hook hands us. Not the classifier's own pooling, the last token that differs from the pad
    token: when EOS pads (a tokenizer without pad token), a conversation ending in EOS (every one, as
    rendered here) would be scored one token early, where PPO, reading the reward model at the
    answer's EOS, never looks.
    """
    head = _score_head(model)
    per_token = []
    hook = head.register_forward_hook(lambda module, args, output: per_token.append(output))
    try:
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
        )
    finally:
        hook.remove()
    mask = inputs["attention_mask"]
    last = (mask * torch.arange(mask.size(1), device=mask.device)).argmax(1)
    scores = per_token[-1].squeeze(-1).float()[torch.arange(mask.size(0), device=mask.device), last]
    chosen, rejected = scores.chunk(2)
    return chosen, rejected, outputs


def _score_head(model) -> torch.nn.Module:
    """Return the sequence classifier's score head under DDP's and peft's wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(model, "get_base_model"):  # peft: the head is its trained copy (modules_to_save)
        model = model.get_base_model()
    return model.score
