"""Fast batched sampling for PPO rollouts and the `sample` command.

`model.generate` spends most of a decode step in Python: a 24-layer model launches a few hundred
small kernels per token, and at rollout batch sizes the GPU waits on the CPU. Here a decode step
reuses the model's own modules (projections, norms, MLP, rotary embedding — so LoRA layers work
too) but keeps its KV cache in preallocated tensors and does all bookkeeping on the device, which
makes the step a fixed sequence of kernels: on CUDA it is captured once as a CUDA graph and
replayed for every token. The graph reads the parameters in place, so optimizer steps are seen by
the next rollout without recapture.

Decoder-only Llama-shaped models (Llama, Qwen2, Qwen3, Mistral without a sliding window) take the
fast path; anything else falls back to `model.generate`. On CPU the same loop runs eagerly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FAST_MODEL_TYPES = {"llama", "qwen2", "qwen3", "mistral"}


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 keeps the whole vocabulary
    top_p: float = 1.0  # 1.0 keeps the whole vocabulary


def _decoder(model):
    """Return the underlying HF causal LM, unwrapping DDP/accelerate and peft wrappers."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def supports_fast_path(model, total_len: int) -> bool:
    """Say whether the hand-rolled decode loop can run this model for ``total_len`` positions."""
    lm = _decoder(model)
    cfg = lm.config
    if cfg.model_type not in FAST_MODEL_TYPES or not hasattr(lm, "model"):
        return False
    if "sliding_attention" in (getattr(cfg, "layer_types", None) or []):
        return False
    window = getattr(cfg, "sliding_window", None)
    uses_window = getattr(cfg, "use_sliding_window", cfg.model_type != "qwen2")
    return not (window and uses_window and window < total_len)


def sample_next(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Draw one token per row from float logits [B, V]; no host sync, so it can live in a CUDA graph."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    if params.top_k:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token once the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= params.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    # argmax(p / Exp(1)) samples from p (exponential race) without torch.multinomial's sync
    return (probs / torch.empty_like(probs).exponential_(1)).argmax(dim=-1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RolloutEngine:
    """Generate continuations of left-padded prompts with a static KV cache (and a CUDA graph on GPU).

    One engine serves one model; the cache and graph are kept for the last (batch, length) shape
    and rebuilt when it changes. Keep ``max_prompt_len`` fixed across calls to reuse them.
    """

    def __init__(self, model, *, max_prompt_len: int, use_cuda_graph: bool | None = None):
        self.model = model
        self.max_prompt_len = max_prompt_len
        device = next(model.parameters()).device
        self.use_cuda_graph = device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
        self._shape: tuple | None = None
        self._graph: torch.cuda.CUDAGraph | None = None

    # -- the model, one layer at a time -------------------------------------------------------
    def _forward(self, tokens, positions, slots, key_valid, causal):
        """Run the decoder on ``tokens`` [B, T] written to cache ``slots`` [T]; return last hidden [B, D].

        ``key_valid`` [B, S] says which cache slots hold real tokens; ``causal`` [T, S] which slots
        each query may see.
        """
        lm = _decoder(self.model)
        body = lm.model
        h = body.embed_tokens(tokens)
        cos, sin = body.rotary_emb(h, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        # a left-padding query sees no real key; let each query see its own slot so no softmax row is
        # all -inf (built by comparison: indexing with a Python True would copy from the host in a graph)
        own_slot = torch.arange(key_valid.size(1), device=tokens.device)[None, :] == slots[:, None]
        mask = (key_valid[:, None, None, :] & causal[None, None]) | own_slot[None, None]
        bsz, steps = tokens.shape
        for i, layer in enumerate(body.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(bsz, steps, -1, attn.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(bsz, steps, -1, attn.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(bsz, steps, -1, attn.head_dim).transpose(1, 2)
            if hasattr(attn, "q_norm"):  # Qwen3 normalises q and k per head
                q, k = attn.q_norm(q), attn.k_norm(k)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            self.k_cache[i].index_copy_(2, slots, k.to(self.k_cache.dtype))
            self.v_cache[i].index_copy_(2, slots, v.to(self.v_cache.dtype))
            out = F.scaled_dot_product_attention(
                q, self.k_cache[i], self.v_cache[i], attn_mask=mask, scale=attn.scaling, enable_gqa=True
            )
            h = h + attn.o_proj(out.transpose(1, 2).reshape(bsz, steps, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return body.norm(h[:, -1])

    def _logits(self, hidden):
        return _decoder(self.model).lm_head(hidden).float()

    # -- buffers and the graph ---------------------------------------------------------------
    def _allocate(self, bsz: int, total: int, device, dtype) -> None:
        cfg = _decoder(self.model).config
        layers = cfg.num_hidden_layers
        heads = cfg.num_key_value_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.k_cache = torch.zeros(layers, bsz, heads, total, head_dim, device=device, dtype=dtype)
        self.v_cache = torch.zeros_like(self.k_cache)
        self.key_valid = torch.zeros(bsz, total, dtype=torch.bool, device=device)
        self.all_keys = torch.ones(1, total, dtype=torch.bool, device=device)
        # per-step state, updated in place so a captured graph can replay it
        self.token = torch.zeros(bsz, 1, dtype=torch.long, device=device)
        self.position = torch.zeros(bsz, 1, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.finished = torch.zeros(bsz, dtype=torch.bool, device=device)
        self._graph = None

    def _decode_step(self, params: SamplingParams, eos: torch.Tensor, pad_id: int, out: torch.Tensor):
        """Feed ``self.token``, sample the next one into ``out[:, step]``, advance all state."""
        self.key_valid.index_fill_(1, self.slot, True)
        hidden = self._forward(self.token, self.position, self.slot, self.key_valid, self.all_keys)
        nxt = sample_next(self._logits(hidden), params)
        nxt = torch.where(self.finished, torch.full_like(nxt, pad_id), nxt)
        out.index_copy_(1, self.step, nxt[:, None])
        self.finished |= torch.isin(nxt, eos)
        self.token.copy_(nxt[:, None])
        self.position.add_(1)
        self.slot.add_(1)
        self.step.add_(1)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        params: SamplingParams,
        *,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        check_every: int = 16,
    ) -> torch.Tensor:
        """Return sampled continuations [B, max_new_tokens] of left-padded prompts, padded after EOS.

        ``eos_token_ids`` empty means: always generate ``max_new_tokens`` tokens.
        """
        bsz, prompt_len = input_ids.shape
        if prompt_len > self.max_prompt_len:
            raise ValueError(f"prompt length {prompt_len} exceeds max_prompt_len {self.max_prompt_len}")
        if not attention_mask[:, -1].all():
            raise ValueError("prompts must be left-padded (the last column must be real tokens)")
        model = self.model
        was_training = model.training
        model.eval()
        try:
            return self._generate(input_ids, attention_mask, params, eos_token_ids, pad_token_id, check_every)
        finally:
            model.train(was_training)

    def _generate(self, input_ids, attention_mask, params, eos_token_ids, pad_token_id, check_every):
        device = input_ids.device
        bsz, prompt_len = input_ids.shape
        total = self.max_prompt_len + params.max_new_tokens
        dtype = next(_decoder(self.model).parameters()).dtype
        shape = (bsz, total, dtype, params, device, tuple(eos_token_ids), pad_token_id)
        if shape != self._shape:
            self._allocate(bsz, total, device, dtype)
            self._out = torch.full(
                (bsz, params.max_new_tokens), pad_token_id, dtype=torch.long, device=device
            )
            self._eos = torch.tensor(list(eos_token_ids) or [-1], dtype=torch.long, device=device)
            self._shape = shape
        eos = self._eos

        # prefill: the prompt occupies slots [0, prompt_len); generated tokens follow
        self.key_valid.zero_()
        self.key_valid[:, :prompt_len] = attention_mask.bool()
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        slots = torch.arange(prompt_len, device=device)
        causal = slots[:, None] >= torch.arange(total, device=device)[None, :]
        hidden = self._forward(input_ids, positions, slots, self.key_valid, causal)
        first = sample_next(self._logits(hidden), params)

        self._out.fill_(pad_token_id)
        self._out[:, 0] = first
        self.finished.copy_(torch.isin(first, eos))
        self.token.copy_(first[:, None])
        self.position.copy_(positions[:, -1:] + 1)
        self.slot.fill_(prompt_len)
        self.step.fill_(1)

        run_step = self._replay_or_capture(params, eos, pad_token_id) if self.use_cuda_graph else None
        for i in range(1, params.max_new_tokens):
            if run_step is not None:
                run_step()
            else:
                self._decode_step(params, eos, pad_token_id, self._out)
            if i % check_every == 0 and bool(self.finished.all()):
                break
        return self._out.clone()

    def _replay_or_capture(self, params, eos, pad_token_id):
        if self._graph is None:
            # warm up on a side stream (cuBLAS handles, lazy inits), then restore the state and capture
            saved = [t.clone() for t in self._state()]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._decode_step(params, eos, pad_token_id, self._out)
            torch.cuda.current_stream().wait_stream(side)
            for t, s in zip(self._state(), saved, strict=True):
                t.copy_(s)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._decode_step(params, eos, pad_token_id, self._out)
        return self._graph.replay

    def _state(self):
        return [
            self.k_cache,
            self.v_cache,
            self.key_valid,
            self.token,
            self.position,
            self.slot,
            self.step,
            self.finished,
            self._out,
        ]


def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    params: SamplingParams,
    *,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    engine: RolloutEngine | None = None,
) -> torch.Tensor:
    """Sample continuations [B, max_new_tokens] for left-padded prompts, on the fast path when possible."""
    total = input_ids.size(1) + params.max_new_tokens
    if engine is not None or supports_fast_path(model, total):
        engine = engine or RolloutEngine(model, max_prompt_len=input_ids.size(1))
        return engine.generate(
            input_ids, attention_mask, params, eos_token_ids=eos_token_ids, pad_token_id=pad_token_id
        )
    return plain_generate(
        model, input_ids, attention_mask, params, eos_token_ids=eos_token_ids, pad_token_id=pad_token_id
    )


@torch.no_grad()
def plain_generate(
    model, input_ids, attention_mask, params: SamplingParams, *, eos_token_ids, pad_token_id
) -> torch.Tensor:
    """Sample with transformers' ``generate``: the fallback, and the baseline the benchmark compares to."""
    lm = model
    while hasattr(lm, "module"):  # DDP / accelerate wrappers; a peft model generates as itself
        lm = lm.module
    # generate fills every setting we leave unset from the model's generation_config (a checkpoint's
    # top_k, repetition_penalty…), so each one that shapes the distribution is set here, neutral
    # unless SamplingParams asks for it: the fallback samples what the rollout engine samples
    sampling = {
        "do_sample": params.temperature > 0,
        "temperature": params.temperature if params.temperature > 0 else 1.0,
        "top_k": params.top_k or 0,
        "top_p": params.top_p,
        "min_p": 0.0,
        "typical_p": 1.0,
        "epsilon_cutoff": 0.0,
        "eta_cutoff": 0.0,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
    }
    was_training = lm.training
    lm.eval()
    try:
        out = lm.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=0 if eos_token_ids else params.max_new_tokens,
            eos_token_id=list(eos_token_ids) or None,
            pad_token_id=pad_token_id,
            **sampling,
        )
    finally:
        lm.train(was_training)
    new = out[:, input_ids.size(1) :]
    if new.size(1) < params.max_new_tokens:
        new = F.pad(new, (0, params.max_new_tokens - new.size(1)), value=pad_token_id)
    return new
