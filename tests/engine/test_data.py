import json

import pytest

from tests.engine.helpers import write_jsonl
from training.engine.data import group_split, read_dialogues, read_preference_pairs, read_prompts
from training.engine.errors import EngineError

USER = {"role": "user", "content": "Hi"}


def pair(group, chosen="good", rejected="bad", **extra):
    return {
        "prompt": [USER],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "group": group,
        **extra,
    }


def test_pairs_of_one_ranking_share_its_weight(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [pair("a"), pair("a"), pair("a"), pair("b", margin=1)])

    pairs = read_preference_pairs(path)

    assert [p["weight"] for p in pairs] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert [p["margin"] for p in pairs] == [0.0, 0.0, 0.0, 1.0]


def test_broken_json_names_the_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(pair("a")) + "\n\n{oops\n")

    with pytest.raises(EngineError, match=r"pairs.jsonl line 3: not valid JSON"):
        read_preference_pairs(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (pair("a", margin="big"), "line 1: margin must be a number"),
        ({**pair("a"), "chosen": [USER]}, "line 1: chosen: must hold exactly one assistant message"),
        (
            {**pair("a"), "prompt": [{"role": "robot", "content": "x"}]},
            r"line 1: prompt\[0\]: role must be one of",
        ),
        ({**pair("a"), "prompt": []}, "line 1: prompt: must be a non-empty list"),
    ],
)
def test_invalid_pairs_are_rejected_with_the_reason(tmp_path, row, message):
    with pytest.raises(EngineError, match=message):
        read_preference_pairs(write_jsonl(tmp_path / "pairs.jsonl", [row]))


def test_dialogue_without_assistant_turn_is_rejected(tmp_path):
    path = write_jsonl(
        tmp_path / "train.jsonl", [{"messages": [USER, {"role": "assistant", "content": "Yo"}]}]
    )
    path.write_text(path.read_text() + json.dumps({"messages": [USER]}) + "\n")

    with pytest.raises(EngineError, match="train.jsonl line 2: messages has no assistant turn"):
        read_dialogues(path)


def test_prompts_accept_messages_or_context_and_keep_ids(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"messages": [USER], "id": 3}, {"context": [USER]}])

    assert read_prompts(path) == [{"context": [USER], "id": 3}, {"context": [USER], "id": None}]


def test_group_split_never_puts_a_ranking_on_both_sides():
    rows = [{"group": f"g{i // 3}", "index": i} for i in range(30)]

    train, held_out = group_split(rows, eval_fraction=0.2, seed=1)

    assert len(held_out) >= 6 and len(train) + len(held_out) == 30
    assert not {r["group"] for r in train} & {r["group"] for r in held_out}
