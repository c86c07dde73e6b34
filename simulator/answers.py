"""Where the simulated team's prompts and demonstration answers come from.

- ``BuiltSource``: for tiny models. Prompts and answers are short sentences made of words the tiny
  tokenizer knows; an answer holds two or three sentences, each one of the "good" kind with
  probability ``good_share``, so demonstrations are good but not the best the hidden preference allows
  (PPO has room to do better than SFT).
- ``HhSource``: for real models. The first human turn of each HH-RLHF line is a prompt; the chosen
  transcript's first assistant turn is the answer a labeler writes for it, and the rejected one's is
  what they write when the reviewer sends it back.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

GOOD_SENTENCES = (
    "That is a good question.",
    "The answer is good.",
    "Good day to you.",
    "You are a good friend.",
    "This is very good.",
    "A good answer is helpful.",
)
PLAIN_SENTENCES = (
    "Yes, of course.",
    "Thank you for your help.",
    "The weather today is sunny.",
    "There are seven days in a week.",
    "The capital of France is Paris.",
    "I can try to find out.",
    "Here is a list of three things.",
    "The cat learned to read.",
    "Maybe later.",
    "The model answers the user.",
)
PROMPT_OPENINGS = (
    "Tell me a story about a cat",
    "What is the weather today",
    "Please write a short poem about the sea",
    "How many days are there in a week",
    "What is the capital of France",
    "Can you explain how a computer stores numbers",
    "Summarize the following text",
    "Here is a question for the assistant",
)

# The words of the built prompts and answers: "real words" for the tiny hidden preference.
VOCABULARY = frozenset(
    re.findall(r"[a-z']+", " ".join((*GOOD_SENTENCES, *PLAIN_SENTENCES, *PROMPT_OPENINGS)).lower())
)


class BuiltSource:
    """Prompts and answers built from a small vocabulary (the tiny setup)."""

    def __init__(self, *, good_share: float = 0.35, seed: int = 0) -> None:
        self.good_share = good_share
        self.seed = seed

    def prompts(self, count: int) -> list[str]:
        """Return ``count`` distinct prompts."""
        return [f"{PROMPT_OPENINGS[i % len(PROMPT_OPENINGS)]} {i // len(PROMPT_OPENINGS) + 1}?" for i in range(count)]

    def answer(self, prompt: str, *, attempt: int = 0) -> str:
        """Return a demonstration answer for ``prompt`` (another one for each ``attempt``)."""
        rng = random.Random(f"{self.seed}:{prompt}:{attempt}")
        sentences = []
        for _ in range(rng.choice((2, 3))):
            pool = GOOD_SENTENCES if rng.random() < self.good_share else PLAIN_SENTENCES
            sentences.append(rng.choice(pool))
        return " ".join(sentences)

    def sample_answers(self, count: int) -> list[str]:
        """Return ``count`` answers to calibrate the labelers' noise on."""
        return [self.answer(f"calibration {i}") for i in range(count)]


def _hh_first_exchange(transcript: str) -> tuple[str, str] | None:
    parts = transcript.split("\n\nHuman: ")
    if len(parts) < 2:
        return None
    human, _, rest = parts[1].partition("\n\nAssistant: ")
    answer = rest.split("\n\nHuman: ")[0].strip()
    human = human.strip()
    return (human, answer) if human and answer else None


class HhSource:
    """Prompts and answers from an HH-RLHF JSONL file (the real-model setup)."""

    def __init__(self, path: Path, *, seed: int = 0) -> None:
        self.seed = seed
        self._answers: dict[str, list[str]] = {}
        self._alternatives: dict[str, list[str]] = {}  # the rejected transcripts' answers
        single_turn_first: list[tuple[int, str]] = []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            exchange = _hh_first_exchange(row["chosen"])
            if exchange is None:
                continue
            prompt, answer = exchange
            if prompt not in self._answers:
                single_turn_first.append((row["chosen"].count("\n\nHuman: "), prompt))
            answers = self._answers.setdefault(prompt, [])
            answers.append(answer)
            other = _hh_first_exchange(row.get("rejected", ""))  # a second answer, for a revision
            if other is not None and other[0] == prompt and other[1] not in answers:
                self._alternatives.setdefault(prompt, []).append(other[1])
        # single-turn lines first: their chosen answer is the one people preferred
        self._prompts = [prompt for _, prompt in sorted(single_turn_first, key=lambda item: item[0])]

    def prompts(self, count: int) -> list[str]:
        return self._prompts[:count]

    def answer(self, prompt: str, *, attempt: int = 0) -> str:
        """Return the chosen answer (attempt 0), then the file's other answers to the prompt (revisions)."""
        answers = [*self._answers.get(prompt, []), *self._alternatives.get(prompt, [])]
        if not answers:  # a prompt from elsewhere: any chosen answer of the file
            rng = random.Random(f"{self.seed}:{prompt}:{attempt}")
            answers = self._answers[rng.choice(self._prompts)]
        return answers[attempt % len(answers)]

    def sample_answers(self, count: int) -> list[str]:
        return [self._answers[prompt][0] for prompt in self._prompts[:count]]


def pairs_of(answers: list[str], *, count: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """Yield ``count`` random pairs of distinct answers (to calibrate the labelers' noise on)."""
    rng = random.Random(seed)
    for _ in range(count):
        a, b = rng.sample(range(len(answers)), 2)
        yield answers[a], answers[b]
