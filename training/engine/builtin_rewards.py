"""Programmatic rewards for PPO, named in config.json as `reward_model: "builtin:<name>[:arg]"`.

Torch-free on purpose: `configs.PpoConfig` checks the name when the config is built, which the web
side does at trigger time without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable

from training.engine.errors import EngineError

BUILTIN_REWARDS: dict[str, Callable[[str | None], Callable[[str], float]]] = {
    # "count:<word>": how many times the word appears in the answer (case-insensitive)
    "count": lambda arg: lambda text: float(text.lower().count((arg or "good").lower())),
    # "length": the answer's length in characters / 100, for smoke tests
    "length": lambda arg: lambda text: len(text) / 100.0,
}


def builtin_reward(spec: str) -> Callable[[str], float]:
    """Return the text -> score function that "builtin:<name>[:arg]" names."""
    name, _, arg = spec.removeprefix("builtin:").partition(":")
    if name not in BUILTIN_REWARDS:
        raise EngineError(
            f"config.json: reward_model {spec!r}: builtin rewards are {sorted(BUILTIN_REWARDS)}"
        )
    return BUILTIN_REWARDS[name](arg or None)
