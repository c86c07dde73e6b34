"""The fast rollout loop samples what transformers' generate would, on CPU and tiny models."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from training.engine.rollout import RolloutEngine, SamplingParams, plain_generate, sample_next

SHAPE = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def left_padded_prompts():
    ids = torch.randint(3, 97, (3, 7))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    mask[1, :1] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("config", [Qwen2Config(tie_word_embeddings=True, **SHAPE), LlamaConfig(**SHAPE)])
def test_greedy_rollout_matches_transformers_generate_on_left_padded_prompts(config):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    ids, mask = left_padded_prompts()
    params = SamplingParams(max_new_tokens=12, temperature=0)
    expected = plain_generate(model, ids, mask, params, eos_token_ids=[], pad_token_id=0)
    # a longer max_prompt_len than the batch needs: the static cache has unused slots
    engine = RolloutEngine(model, max_prompt_len=10)
    assert torch.equal(engine.generate(ids, mask, params, eos_token_ids=[], pad_token_id=0), expected)


def test_tokens_after_eos_are_padding():
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**SHAPE)).eval()
    ids, mask = left_padded_prompts()
    params = SamplingParams(max_new_tokens=40, temperature=1.0)
    eos = list(range(3, 40))  # most of the vocabulary: every row stops early
    out = RolloutEngine(model, max_prompt_len=7).generate(
        ids, mask, params, eos_token_ids=eos, pad_token_id=0
    )
    for row in out.tolist():
        end = next(i for i, t in enumerate(row) if t in eos)
        assert all(t == 0 for t in row[end + 1 :])


def test_sampling_follows_the_distribution_and_respects_top_k():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).repeat(20000, 1)
    counts = torch.bincount(sample_next(logits, SamplingParams(max_new_tokens=1)), minlength=3) / 20000
    assert torch.allclose(counts, torch.tensor([0.1, 0.2, 0.7]), atol=0.02)
    top1 = sample_next(logits, SamplingParams(max_new_tokens=1, top_k=1))
    assert (top1 == 2).all()
    # top_p 0.75: 0.7 alone is short of 0.75, so 0.2 joins; 0.1 never appears
    nucleus = sample_next(logits, SamplingParams(max_new_tokens=1, top_p=0.75))
    assert (nucleus != 0).all() and (nucleus == 1).any()


def test_rollout_runs_lora_adapters():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(Qwen2Config(**SHAPE))
    # init_lora_weights=False: random adapters that change the output, so skipping them would show
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)).eval()
    ids, mask = left_padded_prompts()
    params = SamplingParams(max_new_tokens=8, temperature=0)
    expected = plain_generate(model, ids, mask, params, eos_token_ids=[], pad_token_id=0)
    with model.disable_adapter():
        without = plain_generate(model, ids, mask, params, eos_token_ids=[], pad_token_id=0)
    assert not torch.equal(expected, without)
    engine = RolloutEngine(model, max_prompt_len=7)
    assert torch.equal(engine.generate(ids, mask, params, eos_token_ids=[], pad_token_id=0), expected)


def test_the_generate_fallback_ignores_sampling_settings_saved_with_the_model():
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(tie_word_embeddings=True, **SHAPE)).eval()
    ids, mask = left_padded_prompts()
    greedy = SamplingParams(max_new_tokens=12, temperature=0)
    plain_greedy = plain_generate(model, ids, mask, greedy, eos_token_ids=[], pad_token_id=0)
    sample = SamplingParams(max_new_tokens=12, temperature=1.0)
    torch.manual_seed(1)
    plain_sampled = plain_generate(model, ids, mask, sample, eos_token_ids=[], pad_token_id=0)

    # a checkpoint's generation_config.json may carry its own settings (Qwen2.5-Instruct ships
    # repetition_penalty 1.05, top_k 20); generate would fill our unset fields from them
    model.generation_config.repetition_penalty = 50.0
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.top_k = 1

    assert torch.equal(plain_generate(model, ids, mask, greedy, eos_token_ids=[], pad_token_id=0), plain_greedy)
    torch.manual_seed(1)
    assert torch.equal(plain_generate(model, ids, mask, sample, eos_token_ids=[], pad_token_id=0), plain_sampled)
