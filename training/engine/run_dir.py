"""The run folder: the only interface between the web app and the engine.

    RUN_DIR/
      config.json        written by the web side; read into the command's Config
      <data>.jsonl       the input snapshot(s), names per command (see each Config)
      metrics.jsonl      one JSON object per logged step: {"step", "time", "loss", ...}
      checkpoints/       checkpoint-<step>/ folders, complete ones marked (see checkpoint.py)
      model/             the final save_pretrained folder (model + tokenizer)
      result.json        {"status", "metrics", "paths", "error", ...}, written once at the end

Under torchrun every rank runs the same code; only rank 0 (`is_main_process()`) writes here.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.engine.errors import EngineError

Status = Literal["succeeded", "stopped", "failed"]


def rank() -> int:
    """Return this process's global rank (0 outside torchrun / accelerate launch)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Return the number of processes of the run (1 outside torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Tell whether this process logs and saves (rank 0)."""
    return rank() == 0


class RunDir:
    """Paths of one run folder and the helpers that write into it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise EngineError(f"run dir {self.path} does not exist")

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final_model(self) -> Path:
        return self.path / "model"

    def input_file(self, name: str) -> Path:
        """Return the input `name` (relative to the run dir unless absolute); it must exist."""
        path = self.resolve(name)
        if not path.is_file():
            raise EngineError(f"input file {path} does not exist")
        return path

    def resolve(self, name: str) -> Path:
        """Resolve a path from the config: relative paths are relative to the run dir."""
        path = Path(name)
        return path if path.is_absolute() else self.path / path

    def model_source(self, name: str) -> str:
        """Resolve `model_path`: an existing folder (absolute or relative to the run dir) or a hub name."""
        path = self.resolve(name)
        if path.is_dir():
            return str(path)
        if name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise EngineError(f"model_path {name!r}: no such folder")
        return name  # a hub name such as "Qwen/Qwen2.5-0.5B"; loads only where the network allows

    def write_result(self, result: Result) -> None:
        """Write result.json atomically (rank 0 only)."""
        if not is_main_process():
            return
        temp = self.result_file.with_suffix(".json.tmp")
        temp.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        os.replace(temp, self.result_file)


@dataclass
class Result:
    """What a command's `main` returns; the CLI writes it to result.json and picks the exit code."""

    status: Status
    metrics: dict[str, float] = field(default_factory=dict)  # final figures, e.g. {"eval_accuracy": 0.97}
    paths: dict[str, str] = field(default_factory=dict)  # e.g. {"model": ".../model"}
    error: str | None = None  # the message of a failed run
    resumed_from: str | None = None  # the checkpoint this run started from, if any
    step: int | None = None  # the last optimizer step done
    # named histograms (`score`: "margin"), each a list of {"low", "high", "count"} bins; metrics
    # stays flat numbers, which the web side charts and shows
    histogram: dict[str, list[dict[str, Any]]] | None = None

    def to_json(self) -> dict[str, Any]:
        result = {
            "status": self.status,
            "metrics": {key: _json_number(value) for key, value in self.metrics.items()},
            "paths": self.paths,
            "error": self.error,
            "resumed_from": self.resumed_from,
            "step": self.step,
            "finished_at": time.time(),
        }
        if self.histogram is not None:
            result["histogram"] = self.histogram
        return result


class MetricsLog:
    """Append one JSON object per logged step to metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path, *, resume_step: int = 0) -> None:
        self.path = path
        if is_main_process() and resume_step >= 0 and path.exists():
            self._drop_after(resume_step)

    def log(self, step: int, **figures: float | int | str) -> None:
        """Write {"step", "time", **figures}; numbers that are NaN/inf are written as null."""
        if not is_main_process():
            return
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({key: _json_number(value) for key, value in figures.items()})
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def _drop_after(self, step: int) -> None:
        # Lines logged after the checkpoint we resume from describe steps that will be redone:
        # drop them so the series has one point per step.
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        self.path.write_text("".join(line + "\n" for line in kept))


class StopSignal:
    """Turn SIGTERM into a flag the training loop checks between steps.

    The loop saves a checkpoint and returns `Result(status="stopped")`; a second SIGTERM kills at
    once (the default action), for a loop stuck somewhere it never checks the flag.
    """

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> StopSignal:
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def requested_on_any_rank(self) -> bool:
        """Tell whether any rank got SIGTERM; every rank must call it at the same step.

        Ranks receive the signal at slightly different moments; agreeing through one all-reduce
        keeps them from leaving the loop at different steps and deadlocking in a collective.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        return _json_number(value.item())
    return value
