"""`sft`: supervised fine-tuning on demonstration dialogues with TRL's SFTTrainer.

Input `RUN_DIR/<train_file>` holds `{"messages": [...]}` lines. The loss covers the assistant's
tokens only: each answer and the special token that ends its turn, never system, user or role
headers. The mask is built here (chat_masks.py): from the template's `{% generation %}` markers, or
TRL's marked version of it for the families TRL knows, or else by rendering each dialogue prefix by
prefix with the model's own template, so any prefix-preserving template works (SmolLM2's ChatML,
Llama 2, Mistral, …); a template none of these can mask fails the run with exit 2. TRL receives the
tokenized rows with their labels and does the batching, truncation, packing and loop.
"""

from __future__ import annotations

import random

from training.engine.chat_masks import tokenize_dialogues
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
    source = run_dir.model_source(config.model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    dialogues = [row["messages"] for row in read_dialogues(run_dir.input_file(config.train_file))]
    rows = [
        {
            "input_ids": ids,
            "labels": [token if trained else -100 for token, trained in zip(ids, mask, strict=True)],
        }
        for ids, mask in tokenize_dialogues(tokenizer, dialogues, where=config.train_file)
    ]
    random.Random(config.seed).shuffle(rows)  # a seeded hold-out, the same on every rank and rerun
    held_out = int(len(rows) * config.eval_fraction)
    train_rows, eval_rows = rows[held_out:], rows[:held_out]

    # float32 master weights; bf16 is autocast by the Trainer when config.bf16 is set
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    arguments = SFTConfig(
        **trainer_arguments(config, run_dir),
        # the rows come with their labels (assistant-only), so TRL neither renders nor masks them
        assistant_only_loss=False,
        packing=config.packing,
        packing_strategy="bfd",  # whole dialogues per row; implies padding_free
        eval_strategy="no",
    )
    return SFTTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,  # TRL pads with its pad token, or with EOS when it has none
        peft_config=lora_config(config, task_type="CAUSAL_LM"),
        callbacks=callbacks,
    )
