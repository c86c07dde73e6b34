"""`score`: score preference pairs with a reward model, and say how often it agrees with them.

Input `RUN_DIR/<pairs_file>`: pairs as the ranking export writes them, `{"prompt", "chosen",
"rejected", "margin"?, "group"?}`, optional `"id"` and `"task"` (copied to the output). Each
conversation is rendered and scored as `reward` trains it (reward_model.py: at the answer's
end-of-turn token, where PPO reads it; a pair longer than max_length shortened the same way), or
by the probe a folder may hold instead (probe.py).
Output `RUN_DIR/scores.jsonl`, one line per pair in input order:
    {"id"?, "task"?, "group", "chosen_score", "rejected_score", "margin", "agrees"}
with margin = chosen_score - rejected_score (the model's, not the labelled margin) and agrees =
chosen_score > rejected_score; a pair without group is its own, "line-<n>". result.json `metrics`:
`pairs`, `groups`, `pairwise_accuracy`, `group_accuracy_mean`, `group_accuracy_at_least_half`,
`mean_margin`, `truncated_pairs`; its `histogram.margin` counts the margins in fixed bins.
Pairs are scored longest first, in batches of `batch_size`; scores.jsonl is written whole at the end
(through a `.partial` file renamed into place). SIGTERM stops between batches with nothing written,
and a rerun starts over: scoring is one forward pass per pair. Runs on rank 0 only, like `sample`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import torch

from training.engine.configs import ScoreConfig as Config
from training.engine.data import read_preference_pairs
from training.engine.reward_model import (
    load_reward_model,
    pad_with_eos_if_missing,
    score_rows,
    tokenize_pairs,
)
from training.engine.run_dir import MetricsLog, Result, RunDir, StopSignal, is_main_process

OUTPUT_FILE = "scores.jsonl"
# bin edges of the margin histogram: bins are low < margin <= high, open at both ends, so a margin
# of 0 (a tie: not agreeing) falls in (-0.5, 0] and the bins from (0, 0.5] up count the agreeing pairs
MARGIN_BIN_EDGES = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0)


def main(config: Config, run_dir: RunDir) -> Result:
    """Score every pair with the reward model; write scores.jsonl and the agreement figures."""
    from transformers import AutoTokenizer

    from training.engine import probe

    output = run_dir.resolve(OUTPUT_FILE)
    if not is_main_process():
        return Result(status="succeeded", paths={"scores": str(output)})
    stop = StopSignal().install()
    pairs = read_preference_pairs(run_dir.input_file(config.pairs_file))
    source = run_dir.model_source(config.model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    pad_with_eos_if_missing(tokenizer)
    rows, truncated = tokenize_pairs(pairs, tokenizer, config.max_length, answer_starts=probe.is_probe(source))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = load_reward_model(source, dtype=dtype, pad_token_id=tokenizer.pad_token_id).to(device).eval()

    metrics = MetricsLog(run_dir.metrics_file, resume_step=0)  # a rerun starts over
    # longest pairs first, so batches hold pairs of like length (little padding) and a batch too big
    # for the GPU fails at once; the lines are written in input order at the end
    order = sorted(
        range(len(rows)), key=lambda i: -max(len(rows[i]["chosen_ids"]), len(rows[i]["rejected_ids"]))
    )
    scores: dict[int, tuple[float, float]] = {}
    for start in range(0, len(order), config.batch_size):
        if stop.requested:
            return Result(status="stopped", step=start)
        indices = order[start : start + config.batch_size]
        with torch.no_grad():
            chosen, rejected = score_rows(model, [rows[i] for i in indices], pad_token_id=tokenizer.pad_token_id,
                                          device=device)
        scores.update(zip(indices, zip(chosen.tolist(), rejected.tolist(), strict=True), strict=True))
        metrics.log(len(scores), pairs_done=len(scores), pairs_total=len(pairs))

    lines = [score_line(pair, *scores[index]) for index, pair in enumerate(pairs)]
    partial = output.with_name(output.name + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, output)  # whole or absent: the web side never reads half a file

    return Result(
        status="succeeded",
        metrics={**agreement_figures(lines), "truncated_pairs": truncated},
        paths={"scores": str(output)},
        step=len(pairs),
        histogram={"margin": margin_histogram([line["margin"] for line in lines])},
    )


def score_line(pair: dict, chosen_score: float, rejected_score: float) -> dict:
    """Return the scores.jsonl line of one pair: its id / task if any, group, scores, margin, agrees."""
    line = {key: pair[key] for key in ("id", "task") if key in pair}
    line.update(
        group=pair["group"],
        chosen_score=chosen_score,
        rejected_score=rejected_score,
        margin=chosen_score - rejected_score,
        agrees=chosen_score > rejected_score,
    )
    return line


def agreement_figures(lines: list[dict]) -> dict[str, float]:
    """Return how often the scores order the pairs as labelled, over pairs and over groups.

    pairwise_accuracy: share of pairs whose chosen answer scores higher. Per group (one ranking),
    the share of its pairs ordered right; group_accuracy_mean: the mean of those shares;
    group_accuracy_at_least_half: the share of groups ordered right in at least half their pairs.
    mean_margin: the mean of chosen_score - rejected_score.
    """
    by_group: dict[str, list[bool]] = defaultdict(list)
    for line in lines:
        by_group[line["group"]].append(line["agrees"])
    per_group = [sum(agrees) / len(agrees) for agrees in by_group.values()]
    return {
        "pairs": len(lines),
        "groups": len(by_group),
        "pairwise_accuracy": sum(line["agrees"] for line in lines) / len(lines),
        "group_accuracy_mean": sum(per_group) / len(per_group),
        "group_accuracy_at_least_half": sum(share >= 0.5 for share in per_group) / len(per_group),
        "mean_margin": sum(line["margin"] for line in lines) / len(lines),
    }


def margin_histogram(margins: list[float]) -> list[dict]:
    """Count margins in MARGIN_BIN_EDGES' bins: [{"low", "high", "count"}], low < margin <= high, null = unbounded."""
    bounds = [None, *MARGIN_BIN_EDGES, None]
    bins = [{"low": low, "high": high, "count": 0} for low, high in zip(bounds, bounds[1:], strict=False)]
    for margin in margins:
        index = sum(margin > edge for edge in MARGIN_BIN_EDGES)
        bins[index]["count"] += 1
    return bins
