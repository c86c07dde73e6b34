"""`sft`: supervised fine-tuning on demonstration dialogues with TRL's SFTTrainer.

Input `RUN_DIR/<train_file>` holds `{"messages": [...]}` lines. The loss covers the assistant's
tokens only (TRL's `assistant_only_loss`, driven by the chat template's `{% generation %}` markers;
TRL swaps in a marked template for the families it knows, otherwise the model's template must have
them — make-tiny's does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from training.engine.config import TrainConfig, require
from training.engine.data import read_dialogues
from training.engine.hf import logged_and_evaluated, lora_config, train_in_run_folder, trainer_arguments
from training.engine.run_dir import Result, RunDir


@dataclass(frozen=True, kw_only=True)
class Config(TrainConfig):
    learning_rate: float = 2e-5  # peak learning rate of AdamW (SFT default)
    train_file: str = "train.jsonl"  # dialogues, relative to the run dir: {"messages": [...]} per line
    eval_fraction: float = 0.0  # share of dialogues held out to report eval_loss (0: no evaluation)
    # false: one dialogue per row, a batch padded to its longest row. true: TRL's best-fit-decreasing
    # packing, padding-free: dialogues are packed into rows of at most max_length tokens, so no FLOP
    # goes to padding; each dialogue still attends only to itself (position ids restart) and the loss
    # still covers assistant tokens only. per_device_batch_size then counts packed rows. A dialogue
    # longer than max_length is cut to it, as without packing. With the default SDPA attention the
    # micro-batch's rows are joined into one sequence whose block-diagonal mask is built in full:
    # on an H200 that ran 2.6-6x slower per token than unpacked rows (bench/RESULTS.md), so it pays
    # only when most unpacked tokens would be padding.
    packing: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)")


def main(config: Config, run_dir: RunDir) -> Result:
    """Fine-tune the model on the dialogues; save checkpoints, metrics and the final model."""
    return train_in_run_folder(
        config,
        run_dir,
        build_trainer=build_trainer,
        final_figures=lambda trainer, logs, _: logged_and_evaluated(
            trainer, logs, ("train_loss", "loss", "eval_loss", "mean_token_accuracy")
        ),
    )


def build_trainer(config: Config, run_dir: RunDir, *, callbacks: list):
    """Read the data, load model and tokenizer, and return a ready SFTTrainer."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(config.seed)
    dialogues = read_dialogues(run_dir.input_file(config.train_file))
    random.Random(config.seed).shuffle(dialogues)  # a seeded hold-out, the same on every rank and rerun
    held_out = int(len(dialogues) * config.eval_fraction)
    train_rows, eval_rows = dialogues[held_out:], dialogues[:held_out]

    source = run_dir.model_source(config.model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    # float32 master weights; bf16 is autocast by the Trainer when config.bf16 is set
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    arguments = SFTConfig(
        **trainer_arguments(config, run_dir),
        assistant_only_loss=True,  # labels are built from the assistant mask before packing
        packing=config.packing,
        packing_strategy="bfd",  # whole dialogues per row; implies padding_free
        eval_strategy="no",
    )
    return SFTTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(config, task_type="CAUSAL_LM"),
        callbacks=callbacks,
    )
