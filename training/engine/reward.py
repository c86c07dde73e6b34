"""`reward`: train a reward model (one score per conversation) on preference pairs.

Input `RUN_DIR/<train_file>` holds pairs `{"prompt", "chosen", "rejected", "margin", "group"}` (see
data.py). The model is `AutoModelForSequenceClassification` with one label, scoring the last token (EOS pads
when the tokenizer has no pad token).
The loss is `losses.pairwise_reward_loss` with each pair weighing 1/(pairs of its ranking), as
InstructGPT weighs a K-way ranking's C(K,2) comparisons. We tokenize (chat template; a pair longer
than max_length is cut from the left, not dropped as TRL would, and counted in `truncated_pairs`);
TRL's RewardTrainer supplies batching and the training loop, and we swap in that loss. Whole
rankings are held out for `eval_accuracy`: the share of held-out pairs whose chosen answer scores higher.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from training.engine.configs import RewardConfig as Config
from training.engine.data import group_split, read_preference_pairs
from training.engine.errors import EngineError
from training.engine.hf import lora_config, train_in_run_folder, trainer_arguments
from training.engine.losses import pairwise_reward_loss
from training.engine.run_dir import MetricsLog, Result, RunDir


def main(config: Config, run_dir: RunDir) -> Result:
    """Train the reward model; report held-out pairwise accuracy; save the final model."""
    return train_in_run_folder(config, run_dir, build_trainer=build_trainer, final_figures=_final_figures)


def _final_figures(trainer: RankingRewardTrainer, last_logs: dict, metrics: MetricsLog) -> dict:
    figures = {key: last_logs[key] for key in ("train_loss", "loss", "accuracy") if key in last_logs}
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
    pairs = read_preference_pairs(run_dir.input_file(config.train_file))
    if config.eval_file:
        train_pairs, eval_pairs = pairs, read_preference_pairs(run_dir.input_file(config.eval_file))
    else:
        train_pairs, eval_pairs = group_split(pairs, eval_fraction=config.eval_fraction, seed=config.seed)
    for pair in train_pairs + eval_pairs:
        pair["margin"] *= config.margin_scale
        if not config.weigh_by_ranking:
            pair["weight"] = 1.0

    source = run_dir.model_source(config.model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    pad_with_eos_if_missing(tokenizer)
    # tokenized here, not by TRL: TRL silently drops pairs longer than max_length, we truncate them
    train_rows, train_cut = tokenize_pairs(train_pairs, tokenizer, config.max_length)
    eval_rows, eval_cut = tokenize_pairs(eval_pairs, tokenizer, config.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id  # the score is read at the last non-pad token
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


def pad_with_eos_if_missing(tokenizer) -> None:
    """Pad with EOS when the tokenizer has no pad token (Llama-style); padding is masked out anyway."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise EngineError(
            "the model's tokenizer has neither a pad token nor an EOS token to pad the pairs with"
        )
    tokenizer.pad_token = tokenizer.eos_token


def tokenize_pairs(pairs: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """Render prompt + chosen and prompt + rejected with the chat template, as TRL would.

    A conversation longer than max_length keeps its last max_length tokens (and a leading BOS): the
    prompt loses its oldest turns first and the score, read at the last token, still sees the whole
    answer when it fits — the same left truncation PPO applies to prompts. Return the rows
    (chosen_ids, rejected_ids, margin, weight) and how many pairs were truncated.
    """
    if pairs and not tokenizer.chat_template:
        raise EngineError("the model's tokenizer has no chat template to render the pairs with")

    def render(messages: list[dict]) -> list[int]:
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]

    rows, truncated = [], 0
    for pair in pairs:
        chosen, rejected = render(pair["prompt"] + pair["chosen"]), render(pair["prompt"] + pair["rejected"])
        truncated += max(len(chosen), len(rejected)) > max_length
        rows.append(
            {
                "chosen_ids": keep_last_tokens(chosen, max_length, tokenizer.bos_token_id),
                "rejected_ids": keep_last_tokens(rejected, max_length, tokenizer.bos_token_id),
                "margin": pair["margin"],
                "weight": pair["weight"],
            }
        )
    return rows, truncated


def keep_last_tokens(ids: list[int], max_length: int, bos_token_id: int | None) -> list[int]:
    """Return the last max_length tokens of ids, keeping a leading BOS in front of them."""
    if len(ids) <= max_length:
        return ids
    if bos_token_id is not None and ids[0] == bos_token_id and max_length > 1:
        return ids[:1] + ids[len(ids) - max_length + 1 :]
    return ids[-max_length:]


class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator (chosen rows first, then rejected) plus each pair's weight."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        batch["weight"] = torch.tensor(
            [example.get("weight", 1.0) for example in examples], dtype=torch.float
        )
        return batch


class RankingRewardTrainer(RewardTrainer):
    """RewardTrainer whose loss weighs each pair by its ranking (see losses.pairwise_reward_loss)."""

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "weight"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        chosen, rejected, outputs = score_pairs(model, inputs)
        loss = pairwise_reward_loss(chosen, rejected, margins=inputs["margin"], weights=inputs["weight"])
        mode = "train" if model.training else "eval"
        with torch.no_grad():
            accuracy = (chosen > rejected).float().mean()
            self._metrics[mode]["accuracy"].append(
                self.accelerator.gather_for_metrics(accuracy).mean().item()
            )
            margin = (chosen - rejected).mean()
            self._metrics[mode]["reward_gap"].append(
                self.accelerator.gather_for_metrics(margin).mean().item()
            )
        return (loss, outputs) if return_outputs else loss


def score_pairs(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Score a collated batch in one forward pass; return (chosen scores, rejected scores, outputs).

    A conversation's score is the score head's output at its last attended token, which the head's
    forward hook hands us. Not the classifier's own pooling, the last token that differs from the pad
    token: when EOS pads (a tokenizer without pad token), a conversation ending in EOS (Llama 3's
    <|eot_id|>) would be scored one token early, where PPO, reading the reward model at the answer's
    last token, never looks.
    """
    head = _score_head(model)
    per_token = []
    hook = head.register_forward_hook(lambda module, args, output: per_token.append(output))
    try:
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
        )
    finally:
        hook.remove()
    mask = inputs["attention_mask"]
    last = (mask * torch.arange(mask.size(1), device=mask.device)).argmax(1)
    scores = per_token[-1].squeeze(-1).float()[torch.arange(mask.size(0), device=mask.device), last]
    chosen, rejected = scores.chunk(2)
    return chosen, rejected, outputs


def _score_head(model) -> torch.nn.Module:
    """Return the sequence classifier's score head under DDP's and peft's wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(model, "get_base_model"):  # peft: the head is its trained copy (modules_to_save)
        model = model.get_base_model()
    return model.score


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
