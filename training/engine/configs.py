"""Every command's `Config`, importable without torch, and the check the web side runs at trigger time.

The web process validates a run's config.json before queuing it, with exactly the typed check the
engine runs at start-up, but must never import torch, transformers or TRL. So the configs live here,
next to nothing heavier than `config.py` (the loader) and `builtin_rewards.py`; each command module
re-exports its own as `Config`.

    from training.engine.configs import COMMAND_CONFIGS, validate_command_config

    validate_command_config("reward", {"model_path": "/models/sft-v3", "learning_rate": 1e-5})
    # -> RewardConfig(...), or EngineError("config.json: unknown key 'lerning_rate' (did you mean ...)")

Every field carries a comment stating its default and meaning: that comment is the documentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from training.engine.builtin_rewards import builtin_reward
from training.engine.config import TrainConfig, config_from_dict, require
from training.engine.errors import EngineError


@dataclass(frozen=True, kw_only=True)
class SftConfig(TrainConfig):
    """`sft`: supervised fine-tuning on demonstration dialogues."""

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


@dataclass(frozen=True, kw_only=True)
class RewardConfig(TrainConfig):
    """`reward`: a one-score sequence classifier trained on preference pairs."""

    learning_rate: float = 1e-5  # peak learning rate of AdamW
    train_file: str = "pairs.jsonl"  # preference pairs, relative to the run dir
    eval_file: str = ""  # held-out pairs; empty: hold out eval_fraction of the rankings of train_file
    eval_fraction: float = 0.1  # share of pairs (whole rankings) held out when eval_file is empty
    weigh_by_ranking: bool = True  # pairs weigh 1/(pairs of their ranking); false: every pair weighs 1
    # pair margins are multiplied by this (the ranking export's margin is the rank distance); 0 ignores them
    margin_scale: float = 1.0
    # 0 trains every weight; N > 0 freezes the embeddings and all but the top N decoder layers (the final
    # norm and the score head train): on a few hundred pairs the lower layers mostly overfit
    train_top_layers: int = 0
    # "finetune": train the network and a score head at the answer's end (above); "probe": keep the model
    # frozen and fit a linear score on its hidden states, averaged over the answer and at its end
    # (probe.py): seconds of fitting, no learning rate or epochs, and on a few hundred to a few thousand
    # pairs it generalises better than fine-tuning (bench/RESULTS.md, HH-RLHF)
    method: Literal["finetune", "probe"] = "finetune"
    probe_layers: tuple[int, ...] = ()  # probe: hidden-state indices (0 embeddings .. N last layer); (): 5 spread over the top two thirds
    probe_l2: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # probe: L2 strengths tried; k-fold CV picks one
    probe_folds: int = 5  # probe: folds of that cross-validation over the training pairs

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)")
        require(all(layer >= 0 for layer in self.probe_layers), "probe_layers must not be negative")
        require(len(self.probe_l2) > 0 and all(l2 > 0 for l2 in self.probe_l2),
                "probe_l2 must list at least one positive strength")
        require(self.probe_folds >= 2, "probe_folds must be at least 2")
        require(self.method == "finetune" or (self.lora is None and self.train_top_layers == 0),
                "method probe trains no network weights: lora and train_top_layers don't apply")
        require(self.margin_scale >= 0, "margin_scale must not be negative")
        require(self.train_top_layers >= 0, "train_top_layers must not be negative")
        require(self.train_top_layers == 0 or self.lora is None,
                "train_top_layers and lora don't combine: LoRA already freezes the base weights")


@dataclass(frozen=True, kw_only=True)
class DpoConfig(TrainConfig):
    """`dpo`: Direct Preference Optimization on the reward command's pairs."""

    learning_rate: float = 5e-7  # peak learning rate of AdamW (DPO wants a small one)
    beta: float = 0.1  # strength of the pull towards the reference model; higher stays closer
    train_file: str = "pairs.jsonl"  # preference pairs, relative to the run dir (same format as reward)
    eval_fraction: float = 0.0  # share of pairs (whole rankings) held out to report eval figures

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.beta > 0, "beta must be positive")
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class PpoConfig(TrainConfig):
    """PPO settings. Defaults follow TRL's last PPOConfig, except where a comment says otherwise.

    Batch sizes per device: a step samples per_device_batch_size · gradient_accumulation_steps ·
    num_mini_batches prompts; each PPO epoch splits them into num_mini_batches optimizer steps of
    gradient_accumulation_steps micro-batches of per_device_batch_size sequences.
    """

    # required: a reward-model folder (sequence classifier, one label, the policy's tokenizer) or "builtin:<name>[:arg]",
    # a programmatic reward from builtin_rewards.BUILTIN_REWARDS (e.g. "builtin:count:good" counts "good" in the answer)
    reward_model: str
    critic_model: str | None = None  # value-model init; null: the reward model (the policy for builtins)
    prompts_file: str = "prompts.jsonl"  # the prompts, relative to the run dir
    learning_rate: float = 3e-6  # policy AdamW learning rate (TRL's PPO examples)
    critic_learning_rate: float | None = None  # critic learning rate; null: learning_rate
    max_prompt_length: int = 512  # longer prompts lose their oldest turns first (conversations.fit_prompt)
    max_new_tokens: int = 53  # answer length limit (TRL's response_length)
    temperature: float = 0.7  # sampling temperature; log-probs are taken at the same temperature
    top_p: float = 1.0  # nucleus sampling; keep 1.0 for on-policy log-probs
    num_mini_batches: int = 1  # optimizer steps per PPO epoch
    num_ppo_epochs: int = 4  # passes over each rollout batch
    kl_coef: float = 0.05  # β of the per-token KL penalty folded into the reward
    kl_estimator: Literal["k1", "k3"] = "k1"  # estimator in the reward; k1 as in InstructGPT (both logged)
    cliprange: float = 0.2  # ε of the clipped policy ratio
    cliprange_value: float = 0.2  # how far a new value may move from the rollout's value
    vf_coef: float = 0.1  # weight of the value loss
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE λ
    whiten_rewards: bool = False  # whiten per-token rewards before GAE (advantages are always whitened)
    reward_clip: float | None = 10.0  # scores are clipped to ±reward_clip (OpenRLHF); null: no clip
    missing_eos_penalty: float | None = (
        None  # subtracted from the score of answers without EOS (TRL: 1.0 in examples)
    )
    fast_rollout: bool = True  # static KV cache + CUDA-graph decoding (rollout.py); false: model.generate
    save_every: int = 50  # PPO steps between checkpoints
    log_every: int = 1  # PPO steps between lines in metrics.jsonl
    max_steps: int = -1  # PPO steps (each one rollout batch); -1: num_epochs passes over the prompts

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.reward_model), "reward_model must name a folder or builtin:<name>")
        require(self.max_new_tokens > 0, "max_new_tokens must be positive")
        require(self.max_prompt_length > 0, "max_prompt_length must be positive")
        require(self.temperature > 0, "temperature must be positive (PPO samples)")
        require(
            self.num_mini_batches > 0 and self.num_ppo_epochs > 0, "num_mini_batches and num_ppo_epochs >= 1"
        )
        require(
            self.per_device_batch_size >= 2 or self.gradient_accumulation_steps * self.num_mini_batches >= 2,
            "a rollout batch needs at least two answers (advantages are whitened)",
        )
        if self.reward_model.startswith("builtin:"):
            builtin_reward(self.reward_model)  # fails early on an unknown name

    @property
    def rollout_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps * self.num_mini_batches


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    """`sample`: K answers per prompt from a model folder, written as ranking tasks."""

    model_path: str  # required: the policy's save_pretrained folder (absolute or relative to the run dir)
    prompts_file: str = "prompts.jsonl"  # prompts, relative to the run dir
    output_file: str = "samples.jsonl"  # ranking-task JSONL written here, relative to the run dir
    num_responses: int = 4  # K: answers per prompt
    max_new_tokens: int = 256  # longest answer in tokens; longer ones are cut
    temperature: float = 1.0  # sampling temperature; 0 means greedy (then all K answers are equal)
    top_p: float = 1.0  # nucleus sampling: keep the smallest token set with this much probability
    batch_size: int = 8  # prompts per generate call (each expanded to num_responses sequences)
    max_prompt_length: int = 1024  # tokens; longer prompts lose their oldest turns first (fit_prompt)
    generator: str = ""  # label stored with every answer (e.g. the model version's name); empty: model_path
    seed: int = 0  # seeds sampling; batch i uses seed + i, so a resumed run draws the same answers
    bf16: bool = False  # load the model in bfloat16 (GPU)

    def __post_init__(self) -> None:
        require(bool(self.model_path), "model_path must name a model folder")
        require(self.num_responses >= 1, "num_responses must be at least 1")
        require(self.max_new_tokens >= 1, "max_new_tokens must be at least 1")
        require(self.temperature >= 0, "temperature must not be negative")
        require(0 < self.top_p <= 1, "top_p must be in (0, 1]")
        require(self.batch_size >= 1, "batch_size must be at least 1")


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    """`score`: a reward model's scores for preference pairs, written to scores.jsonl, and its agreement."""

    model_path: str  # required: the reward model's folder (a `reward` run's model/), absolute or relative to the run dir
    pairs_file: str = "pairs.jsonl"  # preference pairs (the ranking export's format), relative to the run dir
    max_length: int = 1024  # tokens per conversation; a longer pair is shortened as `reward` shortens it
    batch_size: int = 8  # pairs per forward pass (each pair is two conversations)
    bf16: bool = False  # load the model in bfloat16 (GPU)

    def __post_init__(self) -> None:
        require(bool(self.model_path), "model_path must name a reward model folder")
        require(self.max_length > 0, "max_length must be positive")
        require(self.batch_size >= 1, "batch_size must be at least 1")


@dataclass(frozen=True, kw_only=True)
class TinyConfig:
    """`make-tiny`: a tiny randomly initialised causal LM and a locally trained tokenizer."""

    architecture: Literal["qwen2", "llama"] = "qwen2"  # which transformers model class shapes the network
    vocab_size: int = 512  # BPE vocabulary target (256 bytes + merges + 3 special tokens)
    hidden_size: int = 64  # width of the residual stream
    intermediate_size: int = 128  # width of the MLP
    num_layers: int = 2  # decoder layers
    num_heads: int = 4  # attention heads
    num_kv_heads: int = 2  # key/value heads (grouped-query attention when < num_heads)
    max_position_embeddings: int = 2048  # longest sequence the rotary embedding is sized for
    seed: int = 0  # seeds the weight initialisation

    def __post_init__(self) -> None:
        require(self.vocab_size >= 300, "vocab_size must be at least 300 (256 bytes + specials + merges)")
        require(self.hidden_size % self.num_heads == 0, "hidden_size must be a multiple of num_heads")
        require(self.num_heads % self.num_kv_heads == 0, "num_heads must be a multiple of num_kv_heads")


@dataclass(frozen=True, kw_only=True)
class ImportGgufConfig:
    """`import-gguf`: a GGUF file (llama.cpp) converted into a save_pretrained folder, RUN_DIR/model."""

    gguf_file: str  # required: the .gguf file, absolute or relative to the run dir
    # dtype of the saved weights; the GGUF's (quantized) tensors are dequantized to float32 first, so
    # float32 keeps them exactly and bfloat16 / float16 halve the folder
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self) -> None:
        require(bool(self.gguf_file), "gguf_file must name a .gguf file")


# Command name (as `python -m training.engine COMMAND` takes it) -> its Config class.
COMMAND_CONFIGS: dict[str, type] = {
    "make-tiny": TinyConfig,
    "sft": SftConfig,
    "reward": RewardConfig,
    "dpo": DpoConfig,
    "ppo": PpoConfig,
    "sample": SampleConfig,
    "score": ScoreConfig,
    "import-gguf": ImportGgufConfig,
}


def validate_command_config(command: str, raw: dict[str, Any]) -> object:
    """Build `command`'s Config from parsed config.json data, as the engine does at start-up.

    Raise EngineError naming the key (unknown, missing, wrong type or value) on bad input, and on a
    command the engine does not have. Paths and input files are not checked: they are resolved
    against the run folder on the GPU worker.
    """
    if command not in COMMAND_CONFIGS:
        raise EngineError(
            f"unknown engine command {command!r} (commands: {', '.join(sorted(COMMAND_CONFIGS))})"
        )
    return config_from_dict(COMMAND_CONFIGS[command], raw, where="config.json")
