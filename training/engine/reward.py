"""`reward`: train a reward model (one score per conversation) on preference pairs.

Input `RUN_DIR/<train_file>` holds pairs `{"prompt", "chosen", "rejected", "margin", "group"}` (see
data.py). The model is `AutoModelForSequenceClassification` with one label, scoring each conversation
at its answer's end-of-turn token, where PPO reads it (reward_model.py; EOS pads when the tokenizer
has no pad token). The loss is `losses.pairwise_reward_loss` with each pair weighing 1/(pairs of its
ranking), as InstructGPT weighs a K-way ranking's C(K,2) comparisons. We tokenize (chat template; a
pair longer than max_length is shortened on message boundaries, not dropped as TRL would, and counted
in `truncated_pairs`); TRL's RewardTrainer supplies batching and the training loop, and we swap in
that loss. Whole rankings are held out for `eval_accuracy`, the headline: the share of held-out pairs
whose chosen answer scores higher. `train_accuracy_last_epoch` is that share over the last epoch's
worth of training pairs, each as it scored when trained on (`train_accuracy_pairs` of them: the
training set's size, or every pair trained on when the run, or its part since a resume, was shorter).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from training.engine.configs import RewardConfig as Config
from training.engine.data import group_split, read_preference_pairs
from training.engine.errors import EngineError
from training.engine.hf import lora_config, train_in_run_folder, trainer_arguments
from training.engine.losses import pairwise_reward_loss
from training.engine.reward_model import pad_with_eos_if_missing, score_pairs, tokenize_pairs
from training.engine.run_dir import MetricsLog, Result, RunDir


def main(config: Config, run_dir: RunDir) -> Result:
    """Train the reward model; report held-out pairwise accuracy; save the final model."""
    if config.method == "probe":
        from transformers import set_seed

        from training.engine import probe

        set_seed(config.seed)
        return probe.train(config, run_dir, *training_pairs(config, run_dir))
    return train_in_run_folder(config, run_dir, build_trainer=build_trainer, final_figures=_final_figures)


def training_pairs(config: Config, run_dir: RunDir) -> tuple[list[dict], list[dict]]:
    """Read the pairs and split off the held-out ones; margins scaled, weights as configured."""
    pairs = read_preference_pairs(run_dir.input_file(config.train_file))
    if config.eval_file:
        train_pairs, eval_pairs = pairs, read_preference_pairs(run_dir.input_file(config.eval_file))
    else:
        train_pairs, eval_pairs = group_split(pairs, eval_fraction=config.eval_fraction, seed=config.seed)
    for pair in train_pairs + eval_pairs:
        pair["margin"] *= config.margin_scale
        if not config.weigh_by_ranking:
            pair["weight"] = 1.0
    return train_pairs, eval_pairs


def _final_figures(trainer: RankingRewardTrainer, last_logs: dict, metrics: MetricsLog) -> dict:
    # not the trainer's last logged `accuracy`: that covers one logging window, a batch or a few
    figures = {key: last_logs[key] for key in ("train_loss", "loss") if key in last_logs}
    figures.update(trainer.train_accuracy_figures())
    figures["truncated_pairs"] = trainer.truncated_pairs
    if trainer.eval_dataset is not None:
        figures.update(held_out_figures(trainer))
        metrics.log(trainer.state.global_step, **figures)
    return figures


def build_trainer(config: Config, run_dir: RunDir, *, callbacks: list) -> RankingRewardTrainer:
    """Read and split the pairs, load model and tokenizer, and return a ready trainer."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig

    set_seed(config.seed)
    train_pairs, eval_pairs = training_pairs(config, run_dir)

    source = run_dir.model_source(config.model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    pad_with_eos_if_missing(tokenizer)
    # tokenized here, not by TRL: TRL silently drops pairs longer than max_length, we truncate them
    train_rows, train_cut = tokenize_pairs(train_pairs, tokenizer, config.max_length)
    eval_rows, eval_cut = tokenize_pairs(eval_pairs, tokenizer, config.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id  # the score is read at the last non-pad token
    if config.train_top_layers:
        freeze_below_top_layers(model, config.train_top_layers)
    arguments = RewardConfig(**trainer_arguments(config, run_dir), eval_strategy="no")
    trainer = RankingRewardTrainer(
        model=model,
        args=arguments,
        data_collator=WeightedPreferenceCollator(pad_token_id=tokenizer.pad_token_id),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(config, task_type="SEQ_CLS"),
        callbacks=callbacks,
    )
    trainer.truncated_pairs = train_cut + eval_cut
    return trainer


def freeze_below_top_layers(model, top_layers: int) -> None:
    """Freeze every weight of a sequence classifier but its top `top_layers` decoder layers, the norm after
    them and the score head; the optimizer then holds only those (the Trainer skips frozen weights)."""
    layers = decoder_layers(model)
    if top_layers > len(layers):
        raise EngineError(
            f"config.json: train_top_layers is {top_layers} but the model has {len(layers)} decoder layers"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainable = [*layers[len(layers) - top_layers:], model.score]
    final_norm = getattr(model.base_model, "norm", None)
    if final_norm is not None:
        trainable.append(final_norm)
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad_(True)


def decoder_layers(model) -> list:
    """Return the decoder layers of a transformers model, bottom first."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator (chosen rows first, then rejected) plus each pair's weight."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        batch["weight"] = torch.tensor(
            [example.get("weight", 1.0) for example in examples], dtype=torch.float
        )
        return batch


class RankingRewardTrainer(RewardTrainer):
    """RewardTrainer whose loss weighs each pair by its ranking (see losses.pairwise_reward_loss).

    It also keeps, for each of the last epoch's worth of training pairs, whether the pair scored
    right when it was trained on: `train_accuracy_last_epoch`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recent_train_correct: deque[bool] = deque(maxlen=max(1, len(self.train_dataset)))

    def train_accuracy_figures(self) -> dict[str, float]:
        """Return the share of the last epoch's worth of training pairs ranked right, and how many pairs."""
        if not self.recent_train_correct:
            return {}
        pairs = len(self.recent_train_correct)
        return {
            "train_accuracy_last_epoch": sum(self.recent_train_correct) / pairs,
            "train_accuracy_pairs": pairs,
        }

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "weight"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        chosen, rejected, outputs = score_pairs(model, inputs)
        loss = pairwise_reward_loss(chosen, rejected, margins=inputs["margin"], weights=inputs["weight"])
        mode = "train" if model.training else "eval"
        with torch.no_grad():
            if model.training:
                correct = self.accelerator.gather_for_metrics(chosen > rejected)
                self.recent_train_correct.extend(correct.tolist())
            accuracy = (chosen > rejected).float().mean()
            self._metrics[mode]["accuracy"].append(
                self.accelerator.gather_for_metrics(accuracy).mean().item()
            )
            margin = (chosen - rejected).mean()
            self._metrics[mode]["reward_gap"].append(
                self.accelerator.gather_for_metrics(margin).mean().item()
            )
        return (loss, outputs) if return_outputs else loss


@torch.no_grad()
def held_out_figures(trainer: RankingRewardTrainer) -> dict[str, float]:
    """Return eval_accuracy (share of held-out pairs ranked right) and eval_loss over every held-out pair."""
    model = trainer.model
    was_training = model.training
    model.eval()
    correct, losses, weights = [], [], []
    for batch in trainer.get_eval_dataloader():
        batch = {key: value.to(trainer.accelerator.device) for key, value in batch.items()}
        chosen, rejected, _ = score_pairs(model, batch)
        correct.append(trainer.accelerator.gather_for_metrics(chosen > rejected))
        pair_losses = -torch.nn.functional.logsigmoid(chosen - rejected - batch["margin"])
        losses.append(trainer.accelerator.gather_for_metrics(pair_losses))
        weights.append(trainer.accelerator.gather_for_metrics(batch["weight"]))
    model.train(was_training)
    correct_all, loss_all, weight_all = torch.cat(correct), torch.cat(losses), torch.cat(weights)
    return {
        "eval_accuracy": correct_all.float().mean().item(),
        "eval_loss": ((loss_all * weight_all).sum() / weight_all.sum()).item(),
        "eval_pairs": int(correct_all.numel()),
    }
