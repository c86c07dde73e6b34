"""Hidden preferences: what the simulated labelers like, as a score over an answer's text.

Only the simulator knows these functions; the platform sees nothing but the rankings they lead to.
Each takes the answer text and returns a float, higher is better. Two are kept:

- ``tiny``: for the suite's tiny models on CPU (a 2-layer network, a 512-token BPE): the number of
  times the word "good" appears, plus a small tie-breaker for real words over gibberish. " good" is
  one token of the tiny tokenizer, so a reward model can learn to count it and PPO to write it
  within minutes.
- ``rich``: for real models (SmolLM2-135M-Instruct and up): a helpful, concise assistant's taste
  built from several text features, so no single trick maximises it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from simulator.answers import VOCABULARY

_WORD = re.compile(r"[A-Za-z']+")
_GOOD = re.compile(r"\bgood\b", re.IGNORECASE)
MIN_SHARE_WORDS = 4


def tiny_score(text: str) -> float:
    """Score an answer for the tiny CPU setup: occurrences of the word "good", plus half its share of real words.

    "Real" words are those of the built demonstrations and prompts (``answers.VOCABULARY``), so among
    answers with as many "good"s, language beats gibberish: the base model's first answers differ in
    something a trained policy gets better at, and exact ties are rarer. The tie-breaker is a share,
    not a length, so no policy gains by writing more: a length term, tried first, was all that told the
    base model's gibberish apart, the reward model learnt it from those rankings, and PPO shortened its
    answers instead of writing "good". The share still counts at least MIN_SHARE_WORDS words, so
    writing less does not pay either (see below).
    """
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    known = sum(word in VOCABULARY for word in words)
    # the share counts at least MIN_SHARE_WORDS words: a two-word answer ("be later.") earned the full
    # tie-breaker, and PPO learnt to write nothing else (its reward model liked short clean answers)
    return len(_GOOD.findall(text)) + 0.5 * known / max(len(words), MIN_SHARE_WORDS)


_REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "i'm not able", "i am not able")
_EXPLAINERS = ("because", "for example", "for instance", "so that", "which means")
_POLITE = ("please", "glad", "happy to", "hope this helps", "you can", "you could")


def rich_score(text: str) -> float:
    """Score an answer for real models: helpful, specific, concise and friendly, in that order.

    Features of the text alone (0 to about 6 in practice):
    - length: +2 for 25 to 90 words, falling off linearly to 0 at 0 and at 200 words (concise but complete);
    - structure: +0.5 per numbered or bulleted line, at most +1.5 (steps and lists read well);
    - explanation: +0.5 per explaining phrase ("because", "for example", …), at most +1;
    - friendliness: +0.4 per polite phrase ("you can", "glad", "please", …), at most +0.8;
    - refusal or hedging: −1.5 once for "I'm sorry", "I cannot", "as an AI" …;
    - repetition: −2 × the share of repeated word trigrams (a degenerate loop scores low);
    - an unfinished answer (no final ".", "!", "?", ")" or closing code fence): −0.5.
    """
    stripped = text.strip()
    lower = stripped.lower()
    words = _WORD.findall(lower)
    n = len(words)
    if n < 25:
        length = 2.0 * n / 25
    elif n <= 90:
        length = 2.0
    else:
        length = max(0.0, 2.0 * (200 - n) / 110)
    lines = [line.strip() for line in stripped.splitlines()]
    listed = sum(1 for line in lines if re.match(r"^(\d+[.)]|[-*•])\s+\S", line))
    score = length + min(1.5, 0.5 * listed)
    score += min(1.0, 0.5 * sum(lower.count(phrase) for phrase in _EXPLAINERS))
    score += min(0.8, 0.4 * sum(lower.count(phrase) for phrase in _POLITE))
    if any(phrase in lower for phrase in _REFUSALS):
        score -= 1.5
    trigrams = [tuple(words[i : i + 3]) for i in range(max(0, n - 2))]
    if trigrams:
        score -= 2.0 * (1 - len(set(trigrams)) / len(trigrams))
    if stripped and not stripped.endswith((".", "!", "?", ")", "```")):
        score -= 0.5
    return score


@dataclass(frozen=True)
class HiddenPreference:
    """A named scoring function over answer texts (higher is better)."""

    name: str
    score: Callable[[str], float]


PREFERENCES: dict[str, HiddenPreference] = {
    "tiny": HiddenPreference("tiny", tiny_score),
    "rich": HiddenPreference("rich", rich_score),
}


def preference_get(name: str) -> HiddenPreference:
    """Return the hidden preference called ``name``; raise ValueError naming the choices otherwise."""
    if name not in PREFERENCES:
        raise ValueError(f"no hidden preference {name!r} (choices: {', '.join(PREFERENCES)})")
    return PREFERENCES[name]
