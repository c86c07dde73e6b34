"""Rollout generation: the engine's static-cache CUDA-graph decoder against plain `model.generate`.

    python bench/rollout_speed.py --batch 64 128 --prompt-len 512 --new-tokens 512 --out bench/results/rollout.json

Same model (Qwen2.5-0.5B shape, random weights, bf16), same left-padded prompts, same sampling
(temperature 0.7), both forced to produce exactly --new-tokens tokens (no EOS), timed side by side
in one process: median of --repeat runs after one warm-up run each (the warm-up captures the graph).
Also checks that greedy decoding of both agrees token for token on the first tokens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from training.engine.rollout import RolloutEngine, SamplingParams, plain_generate  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up: allocations, cuBLAS handles, graph capture
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    config = common.qwen_config(args.tiny, attn_implementation="sdpa")
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    model.generation_config.eos_token_id = None
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.7)
    kwargs = dict(eos_token_ids=[], pad_token_id=0)
    results = []
    for batch in args.batch:
        ids = torch.randint(1, config.vocab_size, (batch, args.prompt_len), device=device)
        mask = torch.ones_like(ids)
        # a ragged batch, as real prompts are: row i loses i % 64 tokens of left padding
        for row in range(batch):
            mask[row, : row % 64] = 0
        ids = ids.masked_fill(mask == 0, 0)
        engine = RolloutEngine(model, max_prompt_len=args.prompt_len)

        greedy = SamplingParams(max_new_tokens=16, temperature=0)
        ours = RolloutEngine(model, max_prompt_len=args.prompt_len).generate(ids, mask, greedy, **kwargs)
        theirs = plain_generate(model, ids, mask, greedy, **kwargs)
        agreement_first = (ours[:, 0] == theirs[:, 0]).float().mean().item()
        agreement_16 = (ours == theirs).float().mean().item()

        plain = timed(lambda i=ids, m=mask: plain_generate(model, i, m, params, **kwargs), args.repeat)
        fast = timed(lambda i=ids, m=mask, e=engine: e.generate(i, m, params, **kwargs), args.repeat)
        new_tokens = batch * args.new_tokens
        plain_s, fast_s = common.summary(plain), common.summary(fast)
        results.append(
            {
                "batch": batch,
                "prompt_len": args.prompt_len,
                "new_tokens": args.new_tokens,
                "plain_generate": plain_s,
                "fast_rollout": fast_s,
                "plain_tokens_per_s": new_tokens / plain_s["median_s"],
                "fast_tokens_per_s": new_tokens / fast_s["median_s"],
                "speedup": plain_s["median_s"] / fast_s["median_s"],
                "greedy_agreement_first_token": agreement_first,
                "greedy_agreement_16_tokens": agreement_16,
            }
        )
        print(results[-1], flush=True)
        del engine
        if device.type == "cuda":
            torch.cuda.empty_cache()
    common.write_json(args.out, {"dtype": str(dtype), "results": results, "env": common.environment()})


if __name__ == "__main__":
    main()
