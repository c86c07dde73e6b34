"""`sft`: supervised fine-tuning on demonstration dialogues with TRL's SFTTrainer.

Input `RUN_DIR/<train_file>` holds `{"messages": [...]}` lines. The loss covers the assistant's
tokens only (TRL's `assistant_only_loss`, driven by the chat template's `{% generation %}` markers;
TRL swaps in a marked template for the families it knows, otherwise the model's template must have
them — make-tiny's does).
"""

from __future__ import annotations

import random

from training.engine.configs import SftConfig as Config
from training.engine.data import read_dialogues
from training.engine.hf import logged_and_evaluated, lora_config, train_in_run_folder, trainer_arguments
from training.engine.run_dir import Result, RunDir


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
