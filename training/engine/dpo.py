"""`dpo`: Direct Preference Optimization with TRL's DPOTrainer, on the reward command's pairs.

An alternative to reward + PPO: the policy learns from the pairs directly, kept close to a frozen
copy of its starting weights (or, with LoRA, to the base weights with adapters off). Margins, groups
and ranking weights are not part of TRL's DPO loss and are ignored here. A pair longer than
max_length has its prompt shortened on message boundaries first, as reward and ppo do
(`conversations.fit_conversation`; counted in `truncated_pairs`): TRL alone would drop a pair whose
prompt fills max_length and cut the answer's end off the others. An answer too long even after its
prompt is emptied is still cut at its end by TRL.
"""

from __future__ import annotations

from training.engine.configs import DpoConfig as Config
from training.engine.conversations import fit_conversation, render
from training.engine.data import group_split, read_preference_pairs
from training.engine.errors import EngineError
from training.engine.hf import logged_and_evaluated, lora_config, train_in_run_folder, trainer_arguments
from training.engine.run_dir import Result, RunDir

_FIGURES = (
    "train_loss",
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "eval_loss",
    "eval_rewards/accuracies",
)


def main(config: Config, run_dir: RunDir) -> Result:
    """Train the policy on the pairs with DPO; save checkpoints, metrics and the final model."""
    return train_in_run_folder(
        config,
        run_dir,
        build_trainer=build_trainer,
        final_figures=lambda trainer, logs, _: {
            **logged_and_evaluated(trainer, logs, _FIGURES),
            "truncated_pairs": trainer.truncated_pairs,
        },
    )


def build_trainer(config: Config, run_dir: RunDir, *, callbacks: list):
    """Read and split the pairs, load policy and tokenizer, and return a ready DPOTrainer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    set_seed(config.seed)
    pairs = read_preference_pairs(run_dir.input_file(config.train_file))
    train_pairs, eval_pairs = group_split(pairs, eval_fraction=config.eval_fraction, seed=config.seed)

    source = run_dir.model_source(config.model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    train_pairs, train_cut = shorten_prompts(train_pairs, tokenizer, config.max_length)
    eval_pairs, eval_cut = shorten_prompts(eval_pairs, tokenizer, config.max_length)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    arguments = DPOConfig(**trainer_arguments(config, run_dir), beta=config.beta, eval_strategy="no")
    trainer = DPOTrainer(
        model=model,  # without LoRA, DPOTrainer freezes a copy of it as the reference
        args=arguments,
        train_dataset=_dpo_rows(train_pairs),
        eval_dataset=_dpo_rows(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
        peft_config=lora_config(config, task_type="CAUSAL_LM"),
        callbacks=callbacks,
    )
    trainer.truncated_pairs = train_cut + eval_cut
    return trainer


def shorten_prompts(pairs: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """Shorten each pair's prompt on message boundaries until prompt + either answer fits max_length.

    Return the pairs and how many were shortened.
    """
    if pairs and not tokenizer.chat_template:
        raise EngineError("the model's tokenizer has no chat template to render the pairs with")

    def length(messages: list[dict]) -> int:
        return len(render(tokenizer, messages))

    shortened, kept = 0, []
    for pair in pairs:
        prompt, _, cut = fit_conversation(
            pair["prompt"],
            [pair["chosen"], pair["rejected"]],
            max_length=max_length,
            length=length,
            cut_answers=False,  # TRL cuts an answer still too long at its end
        )
        shortened += cut
        kept.append({**pair, "prompt": prompt})
    return kept, shortened


def _dpo_rows(pairs: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{key: pair[key] for key in ("prompt", "chosen", "rejected")} for pair in pairs])
