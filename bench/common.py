"""Shared pieces of the GPU benchmarks: the model shape, FLOP counting, timing, output.

MFU (model FLOPs utilisation) = model FLOPs per second / peak. Model FLOPs of a training step:
  6 · N_matmul · tokens            forward (2) + backward (4) of every weight matmul, where N_matmul
                                   counts the decoder's linear weights, plus the LM head (vocab ×
                                   hidden, tied to the embedding) for the causal-LM loss; the
                                   embedding lookup does no matmul and is not counted;
+ 6 · layers · hidden · seq · tokens  attention scores and values (QKᵀ and AV: 2·2·seq·hidden per
                                   token and layer forward, ×3 with backward), halved because a
                                   causal mask needs only the lower triangle (PaLM's appendix B
                                   counts the full square, 12·L·H·Q·T: we report that too).
Recomputation (none here: gradient checkpointing is off) and optimizer arithmetic are not counted.
Peak: 989.4 TFLOP/s, dense bf16 on an H100/H200 SXM (datasheet), and the bf16 matmul rate this
run measures on the card itself (8192³ products, median).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

DATASHEET_PEAK_TFLOPS = 989.4

# Qwen2.5-0.5B's config.json, written out (no download on the GPU machine).
QWEN25_05B = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    tie_word_embeddings=True,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    hidden_act="silu",
)
# the same shape, a few hundred times smaller, for a CPU dry run of every script
TINY = dict(
    QWEN25_05B,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    vocab_size=512,
)


def qwen_config(tiny: bool, **extra):
    from transformers import Qwen2Config

    return Qwen2Config(**(TINY if tiny else QWEN25_05B), **extra)


def matmul_params(model, *, with_lm_head: bool) -> int:
    """Count the weights that take part in matmuls: decoder linears (+ the LM head)."""
    cfg = model.config
    body = getattr(model, model.base_model_prefix)
    n = sum(m.weight.numel() for m in body.layers.modules() if isinstance(m, torch.nn.Linear))
    if with_lm_head:
        n += cfg.vocab_size * cfg.hidden_size
    return n


def train_flops_per_token(model, seq_len: int, *, with_lm_head: bool, causal_half: bool = True) -> float:
    cfg = model.config
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    return 6 * matmul_params(model, with_lm_head=with_lm_head) + (attention / 2 if causal_half else attention)


def measured_matmul_tflops(device) -> float:
    """Median bf16 rate of an 8192³ product on random data (METHOD.md: never time zeros)."""
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    times = time_cuda(lambda: a @ b, warmup=5, repeat=30)
    return 2 * n**3 / statistics.median(times) / 1e12


def time_cuda(fn, *, warmup: int, repeat: int) -> list[float]:
    """Seconds per call, one event pair per call, after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def environment() -> dict:
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["gpus"] = torch.cuda.device_count()
    return env


def write_json(path: str | None, data: dict) -> None:
    text = json.dumps(data, indent=2)
    print(text)
    if path and int(os.environ.get("RANK", "0")) == 0:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
