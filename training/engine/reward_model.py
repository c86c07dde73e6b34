"""How a reward model reads preference pairs: the rows `reward` trains on and `score` scores.

A conversation (prompt + one answer) is rendered with the chat template and cut right after the
answer's end-of-turn token (`conversations.render_scored`). The score is the head's output at the
conversation's last token, that end of turn, which is where PPO reads the reward model. A pair too
long for max_length is shortened on message boundaries, both conversations keeping the same prompt
(`conversations.fit_conversation`).
"""

from __future__ import annotations

import json
from typing import Any

import torch

from training.engine.chat_masks import special_token_ids
from training.engine.conversations import fit_conversation, render, render_scored
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


def tokenize_pairs(pairs: list[dict], tokenizer, max_length: int, *,
                   answer_starts: bool = False) -> tuple[list[dict], int]:
    """Render prompt + chosen and prompt + rejected as the reward model scores them.

    Each conversation ends with the answer's end-of-turn token (module docstring). A pair longer than
    max_length is shortened on message boundaries and re-rendered, not dropped as TRL would nor cut
    token-wise (`conversations.fit_conversation`): its prompt, shared by both answers, loses its oldest
    turns first, then text from its front; an answer too long alone keeps its end, where the score
    sits. Return the rows (chosen_ids, rejected_ids, margin, weight) and how many pairs were shortened.
    With `answer_starts`, each row also holds `answer_start`, where both answers begin (see `answer_start`).
    """
    if pairs and not tokenizer.chat_template:
        raise EngineError("the model's tokenizer has no chat template to render the pairs with")
    special = special_token_ids(tokenizer)
    rendered: dict[str, list[int]] = {}  # one pair's renderings: fitting measures what is then kept

    def scored(messages: list[dict]) -> list[int]:
        key = json.dumps(messages)
        if key not in rendered:
            rendered[key] = render_scored(tokenizer, messages, special_ids=special)
        return rendered[key]

    rows, shortened = [], 0
    for pair in pairs:
        rendered.clear()
        prompt, (chosen, rejected), cut = fit_conversation(
            pair["prompt"],
            [pair["chosen"], pair["rejected"]],
            max_length=max_length,
            length=lambda messages: len(scored(messages)),
        )
        shortened += cut
        row = {
            "chosen_ids": scored(prompt + chosen),
            "rejected_ids": scored(prompt + rejected),
            "margin": pair["margin"],
            "weight": pair["weight"],
        }
        if answer_starts:
            row["answer_start"] = answer_start(tokenizer, prompt, row["chosen_ids"], row["rejected_ids"])
        rows.append(row)
    return rows, shortened


def answer_start(tokenizer, prompt: list[dict], *conversations: list[int]) -> int:
    """Where the answer begins in rendered conversations sharing `prompt`: after the prompt rendered with
    its generation prompt (what PPO's rollout starts from), so the answer is its text and end of turn.

    A template whose prompt rendering is not a prefix of the conversation's falls back to the
    conversations' common prefix, capped at the shortest conversation's last token.
    """
    query = render(tokenizer, prompt, add_generation_prompt=True)
    if all(ids[: len(query)] == query and len(ids) > len(query) for ids in conversations):
        return len(query)
    common = 0
    shortest = min(len(ids) for ids in conversations)
    while common < shortest - 1 and all(ids[common] == conversations[0][common] for ids in conversations):
        common += 1
    return common


def collate_pairs(rows: list[dict[str, Any]], *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the chosen rows, then the rejected rows, into one batch (TRL's preference layout)."""
    return right_pad([row["chosen_ids"] for row in rows] + [row["rejected_ids"] for row in rows],
                     pad_token_id=pad_token_id)


def right_pad(sequences: list[list[int]], *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Token id lists as one right-padded batch: input_ids and attention_mask."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for index, ids in enumerate(sequences):
        input_ids[index, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[index, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def load_reward_model(source, *, dtype: torch.dtype, pad_token_id: int):
    """Load the reward model a folder holds: a probe (probe.py) or a one-label sequence classifier."""
    from training.engine import probe

    if probe.is_probe(source):
        return probe.load_probe(source, dtype=dtype)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=dtype)
    model.config.pad_token_id = pad_token_id  # the classifier's own pooling wants one
    return model


def score_rows(model, rows: list[dict], *, pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Score tokenized pairs (tokenize_pairs; with answer_start for a probe) in one batch: (chosen, rejected)."""
    from training.engine import probe

    if isinstance(model, probe.ProbeRewardModel):
        sequences = [row["chosen_ids"] for row in rows] + [row["rejected_ids"] for row in rows]
        starts = [row["answer_start"] for row in rows] * 2
        batch = probe.collate_conversations(sequences, starts, pad_token_id=pad_token_id)
        scores = model(**{key: value.to(device) for key, value in batch.items()}).float()
        return scores[: len(rows)], scores[len(rows) :]
    batch = collate_pairs(rows, pad_token_id=pad_token_id)
    chosen, rejected, _ = score_pairs(model, {key: value.to(device) for key, value in batch.items()})
    return chosen, rejected


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
