"""`make-tiny`: build a tiny causal LM and its tokenizer locally, with no download.

For tests, the demo and CI. The tokenizer is a byte-level BPE trained here on a small built-in corpus
(every string encodes, nothing is unknown); its ChatML template also marks the assistant's tokens
with `{% generation %}` (sft does not need the markers, see chat_masks.py; transformers'
`return_assistant_tokens_mask` does, and tests check both agree). Writes `RUN_DIR/model/`.
"""

from __future__ import annotations

from training.engine.checkpoint import atomic_directory
from training.engine.config import save_config
from training.engine.configs import TinyConfig as Config
from training.engine.run_dir import Result, RunDir

SYSTEM_START, TURN_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"

# ChatML, as Qwen2 uses it. The assistant mask covers the answer and its <|im_end|> (so the model
# learns to stop) but not the role header nor the newline after it, which the template adds anyway.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Enough English for BPE to learn useful merges; byte-level fallback covers everything else.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "You are a helpful assistant. Answer the question briefly and politely.",
    "What is the capital of France? The capital of France is Paris.",
    "Please write a short poem about the sea and the wind.",
    "Thank you for your help, that answer was very good.",
    "I do not know the answer to that question, but I can try to find out.",
    "Here is a list of three things: apples, bread and milk.",
    "The model answers the user, and the user ranks the answers from best to worst.",
    "Reinforcement learning from human feedback trains a reward model on rankings.",
    "A good answer is correct, helpful, honest and harmless.",
    "How many days are there in a week? There are seven days in a week.",
    "Tell me a story about a cat who learned to read.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000.",
    "Summarize the following text in one sentence.",
    "The weather today is sunny with a light breeze in the afternoon.",
    "Can you explain how a computer stores numbers in memory?",
    "Yes, of course. No, I am sorry. Maybe later. Hello! Goodbye.",
    "system user assistant",
]


def main(config: Config, run_dir: RunDir) -> Result:
    """Train the tokenizer, initialise the model, save both to RUN_DIR/model."""
    import torch

    tokenizer = build_tokenizer(vocab_size=config.vocab_size)
    torch.manual_seed(config.seed)
    model = build_model(config, tokenizer)
    with atomic_directory(run_dir.final_model) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        save_config(config, folder / "engine_config.json")
    parameters = sum(p.numel() for p in model.parameters())
    return Result(
        status="succeeded",
        metrics={"parameters": parameters, "vocab_size": len(tokenizer)},
        paths={"model": str(run_dir.final_model)},
    )


# transformers' qwen2/tokenization_qwen2.py PRETOKENIZE_REGEX
QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_tokenizer(*, vocab_size: int):
    """Train a byte-level BPE on CORPUS and wrap it as a transformers tokenizer with CHAT_TEMPLATE.

    The pipeline is Qwen2's (NFC, its split pattern with one token per digit, byte level): transformers
    reloads a qwen2 model's tokenizer as Qwen2Tokenizer, which rebuilds that pipeline around the saved
    vocabulary, so the tokenizer in hand and the one every command loads back tokenize alike.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, SYSTEM_START, TURN_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=TURN_END,  # generation ends with the assistant's turn
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        padding_side="right",
    )


def build_model(config: Config, tokenizer):
    """Initialise a randomly weighted causal LM of the configured shape."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config_class = Qwen2Config if config.architecture == "qwen2" else LlamaConfig
    model_config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
