"""`reward` with `method: "probe"`: a frozen language model and a linear score on its hidden states.

On a few hundred preference pairs, fine-tuning 10^8 weights (all of them, the top layers or LoRA)
mostly fits the labels' noise; a linear score on features the pretrained model already computes
generalises better (bench/RESULTS.md: HH-RLHF, 996 human pairs, 5-fold). A conversation's features,
at each of `layers` (hidden-state indices: 0 the embeddings, N the last layer): the hidden state
averaged over the answer's tokens, and the one at its last token (the end of turn, where a
fine-tuned reward model reads). Training is Bradley–Terry with a linear reward: L2-regularised
logistic regression on the difference of the chosen and rejected features (each feature divided by
its spread over the training pairs; the pair's margin subtracted, its weight applied), the strength
picked from `probe_l2` by k-fold cross-validation on the training pairs (held-out log-loss), then
refit on all of them. Scores are centred on the training conversations' mean, as PPO wants them.

The answer is what follows the prompt rendered with its generation prompt (`<|im_start|>assistant\n`):
the answer's text and end of turn, exactly what PPO's rollout generates and scores.

The saved folder is the frozen model as `save_pretrained` writes a causal LM (anything that loads a
model reads it; PPO's critic starts from it with a fresh value head), its tokenizer, and
`reward_probe.json` (layers, the chosen strength, the cross-validation table) with
`reward_probe.safetensors` (scale, weight, bias). `reward_model.load_reward_model` returns this
module or a sequence classifier, whichever a folder holds. Features take one forward pass per
conversation and the fit seconds, so a stop (SIGTERM) returns at once with nothing written and a
rerun starts over, like `score`; under torchrun rank 0 does it all, the other ranks return at once.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.engine.checkpoint import atomic_directory
from training.engine.config import save_config
from training.engine.errors import EngineError
from training.engine.run_dir import MetricsLog, Result, RunDir, StopSignal, is_main_process

PROBE_FILE = "reward_probe.json"
WEIGHTS_FILE = "reward_probe.safetensors"
FEATURE_BATCH = 8  # conversations per forward pass while extracting features


def default_layers(num_layers: int, count: int = 5) -> tuple[int, ...]:
    """`count` hidden-state indices spread over the upper two thirds, the last included (30 layers: 10 15 20 25 30)."""
    low = num_layers / 3
    picks = {max(1, round(low + index * (num_layers - low) / (count - 1))) for index in range(count)}
    return tuple(sorted(picks))


class ProbeRewardModel(nn.Module):
    """A frozen decoder stack and a linear score on its pooled hidden states (module docstring)."""

    def __init__(self, backbone: nn.Module, layers: tuple[int, ...], features: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.layers = tuple(layers)
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("weight", torch.zeros(features))
        self.register_buffer("bias", torch.zeros(()))

    def features(self, input_ids, attention_mask, answer_mask, last_index, position_ids=None) -> torch.Tensor:
        """[B, 2 * len(layers) * hidden] in float32: answer means, then last-token states, layer by layer."""
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            use_cache=False,
        ).hidden_states
        mask = answer_mask.unsqueeze(-1).float()
        count = mask.sum(1).clamp(min=1.0)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        means = [(hidden[layer].float() * mask).sum(1) / count for layer in self.layers]
        lasts = [hidden[layer][rows, last_index].float() for layer in self.layers]
        return torch.cat(means + lasts, dim=-1)

    def forward(self, input_ids, attention_mask, answer_mask, last_index, position_ids=None) -> torch.Tensor:
        """One score per conversation, [B] float32."""
        features = self.features(input_ids, attention_mask, answer_mask, last_index, position_ids)
        return (features / self.scale) @ self.weight + self.bias


@dataclass
class LinearFit:
    """The fitted score: features / scale @ weight; the strength picked and what cross-validation saw."""

    scale: torch.Tensor
    weight: torch.Tensor
    l2: float
    cross_validation: list[dict]  # per strength: held-out log-loss and accuracy over the training pairs


def fit_linear_preference(
    differences: torch.Tensor,
    margins: torch.Tensor,
    weights: torch.Tensor,
    *,
    l2_grid: tuple[float, ...],
    folds: int,
    seed: int,
) -> LinearFit:
    """Fit P(chosen beats rejected) = sigmoid(differences / scale @ weight - margin), L2 strength by k-fold CV.

    `differences` is [pairs, features] (chosen minus rejected). With one strength, or fewer than two
    pairs per fold, no cross-validation runs: the one strength, or the strongest, is used.
    """
    x = differences.double()
    scale = x.std(0, unbiased=False).clamp(min=1e-6) if len(x) > 1 else torch.ones(x.size(1), dtype=x.dtype)
    x = x / scale
    margins, weights = margins.double(), weights.double()
    table = []
    if len(l2_grid) > 1 and len(x) >= 2 * folds:
        order = list(range(len(x)))
        random.Random(seed).shuffle(order)
        parts = [torch.tensor(sorted(order[index::folds])) for index in range(folds)]
        for l2 in l2_grid:
            loss = correct = total_weight = 0.0
            for index, held in enumerate(parts):
                kept = torch.cat([part for other, part in enumerate(parts) if other != index])
                w = _logistic(x[kept], margins[kept], weights[kept], l2)
                logits = x[held] @ w - margins[held]
                loss += (nn.functional.softplus(-logits) * weights[held]).sum().item()
                correct += ((logits + margins[held] > 0).double() * weights[held]).sum().item()
                total_weight += weights[held].sum().item()
            table.append({"l2": l2, "log_loss": loss / total_weight, "accuracy": correct / total_weight})
        best = min(table, key=lambda row: row["log_loss"])["l2"]
    else:
        best = max(l2_grid)
    return LinearFit(scale=scale.float(), weight=_logistic(x, margins, weights, best).float(), l2=best,
                     cross_validation=table)


def _logistic(x: torch.Tensor, margins: torch.Tensor, weights: torch.Tensor, l2: float) -> torch.Tensor:
    """Minimise the weighted mean of softplus(-(x @ w - margin)) + l2 * |w|^2 (convex: L-BFGS converges)."""
    w = torch.zeros(x.size(1), dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")
    total = weights.sum()

    def closure():
        optimizer.zero_grad()
        loss = (nn.functional.softplus(-(x @ w - margins)) * weights).sum() / total + l2 * (w @ w)
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def answer_mask(attention_mask: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Right-padded rows: True from each row's answer start to its last attended token."""
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    return (positions[None, :] >= starts[:, None]) & attention_mask.bool()


def collate_conversations(sequences: list[list[int]], starts: list[int], *, pad_token_id: int) -> dict:
    """Right-pad conversations; return what `ProbeRewardModel` takes."""
    from training.engine.reward_model import right_pad

    batch = right_pad(sequences, pad_token_id=pad_token_id)
    attention_mask = batch["attention_mask"]
    return {**batch, "answer_mask": answer_mask(attention_mask, torch.tensor(starts)),
            "last_index": attention_mask.sum(1) - 1}


def pair_features(model: ProbeRewardModel, rows: list[dict], *, pad_token_id: int, device, autocast_bf16: bool,
                  stop: StopSignal | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Features of every row's chosen and rejected conversation, [rows, F] each on the CPU; None if stopped."""
    conversations = [(ids, row["answer_start"]) for row in rows for ids in (row["chosen_ids"], row["rejected_ids"])]
    order = sorted(range(len(conversations)), key=lambda index: -len(conversations[index][0]))
    features: list[torch.Tensor | None] = [None] * len(conversations)
    for begin in range(0, len(order), FEATURE_BATCH):
        if stop is not None and stop.requested:
            return None
        indices = order[begin : begin + FEATURE_BATCH]
        batch = collate_conversations([conversations[i][0] for i in indices], [conversations[i][1] for i in indices],
                                      pad_token_id=pad_token_id)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            values = model.features(**{key: value.to(device) for key, value in batch.items()}).cpu()
        for index, row in zip(indices, values, strict=True):
            features[index] = row
    stacked = torch.stack(features)  # type: ignore[arg-type]
    return stacked[0::2], stacked[1::2]


def train(config, run_dir: RunDir, train_pairs: list[dict], eval_pairs: list[dict]) -> Result:
    """Extract features, fit and save the probe; report training, cross-validated and held-out accuracy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.engine.reward_model import pad_with_eos_if_missing, tokenize_pairs

    if not is_main_process():  # one process does it all (a forward pass per answer, then a small fit), like score
        return Result(status="succeeded", paths={"model": str(run_dir.final_model)}, step=0)
    stop = StopSignal().install()
    source = run_dir.model_source(config.model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    pad_with_eos_if_missing(tokenizer)
    train_rows, train_cut = tokenize_pairs(train_pairs, tokenizer, config.max_length, answer_starts=True)
    eval_rows, eval_cut = tokenize_pairs(eval_pairs, tokenizer, config.max_length, answer_starts=True)
    if not train_rows:
        raise EngineError("the probe needs at least one training pair")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    language_model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    num_layers = language_model.config.num_hidden_layers
    layers = tuple(config.probe_layers) or default_layers(num_layers)
    if max(layers) > num_layers:
        raise EngineError(f"config.json: probe_layers holds {max(layers)} but the model has {num_layers} layers "
                          f"(hidden states 0 to {num_layers})")
    hidden = language_model.config.hidden_size
    model = ProbeRewardModel(_decoder_stack(language_model), layers, features=2 * len(layers) * hidden).to(device)
    model.requires_grad_(False)
    extract = dict(pad_token_id=tokenizer.pad_token_id, device=device,
                   autocast_bf16=config.bf16 and device.type == "cuda", stop=stop)
    train_features = pair_features(model, train_rows, **extract)
    eval_features = pair_features(model, eval_rows, **extract) if eval_rows else None
    if train_features is None or (eval_rows and eval_features is None):
        return Result(status="stopped", step=0)

    chosen, rejected = train_features
    margins = torch.tensor([row["margin"] for row in train_rows])
    weights = torch.tensor([row["weight"] for row in train_rows])
    fit = fit_linear_preference(chosen - rejected, margins, weights, l2_grid=tuple(config.probe_l2),
                                folds=config.probe_folds, seed=config.seed)
    model.scale.copy_(fit.scale)
    model.weight.copy_(fit.weight)
    model.bias.fill_(-float(torch.cat([chosen, rejected]).div(fit.scale).matmul(fit.weight).mean()))

    figures = {"probe_l2": fit.l2, "probe_layers": list(layers), "probe_features": int(fit.weight.numel()),
               **_accuracy("train", chosen, rejected, train_rows, fit), "truncated_pairs": train_cut + eval_cut}
    chosen_row = next((row for row in fit.cross_validation if row["l2"] == fit.l2), None)
    if chosen_row:
        figures["cv_accuracy"] = chosen_row["accuracy"]
    if eval_features is not None:
        figures.update(_accuracy("eval", *eval_features, eval_rows, fit))
    MetricsLog(run_dir.metrics_file, resume_step=0).log(0, **figures)

    with atomic_directory(run_dir.final_model) as folder:
        language_model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        save_config(config, folder / "engine_config.json")
        save_probe(model, folder, l2=fit.l2, cross_validation=fit.cross_validation)
    return Result(status="succeeded", metrics=figures, paths={"model": str(run_dir.final_model)}, step=0)


def _accuracy(prefix: str, chosen, rejected, rows: list[dict], fit: LinearFit) -> dict:
    """Weighted share of pairs ordered right and the log-loss, as `<prefix>_accuracy`, `<prefix>_loss`, `<prefix>_pairs`."""
    margins = ((chosen - rejected) / fit.scale) @ fit.weight
    weights = torch.tensor([row["weight"] for row in rows])
    labelled = torch.tensor([row["margin"] for row in rows])
    loss = nn.functional.softplus(-(margins - labelled))
    return {f"{prefix}_accuracy": float(((margins > 0).float() * weights).sum() / weights.sum()),
            f"{prefix}_loss": float((loss * weights).sum() / weights.sum()),
            f"{prefix}_pairs": len(rows)}


def _decoder_stack(language_model: nn.Module) -> nn.Module:
    """The decoder stack (LlamaModel, Qwen2Model...) under a causal LM or sequence classifier."""
    return getattr(language_model, language_model.base_model_prefix)


def save_probe(model: ProbeRewardModel, folder: Path, *, l2: float, cross_validation: list[dict]) -> None:
    """Write reward_probe.json and reward_probe.safetensors beside the saved language model."""
    from safetensors.torch import save_file

    save_file({name: getattr(model, name).detach().cpu().contiguous() for name in ("scale", "weight", "bias")},
              str(folder / WEIGHTS_FILE))
    (folder / PROBE_FILE).write_text(json.dumps(
        {"layers": list(model.layers), "features": int(model.weight.numel()), "pooling": ["answer_mean", "last_token"],
         "l2": l2, "cross_validation": cross_validation}, indent=2) + "\n")


def is_probe(folder: str | Path) -> bool:
    """Whether a model folder holds a probe reward model."""
    return (Path(folder) / PROBE_FILE).is_file()


def load_probe(folder: str | Path, *, dtype: torch.dtype) -> ProbeRewardModel:
    """Load a probe reward model saved by `train` (the backbone in `dtype`, the head in float32)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    described = json.loads((folder / PROBE_FILE).read_text())
    language_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    model = ProbeRewardModel(_decoder_stack(language_model), tuple(described["layers"]), described["features"])
    head = load_file(str(folder / WEIGHTS_FILE))
    for name in ("scale", "weight", "bias"):
        getattr(model, name).copy_(head[name].float())
    return model.eval().requires_grad_(False)
