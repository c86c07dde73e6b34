"""Typed run configs: frozen dataclasses loaded from `RUN_DIR/config.json`, unknown keys rejected.

Each command's `Config` lives in `configs.py` (torch-free, so the web side can check a config before
queuing a run); training commands extend `TrainConfig` here. Every field carries a comment stating
its default and meaning: that comment is the documentation the web side reads. Loading checks every
key and every type, so a typo fails the run at start-up with one message instead of silently
training with a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from training.engine.errors import EngineError

C = TypeVar("C")


@dataclass(frozen=True, kw_only=True)
class LoraConfig:
    """Low-rank adapters (peft) instead of full fine-tuning; the final folder holds the merged model."""

    r: int = 16  # rank of the update matrices
    alpha: int = 32  # scaling numerator: updates are scaled by alpha / r
    dropout: float = 0.05  # dropout on the adapter input
    # which linear layers get adapters: "all-linear" or explicit module names such as ["q_proj", "v_proj"]
    target_modules: tuple[str, ...] = ("all-linear",)
    merge_on_save: bool = True  # merge adapters into the base weights in the final model folder

    def __post_init__(self) -> None:
        require(self.r > 0, "lora.r must be positive")
        require(0.0 <= self.dropout < 1.0, "lora.dropout must be in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What every training command (sft, reward, dpo, ppo) shares."""

    model_path: str  # required: a save_pretrained folder (absolute or relative to the run dir) or a hub name
    seed: int = 0  # seeds python, numpy and torch; the same seed and data give the same run
    learning_rate: float = 1e-5  # peak learning rate of AdamW
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"  # decay after warm-up
    warmup_ratio: float = 0.0  # fraction of the steps spent warming the learning rate up from 0
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    max_grad_norm: float = 1.0  # gradients are clipped to this global norm
    per_device_batch_size: int = 8  # examples (or pairs) per device per micro-batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    num_epochs: float = 1.0  # passes over the data; ignored when max_steps > 0
    max_steps: int = -1  # optimizer steps to run; -1 means "use num_epochs"
    max_length: int = 1024  # tokens per sequence; longer examples are truncated or dropped (see command)
    save_every: int = 500  # optimizer steps between checkpoints (a checkpoint is also saved on SIGTERM)
    keep_checkpoints: int = 2  # complete checkpoints kept; older ones are deleted after a newer one completes
    log_every: int = 10  # optimizer steps between lines in metrics.jsonl
    bf16: bool = False  # bfloat16 autocast (GPU); CPU runs and tests keep float32
    gradient_checkpointing: bool = False  # trade compute for memory on long sequences
    # torch.compile each decoder layer (TorchInductor; sft, reward, dpo and ppo; see
    # hf.compile_decoder_layers): on a GPU the steps run faster once compiled (bench/RESULTS.md); the
    # first step, and a later one whose batch has a new shape (until the compiler goes dynamic), pays
    # a compile of one layer, seconds to tens of seconds. Meant for GPU runs; on CPU it gains little.
    torch_compile: bool = False
    lora: LoraConfig | None = None  # null: train all weights; an object: train LoRA adapters (see LoraConfig)

    def __post_init__(self) -> None:
        require(bool(self.model_path), "model_path must name a model folder")
        require(self.learning_rate > 0, "learning_rate must be positive")
        require(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)")
        require(self.per_device_batch_size > 0, "per_device_batch_size must be positive")
        require(self.gradient_accumulation_steps > 0, "gradient_accumulation_steps must be positive")
        require(self.max_steps > 0 or self.num_epochs > 0, "set max_steps > 0 or num_epochs > 0")
        require(self.max_length > 0, "max_length must be positive")
        require(self.save_every > 0, "save_every must be positive")
        require(self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1")
        require(self.log_every > 0, "log_every must be positive")


def require(condition: bool, message: str) -> None:
    """Raise EngineError(message) unless condition holds; used by configs' __post_init__."""
    if not condition:
        raise EngineError(f"config.json: {message}")


def load_config(config_class: type[C], path: Path) -> C:
    """Read `path` (JSON object) into `config_class`, rejecting unknown keys and wrong types.

    A missing file reads as `{}`, so commands whose fields all have defaults (make-tiny) need none.
    """
    if path.exists():
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise EngineError(f"{path}: not valid JSON ({error})") from None
    else:
        raw = {}
    return config_from_dict(config_class, raw, where=path.name)


def config_from_dict(config_class: type[C], raw: Any, *, where: str = "config") -> C:
    """Build `config_class` from a parsed JSON value; `where` prefixes error messages."""
    return _convert(config_class, raw, where)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Return the config as JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def save_config(config: Any, path: Path) -> None:
    """Write the config as indented JSON; checkpoints and final model folders keep a copy."""
    path.write_text(json.dumps(config_to_dict(config), indent=2) + "\n")


def _convert(expected: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(expected):
        return _convert_dataclass(expected, value, where)
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        non_null = [option for option in options if option is not type(None)]
        if len(non_null) == 1:
            return _convert(non_null[0], value, where)
        raise TypeError(f"unsupported config type {expected}")  # a programming error, not a user error
    if origin is Literal:
        allowed = typing.get_args(expected)
        if value not in allowed:
            raise EngineError(f"{where}: must be one of {list(allowed)}, got {value!r}")
        return value
    if origin is tuple:
        item_type = typing.get_args(expected)[0]
        if not isinstance(value, list):
            raise EngineError(f"{where}: must be a list, got {value!r}")
        return tuple(_convert(item_type, item, f"{where}[{index}]") for index, item in enumerate(value))
    if expected is bool:
        if not isinstance(value, bool):
            raise EngineError(f"{where}: must be true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EngineError(f"{where}: must be an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EngineError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise EngineError(f"{where}: must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {expected}")


def _convert_dataclass(config_class: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise EngineError(f"{where}: must be a JSON object, got {raw!r}")
    hints = typing.get_type_hints(config_class)
    known = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        key = unknown[0]
        guess = difflib.get_close_matches(key, list(known), n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else f" (known keys: {', '.join(sorted(known))})"
        raise EngineError(f"{where}: unknown key {key!r}{hint}")
    missing = [
        name
        for name, f in known.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise EngineError(f"{where}: missing required key {missing[0]!r}")
    values = {name: _convert(hints[name], value, f"{where}: {name}") for name, value in raw.items()}
    return config_class(**values)
