"""Read and validate the engine's JSONL inputs; every error names the file and the line.

Formats (one JSON object per line):
- SFT dialogues:      {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
- preference pairs:   {"prompt": [messages], "chosen": [one assistant message],
                       "rejected": [one assistant message], "margin": float = 0, "group": str,
                       "id": any?, "task": any?}
  (TRL's conversational preference format plus a margin and the id of the ranking the pair came
  from; a K-way ranking yields up to C(K,2) pairs with the same group; `id` and `task`, when
  present, are carried along for `score` to copy into its output)
- prompts to sample:  {"messages": [...]} or {"context": [...]}, optional "id" (copied to the output)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training.engine.errors import EngineError

ROLES = ("system", "user", "assistant")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a broken line raises EngineError."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise EngineError(f"{path.name} line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise EngineError(f"{path.name} line {number}: expected a JSON object")
            yield number, row


def read_dialogues(path: Path) -> list[dict[str, Any]]:
    """Read SFT dialogues: each needs a valid `messages` list with at least one assistant turn."""
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path.name} line {number}"
        messages = check_messages(row.get("messages"), where=f"{where}: messages")
        if not any(message["role"] == "assistant" for message in messages):
            raise EngineError(f"{where}: messages has no assistant turn to learn from")
        rows.append({"messages": messages})
    _require_rows(rows, path)
    return rows


def read_preference_pairs(path: Path) -> list[dict[str, Any]]:
    """Read preference pairs; add `weight` = 1 / (pairs in the same group).

    InstructGPT weighs each of a ranking's C(K,2) comparisons by 1/C(K,2) so that a ranking counts
    once, however many answers it ordered; counting the pairs actually present also handles ties,
    which yield no pair. A pair without group is its own group.
    """
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path.name} line {number}"
        prompt = check_messages(row.get("prompt"), where=f"{where}: prompt")
        if prompt[-1]["role"] == "assistant":
            raise EngineError(f"{where}: prompt must end with a user (or system) turn, not the assistant's")
        chosen = _check_answer(row.get("chosen"), where=f"{where}: chosen")
        rejected = _check_answer(row.get("rejected"), where=f"{where}: rejected")
        margin = row.get("margin", 0.0)
        if isinstance(margin, bool) or not isinstance(margin, int | float):
            raise EngineError(f"{where}: margin must be a number, got {margin!r}")
        group = row.get("group", f"line-{number}")
        if not isinstance(group, str | int):
            raise EngineError(f"{where}: group must be a string, got {group!r}")
        pair = {
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "margin": float(margin),
            "group": str(group),
        }
        pair.update({key: row[key] for key in ("id", "task") if key in row})
        rows.append(pair)
    _require_rows(rows, path)
    pairs_per_group = Counter(row["group"] for row in rows)
    for row in rows:
        row["weight"] = 1.0 / pairs_per_group[row["group"]]
    return rows


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Read prompts to sample answers for: {"messages"} or {"context"}, optional "id"."""
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path.name} line {number}"
        key = "context" if "context" in row else "messages"
        context = check_messages(row.get(key), where=f"{where}: {key}")
        if context[-1]["role"] == "assistant":
            raise EngineError(f"{where}: {key} must end with a user turn: the model answers it")
        rows.append({"context": context, "id": row.get("id")})
    _require_rows(rows, path)
    return rows


def check_messages(messages: Any, *, where: str) -> list[dict[str, str]]:
    """Return the messages as [{"role", "content"}] or raise EngineError saying what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise EngineError(f"{where}: must be a non-empty list of messages")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise EngineError(f"{where}[{index}]: must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise EngineError(f"{where}[{index}]: role must be one of {list(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise EngineError(f"{where}[{index}]: content must be a string")
        checked.append({"role": role, "content": content})
    return checked


def group_split(rows: list[dict[str, Any]], *, eval_fraction: float, seed: int) -> tuple[list, list]:
    """Split rows into (train, eval) by group, so no ranking is on both sides.

    Whole groups go to eval until it holds at least `eval_fraction` of the rows; the order is a
    seeded shuffle of the groups, so the split is the same on every rank and every rerun.
    """
    import random

    if eval_fraction <= 0:
        return rows, []
    groups = sorted({row["group"] for row in rows})
    random.Random(seed).shuffle(groups)
    target = eval_fraction * len(rows)
    eval_groups: set[str] = set()
    count = Counter(row["group"] for row in rows)
    held = 0
    for group in groups:
        if held >= target:
            break
        eval_groups.add(group)
        held += count[group]
    train = [row for row in rows if row["group"] not in eval_groups]
    held_out = [row for row in rows if row["group"] in eval_groups]
    if not train:
        raise EngineError("eval_fraction leaves no pairs to train on")
    return train, held_out


def _check_answer(messages: Any, *, where: str) -> list[dict[str, str]]:
    checked = check_messages(messages, where=where)
    if len(checked) != 1 or checked[0]["role"] != "assistant":
        raise EngineError(f"{where}: must hold exactly one assistant message")
    return checked


def _require_rows(rows: list, path: Path) -> None:
    if not rows:
        raise EngineError(f"{path.name}: no rows")
