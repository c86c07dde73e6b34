"""SFT and reward-model training throughput and MFU on a Qwen2.5-0.5B-shaped model (random weights).

    python bench/train_throughput.py --task sft --micro-batch 16 --out bench/results/sft.json
    torchrun --nproc_per_node 2 bench/train_throughput.py --task reward --micro-batch 8 --out ...

One training step = forward, backward, gradient clipping and a fused AdamW step on fp32 master
weights under bf16 autocast (the engine's `bf16: true`). Rows are full `--seq` tokens of random ids,
as padding-free packing produces them, so no FLOP goes to padding; attention is PyTorch SDPA with a
causal mask (the flash kernel). The decoder is compiled with torch.compile. The SFT loss never holds
the [tokens × 151936] logits: a fused linear + cross-entropy computes each chunk's logits, its loss
and both gradients in the forward pass (the FLOPs the 6·N count charges to the LM head, no more).
The reward step scores chosen and rejected rows (score head on the last token) with the engine's
pairwise loss. Gradient checkpointing is off. See common.py for how MFU is counted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from training.engine.losses import pairwise_reward_loss  # noqa: E402


def _chunk_loss_and_grad(logits, labels, scale: float):
    """Return (summed cross-entropy, d loss / d logits · scale) of one chunk of bf16 logits."""
    full = logits.float()
    lse = torch.logsumexp(full, dim=-1)
    picked = full.gather(1, labels[:, None]).squeeze(1)
    grad = torch.exp(full - lse[:, None])
    vocab = torch.arange(full.size(1), device=full.device)
    grad = torch.where(vocab[None, :] == labels[:, None], grad - 1.0, grad)
    return (lse - picked).sum(), (grad * scale).to(logits.dtype)


# compiled on the GPU: one reduction and one pointwise kernel per chunk instead of eight passes in fp32
_chunk_loss_and_grad_gpu = torch.compile(_chunk_loss_and_grad, dynamic=False)
COMPILE = True  # --no-compile turns off both compiled parts (decoder and loss chunk)


class FusedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (hidden @ weightᵀ) against labels, chunk by chunk, gradients in forward.

    Each chunk's logits live only inside the loop: softmax minus one-hot is the logits' gradient,
    turned at once into the hidden states' and the weight's gradients (Liger's fused linear CE).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk: int):
        dtype = torch.bfloat16 if hidden.is_cuda else hidden.dtype
        loss_and_grad = _chunk_loss_and_grad_gpu if hidden.is_cuda and COMPILE else _chunk_loss_and_grad
        h = hidden.to(dtype)
        w = weight.to(dtype)
        count = labels.numel()
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, h.size(0), chunk):
            hs, ys = h[start : start + chunk], labels[start : start + chunk]
            chunk_loss, grad_logits = loss_and_grad(hs @ w.t(), ys, 1.0 / count)
            loss += chunk_loss
            grad_h[start : start + chunk] = grad_logits @ w
            grad_w += (grad_logits.t() @ hs).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.hidden_dtype = hidden.dtype
        return loss / count

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_out).to(ctx.hidden_dtype), grad_w * grad_out, None, None


class SFTStep(nn.Module):
    def __init__(self, model, chunk: int) -> None:
        super().__init__()
        self.model, self.chunk = model, chunk

    def forward(self, ids):
        hidden = self.model.model(input_ids=ids).last_hidden_state[:, :-1]
        labels = ids[:, 1:].reshape(-1)
        weight = self.model.lm_head.weight
        return FusedLinearCrossEntropy.apply(hidden.reshape(-1, hidden.size(-1)), weight, labels, self.chunk)


class RewardStep(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids):
        hidden = self.model.model(input_ids=ids).last_hidden_state[:, -1]
        rewards = self.model.score(hidden).squeeze(-1).float()
        chosen, rejected = rewards.chunk(2)
        return pairwise_reward_loss(chosen, rejected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["sft", "reward"], required=True)
    parser.add_argument(
        "--micro-batch", type=int, default=16, help="sequences (sft) or pairs (reward) per GPU"
    )
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=4096, help="tokens per fused cross-entropy chunk")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run on a tiny model")
    parser.add_argument("--out")
    args = parser.parse_args()

    global COMPILE
    COMPILE = not args.no_compile
    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    world = dist.get_world_size() if distributed else 1
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = common.qwen_config(args.tiny, num_labels=1, pad_token_id=0, attn_implementation="sdpa")
    if args.task == "sft":
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device)
        step_module = SFTStep(model, args.chunk)
        rows = args.micro_batch
    else:
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32).to(device)
        step_module = RewardStep(model)
        rows = 2 * args.micro_batch  # chosen and rejected
    model.train()
    if not args.no_compile and device.type == "cuda":
        model.model.compile()
    wrapped = step_module
    if distributed:
        wrapped = torch.nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index or 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    # fresh random rows each step; a token id never equals pad (0) so the last token is the scored one
    batches = [torch.randint(1, config.vocab_size, (rows, args.seq), device=device) for _ in range(4)]
    counter = iter(range(10**9))

    def step():
        ids = batches[next(counter) % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = wrapped(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    times = common.time_cuda(step, warmup=args.warmup, repeat=args.steps)
    tokens_per_step = rows * args.seq * world
    median = common.summary(times)["median_s"]
    flops = common.train_flops_per_token(model, args.seq, with_lm_head=args.task == "sft")
    flops_palm = common.train_flops_per_token(
        model, args.seq, with_lm_head=args.task == "sft", causal_half=False
    )
    result = {
        "task": args.task,
        "world_size": world,
        "micro_batch_per_gpu": args.micro_batch,
        "seq_len": args.seq,
        "compiled": not args.no_compile and device.type == "cuda",
        "parameters_total": sum(p.numel() for p in model.parameters()),
        "parameters_matmul": common.matmul_params(model, with_lm_head=args.task == "sft"),
        "step_time": common.summary(times),
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step / median,
        "tokens_per_s_per_gpu": tokens_per_step / median / world,
        "model_flops_per_token": flops,
        "model_tflops_per_gpu": flops * tokens_per_step / median / world / 1e12,
        "mfu_datasheet": flops * tokens_per_step / median / world / (common.DATASHEET_PEAK_TFLOPS * 1e12),
        "mfu_datasheet_palm_attention": flops_palm
        * tokens_per_step
        / median
        / world
        / (common.DATASHEET_PEAK_TFLOPS * 1e12),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "final_loss": float(step().detach()),
        "env": common.environment(),
    }
    if device.type == "cuda" and int(os.environ.get("RANK", "0")) == 0:
        peak = common.measured_matmul_tflops(device)
        result["measured_matmul_tflops"] = peak
        result["mfu_measured_peak"] = result["model_tflops_per_gpu"] / peak
    common.write_json(args.out, result)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
