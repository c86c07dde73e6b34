"""Glue between our run folder and Hugging Face / TRL trainers (sft, reward, dpo).

- `trainer_arguments`: the TrainingArguments every TRL config shares, from our TrainConfig.
- `RunFolderCallback`: writes metrics.jsonl, turns SIGTERM into "save a checkpoint and stop", and
  marks each HF checkpoint complete once the Trainer has written all of it.
- `compile_decoder_layers` / `compile_trainer_models`: the engine's `torch_compile` (regional: each
  decoder layer, in place).
- `resume_checkpoint`, `lora_config`, `save_final_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from training.engine.checkpoint import (
    atomic_directory,
    checkpoint_path,
    checkpoint_step,
    latest_checkpoint,
    mark_complete,
    prune_checkpoints,
    remove_incomplete,
)
from training.engine.config import TrainConfig, save_config
from training.engine.run_dir import MetricsLog, Result, RunDir, StopSignal, is_main_process


def trainer_arguments(config: TrainConfig, run_dir: RunDir) -> dict[str, Any]:
    """Return the keyword arguments of SFTConfig / RewardConfig / DPOConfig that come from TrainConfig."""
    return {
        "output_dir": str(run_dir.checkpoints),
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": config.warmup_ratio,  # transformers 5 reads a float in [0, 1) as a ratio
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "per_device_train_batch_size": config.per_device_batch_size,
        "per_device_eval_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": config.num_epochs,
        "max_steps": config.max_steps,
        "max_length": config.max_length,
        "bf16": config.bf16,  # TRL would default to True; CPU runs stay float32
        "gradient_checkpointing": config.gradient_checkpointing,
        # never the Trainer's whole-model compile: build_trainer compiles the decoder layers instead
        # (compile_decoder_layers says why)
        "torch_compile": False,
        "logging_strategy": "steps",
        "logging_steps": config.log_every,
        "save_strategy": "steps",
        "save_steps": config.save_every,
        # HF's rotation would run before our callback marks the new checkpoint complete; we prune in
        # on_save instead, after the marker, so a complete checkpoint always survives.
        "save_total_limit": None,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "use_cpu": not torch.cuda.is_available(),  # also makes torchrun on CPU (gloo) real DDP
        "ddp_find_unused_parameters": False,
    }


def compile_decoder_layers(model) -> int:
    """torch.compile every decoder layer of `model` in place (inductor, default mode); return how many.

    Regional compilation rather than the whole model: the layers share one class and shape, so one
    layer's graph is traced once and reused by all of them (a compile of seconds, not minutes); the
    attention mask is built outside the compiled code, where transformers can see that an unpadded
    batch needs none and hand SDPA `is_causal` (its flash kernel), which it never does while tracing;
    and TRL's fused LM head (a Triton kernel on GPU) stays as it is. Weights and state-dict keys are
    untouched, so checkpoints, LoRA and save_pretrained see the plain model.
    """
    import torch._dynamo
    from transformers.modeling_layers import GradientCheckpointingLayer

    # one code object serves every layer of every model compiled here (PPO's four): each grad mode,
    # with and without a mask, static then dynamic shapes is a graph of its own, and past dynamo's
    # default of 8 it would quietly run the layers eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    layers = [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]
    for layer in layers:
        layer.compile()
    return len(layers)


def compile_trainer_models(trainer) -> None:
    """Compile the decoder layers of a built trainer's model and, for DPO, of its frozen reference.

    After the trainer is built: peft has wrapped the model by then and DPO has loaded its reference.
    """
    for model in (trainer.model, getattr(trainer, "ref_model", None)):
        if model is not None:
            compile_decoder_layers(model)


def resume_checkpoint(run_dir: RunDir) -> Path | None:
    """Delete half-written checkpoints (rank 0), then return the newest complete one or None."""
    if is_main_process():
        remove_incomplete(run_dir.checkpoints)
    return latest_checkpoint(run_dir.checkpoints)


def lora_config(config: TrainConfig, *, task_type: str):
    """Return a peft LoraConfig for `task_type` ("CAUSAL_LM" or "SEQ_CLS"), or None without LoRA.

    With SEQ_CLS, peft also trains the (new) score head in full.
    """
    if config.lora is None:
        return None
    from peft import LoraConfig

    modules = config.lora.target_modules
    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules="all-linear" if modules == ("all-linear",) else list(modules),
        task_type=task_type,
    )


class RunFolderCallback(TrainerCallback):
    """Connect a Trainer to the run folder: metrics, SIGTERM, complete checkpoints."""

    def __init__(self, *, config: TrainConfig, metrics: MetricsLog, stop: StopSignal) -> None:
        self.config = config
        self.metrics = metrics
        self.stop = stop
        self.stopped = False  # True when training ended because of SIGTERM
        self.last_logs: dict[str, float] = {}  # the latest value of every figure, for result.json

    def on_log(self, args, state, control, logs=None, **kwargs):
        figures = {key: value for key, value in (logs or {}).items() if isinstance(value, int | float)}
        self.last_logs.update(figures)
        if "train_runtime" in figures:
            return  # the end-of-training summary repeats the last step; it goes to result.json only
        if figures and state.is_world_process_zero:
            # total_steps lets the web side show progress and an ETA
            self.metrics.log(state.global_step, **figures, total_steps=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop.requested_on_any_rank():
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        # The Trainer calls on_save after it has written weights, optimizer, scheduler, RNG state and,
        # last, trainer_state.json; only now is the folder worth resuming from.
        folder = checkpoint_path(Path(args.output_dir), state.global_step)
        _barrier()  # every rank has written its own RNG state file
        if state.is_world_process_zero and folder.is_dir():
            save_config(self.config, folder / "engine_config.json")
            mark_complete(folder, step=state.global_step)
            prune_checkpoints(folder.parent, keep=self.config.keep_checkpoints)
        _barrier()


def train_in_run_folder(
    config: TrainConfig,
    run_dir: RunDir,
    *,
    build_trainer: Callable[..., Any],
    final_figures: Callable[[Any, dict, MetricsLog], dict],
) -> Result:
    """Run an HF/TRL trainer in the run folder: resume, stop on SIGTERM, then save the final model.

    ``build_trainer(config, run_dir, callbacks=[...])`` returns the ready trainer;
    ``final_figures(trainer, last_logs, metrics)`` returns the figures result.json reports.
    """
    stop = StopSignal().install()
    checkpoint = resume_checkpoint(run_dir)
    metrics = MetricsLog(run_dir.metrics_file, resume_step=resume_step(checkpoint))
    callback = RunFolderCallback(config=config, metrics=metrics, stop=stop)
    trainer = build_trainer(config, run_dir, callbacks=[callback])
    if config.torch_compile:
        compile_trainer_models(trainer)

    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    resumed_from = str(checkpoint) if checkpoint else None
    if callback.stopped:
        return Result(status="stopped", step=trainer.state.global_step, resumed_from=resumed_from)

    figures = final_figures(trainer, dict(callback.last_logs), metrics)
    model_folder = save_final_model(trainer, trainer.processing_class, config, run_dir)
    return Result(
        status="succeeded",
        metrics=figures,
        paths={"model": str(model_folder), "checkpoints": str(run_dir.checkpoints)},
        resumed_from=resumed_from,
        step=trainer.state.global_step,
    )


def logged_and_evaluated(trainer, last_logs: dict, keys: tuple[str, ...]) -> dict:
    """The last logged figures plus a final evaluation (when there is held-out data), limited to keys."""
    figures = dict(last_logs)
    if trainer.eval_dataset is not None:
        figures.update(trainer.evaluate())
    return {key: figures[key] for key in keys if key in figures}


def resume_step(checkpoint: Path | None) -> int:
    """Return the step of the checkpoint we resume from (0 for a fresh run)."""
    return checkpoint_step(checkpoint) if checkpoint is not None else 0


def save_final_model(trainer, tokenizer, config: TrainConfig, run_dir: RunDir) -> Path:
    """Save the trained model (LoRA merged unless lora.merge_on_save is false) and tokenizer atomically."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if config.lora is not None and config.lora.merge_on_save:
        model = model.merge_and_unload()
    if is_main_process():
        with atomic_directory(run_dir.final_model) as folder:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            save_config(config, folder / "engine_config.json")
    _barrier()
    return run_dir.final_model


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
