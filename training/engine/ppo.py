"""`ppo`: RLHF with PPO on torch + transformers + accelerate (TRL 1.13+ ships no PPO).

Four models: the policy (from an SFT folder, trained), the critic (a one-score sequence classifier
used per token, initialised from the reward model, trained), a frozen reference (the SFT policy)
and a frozen reward model — or a programmatic reward, `reward_model: "builtin:<name>[:arg]"`.

Each step, as in TRL's last PPOTrainer (0.11–0.19) and OpenRLHF:
  generate  sample answers to a batch of prompts (rollout.py: static KV cache, CUDA graph);
  score     log-probs under policy and reference, values, reward-model scores; per-token reward
            = -kl_coef·k1 plus the (clipped, missing-EOS-penalised) score on the last token;
            GAE (γ, λ), whitened advantages;
  train     num_ppo_epochs passes of mini-batches: clipped policy loss + vf_coef · clipped value loss.

Inputs: RUN_DIR/prompts.jsonl ({"messages": [...]} or {"context": [...]} per line). Outputs: the
policy in RUN_DIR/model, metrics.jsonl (score, KL, entropy, clip fractions, losses, the time split
generate / score / train), checkpoints (policy, critic, optimizer, scheduler, step, RNG, config).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from pathlib import Path

import torch
from torch import nn

from training.engine import checkpoint as ckpt
from training.engine import ppo_losses as L
from training.engine.builtin_rewards import builtin_reward
from training.engine.config import save_config
from training.engine.configs import PpoConfig as Config
from training.engine.conversations import fit_prompt
from training.engine.data import read_prompts
from training.engine.errors import EngineError
from training.engine.hf import compile_decoder_layers
from training.engine.probe import ProbeRewardModel
from training.engine.reward_model import load_reward_model
from training.engine.rollout import RolloutEngine, SamplingParams, plain_generate, supports_fast_path
from training.engine.run_dir import MetricsLog, Result, RunDir, StopSignal
from training.engine.sampling import eos_token_ids


# -- models -------------------------------------------------------------------------------------
class PolicyAndCritic(nn.Module):
    """The two trained models behind one forward, so DDP syncs both and one optimizer steps both."""

    def __init__(self, policy: nn.Module, critic: nn.Module) -> None:
        super().__init__()
        self.policy, self.critic = policy, critic

    def forward(self, input_ids, attention_mask, position_ids, response_len: int):
        """Return (policy logits, critic values) at the positions that predict the response tokens."""
        logits = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=response_len + 1,
            use_cache=False,  # scoring and training: a KV cache would only cost memory (and retraces)
        ).logits[:, :-1]
        values = token_values(self.critic, input_ids, attention_mask, position_ids)[:, -response_len - 1 : -1]
        return logits, values


def token_values(model: nn.Module, input_ids, attention_mask, position_ids) -> torch.Tensor:
    """Apply a sequence classifier's score head at every position: [B, T] (critic and reward model)."""
    hidden = _backbone(model)(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    )
    return _base(model).score(hidden.last_hidden_state).squeeze(-1).float()


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _backbone(model: nn.Module) -> nn.Module:
    """Return the decoder stack (e.g. Qwen2Model) under a causal LM or sequence classifier."""
    base = _base(model)
    return getattr(base, base.base_model_prefix)


def _lora(model: nn.Module, cfg: Config, task_type: str) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = list(cfg.lora.target_modules)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type=task_type,
    )
    return get_peft_model(model, lora)


def load_models(cfg: Config, run_dir: RunDir, resume: Path | None, device, frozen_dtype):
    """Return (policy, critic, reference or None, reward model or None, tokenizer).

    With LoRA the reference is the policy with its adapters switched off, so it is not loaded twice.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    policy_path = run_dir.model_source(cfg.model_path)
    builtin = cfg.reward_model.startswith("builtin:")
    reward_path = None if builtin else run_dir.model_source(cfg.reward_model)
    critic_path = run_dir.model_source(cfg.critic_model) if cfg.critic_model else (reward_path or policy_path)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    def load_trained(cls, base_path: str, saved: Path | None, task_type: str, **kwargs):
        kwargs["dtype"] = torch.float32  # trained weights stay fp32; bf16 runs use autocast
        if cfg.lora is None:
            return cls.from_pretrained(str(saved) if saved else base_path, **kwargs)
        model = cls.from_pretrained(base_path, **kwargs)
        if saved:
            return PeftModel.from_pretrained(model, str(saved), is_trainable=True)
        return _lora(model, cfg, task_type)

    policy = load_trained(AutoModelForCausalLM, policy_path, resume and resume / "policy", "CAUSAL_LM")
    critic = load_trained(
        AutoModelForSequenceClassification, critic_path, resume and resume / "critic", "SEQ_CLS", num_labels=1
    )
    critic.config.pad_token_id = tokenizer.pad_token_id
    for trained in (policy, critic):
        disable_dropout(trained)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
        critic.gradient_checkpointing_enable()
    reference = None
    if cfg.lora is None:
        reference = AutoModelForCausalLM.from_pretrained(policy_path, dtype=frozen_dtype).to(device).eval()
    reward = None
    if reward_path:
        reward = load_reward_model(reward_path, dtype=frozen_dtype, pad_token_id=tokenizer.pad_token_id)
        reward = reward.to(device).eval()
    for frozen in (reference, reward):
        if frozen is not None:
            frozen.requires_grad_(False)
    return policy, critic, reference, reward, tokenizer


def disable_dropout(model: nn.Module) -> None:
    """Zero every dropout (LoRA's included), as TRL's PPO does.

    The rollout's log-probs and values are taken from the same modules the update then trains; with
    dropout on, the two passes would differ by noise and the ratio would not start at 1.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):  # HF attention reads a float
            module.attention_dropout = 0.0


# -- data ----------------------------------------------------------------------------------------
def tokenize_prompts(rows: list[dict], tokenizer, max_len: int) -> list[list[int]]:
    """Render each context with the chat template, ready for the assistant, in at most max_len tokens.

    A longer context is shortened on message boundaries and re-rendered (conversations.fit_prompt):
    its oldest turns go first, so the kept tokens still open as the template opens a conversation.
    """
    if not tokenizer.chat_template:
        raise EngineError("the policy's tokenizer has no chat template to render prompts with")
    return [fit_prompt(tokenizer, row["context"], max_length=max_len) for row in rows]


def left_pad(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (input_ids, attention_mask), left-padded to the longest sequence."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def prompt_batch(prompts: list[list[int]], step: int, batch: int, rank: int, world: int, seed: int) -> list:
    """Return this rank's prompts for `step`: a seeded shuffle per epoch, so a resumed run sees the same."""
    per_epoch = max(1, len(prompts) // (batch * world))
    epoch, index = divmod(step, per_epoch)
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    start = (index * world + rank) * batch
    return [prompts[order[(start + i) % len(prompts)]] for i in range(batch)]


def response_mask(responses: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (mask, has_eos): 1.0 up to and including the first EOS, and whether there was one."""
    is_eos = torch.isin(responses, torch.tensor(eos_ids, device=responses.device))
    seen_before = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    return (~seen_before).float(), is_eos.any(dim=1)


def scored_positions(mask: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """Return where the reward model reads each [prompt | response] row: the answer's last token.

    That is its EOS, the end-of-turn token `reward` trains the score on (conversations.render_scored);
    an answer cut at max_new_tokens has none and is scored at its last token (missing_eos_penalty
    can mark it down).
    """
    return prompt_width + mask.sum(1).long() - 1


# -- the loop ------------------------------------------------------------------------------------
def main(cfg: Config, run_dir: RunDir) -> Result:
    """Train the policy with PPO against the reward model; resume from the newest checkpoint."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    stop = StopSignal().install()
    accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no")
    device = accelerator.device
    if accelerator.is_main_process:
        ckpt.remove_incomplete(run_dir.checkpoints)
    accelerator.wait_for_everyone()
    resume = ckpt.latest_checkpoint(run_dir.checkpoints)
    state = ckpt.load_training_state(resume) if resume else None
    _seed_everything(cfg.seed + accelerator.process_index)

    frozen_dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    policy, critic, reference, reward_model, tokenizer = load_models(
        cfg, run_dir, resume, device, frozen_dtype
    )
    rows = read_prompts(run_dir.input_file(cfg.prompts_file))
    prompts = tokenize_prompts(rows, tokenizer, cfg.max_prompt_length)
    reward_fn = builtin_reward(cfg.reward_model) if reward_model is None else None
    eos_ids = eos_token_ids(policy, tokenizer)
    if not eos_ids:
        raise EngineError("the policy's tokenizer has no EOS token: answers could never end")

    model = PolicyAndCritic(policy, critic)
    lr_critic = cfg.critic_learning_rate or cfg.learning_rate
    groups = [
        {"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
        {"params": [p for p in critic.parameters() if p.requires_grad], "lr": lr_critic},
    ]
    optimizer = torch.optim.AdamW(
        groups, weight_decay=cfg.weight_decay, eps=1e-5, fused=device.type == "cuda"
    )
    world = accelerator.num_processes
    total_steps = (
        cfg.max_steps
        if cfg.max_steps > 0
        else max(1, math.ceil(cfg.num_epochs * len(prompts) / (cfg.rollout_batch_size * world)))
    )
    updates = total_steps * cfg.num_ppo_epochs * cfg.num_mini_batches
    scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * updates),
        num_training_steps=updates,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    step = 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state["rng"][accelerator.process_index % len(state["rng"])])
        step = state["step"]

    # sampling runs on a bf16 copy of the policy when training keeps fp32 weights under autocast;
    # the copy's weights are refreshed in place before each rollout, so its CUDA graph stays valid
    unwrapped = accelerator.unwrap_model(model).policy
    sampler = unwrapped
    if cfg.bf16:
        sampler = copy.deepcopy(unwrapped).to(torch.bfloat16).requires_grad_(False)
    if cfg.torch_compile:  # the four networks; after the sampler copy: the rollout engine runs the layers itself, uncompiled
        for network in (policy, critic, reference, reward_model):
            if network is not None:
                compile_decoder_layers(network)
    total_len = cfg.max_prompt_length + cfg.max_new_tokens
    engine = None
    if cfg.fast_rollout and supports_fast_path(sampler, total_len):
        engine = RolloutEngine(sampler, max_prompt_len=cfg.max_prompt_length)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)

    metrics_log = MetricsLog(run_dir.metrics_file, resume_step=step)
    figures: dict[str, float] = {}
    while step < total_steps:
        step += 1
        timer = _Timer(device)
        # 1. generate
        if sampler is not unwrapped:
            _copy_weights(unwrapped, sampler)
        batch = prompt_batch(
            prompts, step - 1, cfg.rollout_batch_size, accelerator.process_index, world, cfg.seed
        )
        prompt_ids, prompt_mask = left_pad(batch, tokenizer.pad_token_id, device)
        gen = dict(eos_token_ids=eos_ids, pad_token_id=tokenizer.pad_token_id)
        if engine is not None:
            responses = engine.generate(prompt_ids, prompt_mask, params, **gen)
        else:
            # model.generate's KV cache would make the compiled layers retrace per layer: run it eager
            with torch.compiler.set_stance("force_eager") if cfg.torch_compile else contextlib.nullcontext():
                responses = plain_generate(sampler, prompt_ids, prompt_mask, params, **gen)
        t_generate = timer.lap()

        # 2. score
        rollout = score_rollout(
            cfg,
            accelerator,
            model,
            reference,
            reward_model,
            reward_fn,
            tokenizer,
            prompt_ids,
            prompt_mask,
            responses,
            eos_ids,
        )
        t_score = timer.lap()

        # 3. train
        train_stats = train_on_rollout(cfg, accelerator, model, optimizer, scheduler, rollout)
        t_train = timer.lap()

        mask = rollout["mask"]
        new_tokens = accelerator.reduce(mask.sum().detach(), reduction="sum").item()
        figures = {
            **_mean_over_ranks(accelerator, rollout["stats"]),
            **_mean_over_ranks(accelerator, train_stats),
            "lr": scheduler.get_last_lr()[0],
            "time_generate": t_generate,
            "time_score": t_score,
            "time_train": t_train,
            "rollout_tokens_per_s": new_tokens / max(t_generate, 1e-9),
            "episodes": step * cfg.rollout_batch_size * world,
        }
        if step % cfg.log_every == 0 or step == total_steps:
            metrics_log.log(
                step, loss=figures["pg_loss"] + cfg.vf_coef * figures["vf_loss"], total_steps=total_steps, **figures
            )
        diverged_figures(step, figures)  # logged first: the chart shows where it broke
        stopping = stop.requested_on_any_rank()
        if step % cfg.save_every == 0 or stopping or step == total_steps:
            require_finite_weights(step, model)  # a diverged policy is never saved, as checkpoint or final model
        if step % cfg.save_every == 0 or stopping:
            save_checkpoint(cfg, accelerator, model, optimizer, scheduler, tokenizer, run_dir, step)
        if stopping:
            return Result(status="stopped", metrics=figures, step=step, resumed_from=resume and str(resume))

    save_final(cfg, accelerator, model, tokenizer, run_dir)
    return Result(
        status="succeeded",
        metrics=figures,
        paths={"model": str(run_dir.final_model)},
        resumed_from=resume and str(resume),
        step=step,
    )


DIVERGENCE_HINT = (
    "Lower learning_rate (or critic_learning_rate), or run with bf16 false: on SmolLM2 with long HH-RLHF prompts "
    "bf16 runs went NaN within a dozen steps where fp32 did not (bench/RESULTS.md)"
)


def diverged_figures(step: int, figures: dict) -> None:
    """Stop the run when the step's KL, losses or entropy are not finite: the policy has diverged, and
    every later step would train on garbage (answers from NaN weights) and save it."""
    broken = [key for key in ("kl", "pg_loss", "vf_loss", "entropy") if key in figures
              and not math.isfinite(figures[key])]
    if broken:
        raise EngineError(f"PPO diverged at step {step}: {', '.join(broken)} not finite (NaN or inf); nothing "
                          f"from this step on was saved, the last checkpoint is intact. {DIVERGENCE_HINT}")


def require_finite_weights(step: int, model: nn.Module) -> None:
    """Before a save: every trained weight (policy and critic) must be finite."""
    if not all(bool(torch.isfinite(weight).all()) for weight in model.parameters() if weight.requires_grad):
        raise EngineError(f"PPO diverged at step {step}: the trained weights hold NaN or inf; not saved, the last "
                          f"checkpoint is intact. {DIVERGENCE_HINT}")


@torch.no_grad()
def score_rollout(
    cfg,
    accelerator,
    model,
    reference,
    reward_model,
    reward_fn,
    tokenizer,
    prompt_ids,
    prompt_mask,
    responses,
    eos_ids,
) -> dict:
    """Compute old log-probs, reference log-probs, values, scores, rewards and advantages of a rollout."""
    mask, has_eos = response_mask(responses, eos_ids)
    input_ids = torch.cat([prompt_ids, responses], dim=1)
    attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    input_ids = input_ids.masked_fill(attention_mask == 0, tokenizer.pad_token_id)
    width = responses.size(1)
    unwrapped = accelerator.unwrap_model(model)
    logprobs, ref_logprobs, values, scores = [], [], [], []
    for rows in torch.arange(len(responses), device=responses.device).split(cfg.per_device_batch_size):
        ids, att, pos, resp = input_ids[rows], attention_mask[rows], position_ids[rows], responses[rows]
        with accelerator.autocast():
            logits, value = unwrapped(ids, att, pos, width)
            logprobs.append(L.logprobs_of(logits / cfg.temperature, resp))
            del logits
            values.append(value)
            if reference is None:  # LoRA: the reference is the policy without its adapters
                with unwrapped.policy.disable_adapter():
                    ref_logits = unwrapped.policy(
                        input_ids=ids,
                        attention_mask=att,
                        position_ids=pos,
                        logits_to_keep=width + 1,
                        use_cache=False,
                    ).logits[:, :-1]
            else:
                ref_logits = reference(
                    input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=width + 1, use_cache=False
                ).logits[:, :-1]
            ref_logprobs.append(L.logprobs_of(ref_logits / cfg.temperature, resp))
            del ref_logits
            if reward_model is not None:
                last = scored_positions(mask[rows], att.size(1) - width)
                if isinstance(reward_model, ProbeRewardModel):  # pools the generated answer (probe.py)
                    answer = torch.zeros_like(att, dtype=torch.bool)
                    answer[:, -width:] = mask[rows].bool()
                    scores.append(reward_model(ids, att, answer, last, position_ids=pos))
                else:
                    per_token = token_values(reward_model, ids, att, pos)
                    scores.append(per_token[torch.arange(len(rows), device=ids.device), last])
    logprobs, ref_logprobs = torch.cat(logprobs), torch.cat(ref_logprobs)
    values = torch.cat(values).float() * mask
    if reward_fn is not None:
        texts = tokenizer.batch_decode(
            responses.masked_fill(mask == 0, tokenizer.pad_token_id), skip_special_tokens=True
        )
        raw_scores = torch.tensor([reward_fn(t) for t in texts], device=responses.device)
    else:
        raw_scores = torch.cat(scores).float()
    scores = L.penalised_scores(raw_scores, has_eos, cfg.reward_clip, cfg.missing_eos_penalty)

    kl1 = L.kl_k1(logprobs, ref_logprobs) * mask
    kl3 = L.kl_k3(logprobs, ref_logprobs) * mask
    rewards = L.shaped_rewards(scores, kl1 if cfg.kl_estimator == "k1" else kl3, mask, cfg.kl_coef)
    if cfg.whiten_rewards:
        rewards = L.masked_whiten(rewards, mask, shift_mean=False)
    advantages, returns = L.gae(rewards, values, mask, gamma=cfg.gamma, lam=cfg.lam)
    advantages = L.masked_whiten(advantages, mask)
    stats = {
        "score": raw_scores.mean(),
        "kl": kl1.sum(1).mean(),
        "kl_k3": kl3.sum(1).mean(),
        "rlhf_reward": (scores - cfg.kl_coef * kl1.sum(1)).mean(),
        "response_length": mask.sum(1).mean(),
        "eos_fraction": has_eos.float().mean(),
        "value_mean": L.masked_mean(values, mask),
    }
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "responses": responses,
        "mask": mask,
        "logprobs": logprobs,
        "values": values,
        "advantages": advantages,
        "returns": returns,
        "stats": stats,
    }


def train_on_rollout(cfg, accelerator, model, optimizer, scheduler, rollout) -> dict:
    """Run num_ppo_epochs of clipped policy + value updates over the rollout; return mean statistics."""
    model.train()
    n = rollout["responses"].size(0)
    width = rollout["responses"].size(1)
    minibatch = n // cfg.num_mini_batches
    sums: dict[str, float] = {}
    count = 0
    for _ in range(cfg.num_ppo_epochs):
        order = torch.randperm(n, device=rollout["responses"].device)
        for start in range(0, minibatch * cfg.num_mini_batches, minibatch):
            micro_batches = order[start : start + minibatch].split(cfg.per_device_batch_size)
            for index, rows in enumerate(micro_batches):
                last = index == len(micro_batches) - 1
                sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
                with sync:
                    mask = rollout["mask"][rows]
                    with accelerator.autocast():
                        logits, values = model(
                            rollout["input_ids"][rows],
                            rollout["attention_mask"][rows],
                            rollout["position_ids"][rows],
                            width,
                        )
                    logits = logits.float() / cfg.temperature
                    logprobs = L.logprobs_of(logits, rollout["responses"][rows])
                    pg_loss, pg_stats = L.policy_loss(
                        logprobs, rollout["logprobs"][rows], rollout["advantages"][rows], mask, cfg.cliprange
                    )
                    vf_loss, vf_stats = L.value_loss(
                        values.float(),
                        rollout["values"][rows],
                        rollout["returns"][rows],
                        mask,
                        cfg.cliprange_value,
                    )
                    loss = (pg_loss + cfg.vf_coef * vf_loss) / len(micro_batches)
                    accelerator.backward(loss)
                with torch.no_grad():
                    entropy = L.masked_mean(L.entropy_from_logits(logits), mask)
                for key, value in {
                    "pg_loss": pg_loss,
                    "vf_loss": vf_loss,
                    "entropy": entropy,
                    **pg_stats,
                    **vf_stats,
                }.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                count += 1
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    return {key: value / count for key, value in sums.items()}


# -- saving ---------------------------------------------------------------------------------------
def save_checkpoint(cfg, accelerator, model, optimizer, scheduler, tokenizer, run_dir: RunDir, step: int):
    """Write policy, critic, optimizer, scheduler, step, every rank's RNG and the config, atomically."""
    from accelerate.utils import gather_object

    rng = gather_object([_rng_state()]) if accelerator.num_processes > 1 else [_rng_state()]
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        with ckpt.writing_checkpoint(run_dir.checkpoints, step) as folder:
            unwrapped.policy.save_pretrained(folder / "policy")
            tokenizer.save_pretrained(folder / "policy")
            unwrapped.critic.save_pretrained(folder / "critic")
            ckpt.save_training_state(
                folder,
                {
                    "step": step,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng,
                },
            )
            save_config(cfg, folder / "engine_config.json")
        ckpt.prune_checkpoints(run_dir.checkpoints, keep=cfg.keep_checkpoints)
    accelerator.wait_for_everyone()


def save_final(cfg, accelerator, model, tokenizer, run_dir: RunDir) -> None:
    """Save the policy (LoRA merged unless merge_on_save is off) and tokenizer to RUN_DIR/model."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        policy = accelerator.unwrap_model(model).policy
        if cfg.lora is not None and cfg.lora.merge_on_save:
            policy = copy.deepcopy(policy).merge_and_unload()
        with ckpt.atomic_directory(run_dir.final_model) as folder:
            policy.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            save_config(cfg, folder / "engine_config.json")
    accelerator.wait_for_everyone()


# -- small helpers ---------------------------------------------------------------------------------
def _copy_weights(source: nn.Module, target: nn.Module) -> None:
    with torch.no_grad():
        for src, dst in zip(source.parameters(), target.parameters(), strict=True):
            dst.copy_(src)


def _mean_over_ranks(accelerator, stats: dict) -> dict[str, float]:
    keys = sorted(stats)
    local = torch.tensor([float(stats[k]) for k in keys], device=accelerator.device)
    return dict(zip(keys, accelerator.reduce(local, reduction="mean").tolist(), strict=True))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class _Timer:
    """Wall-clock laps that wait for the GPU, so each phase is charged its own kernels."""

    def __init__(self, device) -> None:
        self.device = device
        self.last = self._now()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self) -> float:
        now = self._now()
        elapsed, self.last = now - self.last, now
        return elapsed
