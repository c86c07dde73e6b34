"""import-gguf on a tiny GGUF written here with gguf's GGUFWriter: a 2-layer llama, Q8_0 matrices,
make-tiny's byte-level BPE as `tokenizer.ggml.model = "gpt2"` metadata, SmolLM2's chat template."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.engine.helpers import write_config
from training.engine import gguf_import, tiny
from training.engine.__main__ import main as cli_main
from training.engine.run_dir import RunDir

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 32, 64, 2, 4, 2


def write_tiny_gguf(path: Path, *, eos: str = "<|im_end|>", pad: str | None = "<|endoftext|>") -> Path:
    """Write a random tiny llama with make-tiny's tokenizer as a GGUF file, as llama.cpp lays one out."""
    import gguf

    tokenizer = tiny.build_tokenizer(vocab_size=512)
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    special = {tiny.PAD, tiny.SYSTEM_START, tiny.TURN_END}
    merges = [
        " ".join(merge) for merge in json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    ]
    head_dim = HIDDEN // HEADS

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")  # make-tiny's split pattern is Qwen2's
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in special else 1 for token in tokens])  # 3: control
    writer.add_token_merges(merges)
    writer.add_eos_token_id(vocab[eos])
    if pad is not None:
        writer.add_pad_token_id(vocab[pad])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    rng = np.random.default_rng(0)

    def add(name: str, *shape: int, quantize: bool = True) -> None:
        data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if quantize:  # Q8_0 as in real files: transformers dequantizes it on load
            q8 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(data, q8), raw_dtype=q8)
        else:
            writer.add_tensor(name, data)

    add("token_embd.weight", len(tokens), HIDDEN)
    add("output_norm.weight", HIDDEN, quantize=False)
    for layer in range(LAYERS):
        add(f"blk.{layer}.attn_norm.weight", HIDDEN, quantize=False)
        add(f"blk.{layer}.attn_q.weight", HEADS * head_dim, HIDDEN)
        add(f"blk.{layer}.attn_k.weight", KV_HEADS * head_dim, HIDDEN)
        add(f"blk.{layer}.attn_v.weight", KV_HEADS * head_dim, HIDDEN)
        add(f"blk.{layer}.attn_output.weight", HIDDEN, HEADS * head_dim)
        add(f"blk.{layer}.ffn_norm.weight", HIDDEN, quantize=False)
        add(f"blk.{layer}.ffn_gate.weight", FFN, HIDDEN)
        add(f"blk.{layer}.ffn_up.weight", FFN, HIDDEN)
        add(f"blk.{layer}.ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_imported_folder_loads_and_computes_the_ggufs_logits(tmp_path):
    run = write_config(tmp_path / "run", gguf_file="tiny.gguf")
    gguf_file = write_tiny_gguf(run / "tiny.gguf")

    result = gguf_import.main(gguf_import.Config(gguf_file="tiny.gguf"), RunDir(run))

    model = AutoModelForCausalLM.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    from_gguf = AutoModelForCausalLM.from_pretrained(run, gguf_file=gguf_file.name, dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, from_gguf(ids).logits, rtol=0, atol=0)
    assert result.status == "succeeded" and result.metrics["parameters"] == from_gguf.num_parameters()
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == LAYERS
    assert tokenizer.decode(tokenizer("Hello, world!")["input_ids"]) == "Hello, world!"
    assert tokenizer.chat_template == CHATML
    assert json.loads((run / "model" / "engine_config.json").read_text())["gguf_file"] == "tiny.gguf"


@pytest.mark.parametrize(
    ("pad", "expected_pad"),
    [("<|endoftext|>", "<|endoftext|>"), (None, "<|im_end|>")],  # no padding token in the file: pad with EOS
    ids=["pad-in-metadata", "no-pad-in-metadata"],
)
def test_eos_and_pad_come_from_the_gguf_metadata(pad, expected_pad, tmp_path):
    gguf_file = write_tiny_gguf(tmp_path / "tiny.gguf", pad=pad)
    run = write_config(tmp_path / "run", gguf_file=str(gguf_file))

    code = cli_main(["import-gguf", "--run-dir", str(run)])

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    eos_id, pad_id = tokenizer.convert_tokens_to_ids(["<|im_end|>", expected_pad])
    assert code == 0
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", expected_pad)
    assert (model.config.eos_token_id, model.config.pad_token_id) == (eos_id, pad_id)
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (eos_id, pad_id)


def test_bfloat16_halves_the_saved_weights(tmp_path):
    run = write_config(tmp_path / "run")
    write_tiny_gguf(run / "tiny.gguf")

    gguf_import.main(gguf_import.Config(gguf_file="tiny.gguf", dtype="bfloat16"), RunDir(run))

    assert AutoModelForCausalLM.from_pretrained(run / "model", dtype="auto").dtype == torch.bfloat16


def test_a_missing_or_broken_gguf_is_a_clear_error(tmp_path, capsys):
    run = write_config(tmp_path / "run", gguf_file="missing.gguf")
    assert cli_main(["import-gguf", "--run-dir", str(run)]) == 2
    assert "missing.gguf does not exist" in capsys.readouterr().err

    (run / "broken.gguf").write_bytes(b"not a gguf file")
    write_config(run, gguf_file="broken.gguf")
    assert cli_main(["import-gguf", "--run-dir", str(run)]) == 2
    assert "error: broken.gguf: not a readable GGUF file" in capsys.readouterr().err
