"""`import-gguf`: turn a GGUF file (llama.cpp's format) into a save_pretrained folder every command loads.

transformers reads a GGUF (`from_pretrained(folder, gguf_file=name)`, through the `gguf` package)
and dequantizes its tensors, but refuses to `save_pretrained` the model it built that way (it counts
as quantized). So the weights are copied into a fresh model built from the same config, which saves
as any other. The special tokens come from the file's own metadata (`tokenizer.ggml.eos_token_id`,
`tokenizer.ggml.padding_token_id`, read with gguf's GGUFReader), not from the tokenizer transformers
rebuilt: some transformers versions misread them. A file without a padding token pads with EOS.
Writes `RUN_DIR/model/` atomically: weights, tokenizer (with the file's chat template), config and
generation config agreeing on EOS and pad, and engine_config.json.
"""

from __future__ import annotations

from pathlib import Path

from training.engine.checkpoint import atomic_directory
from training.engine.config import save_config
from training.engine.configs import ImportGgufConfig as Config
from training.engine.errors import EngineError
from training.engine.run_dir import Result, RunDir

TOKEN_KEYS = {  # our name -> the GGUF metadata key holding its id
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "pad": "tokenizer.ggml.padding_token_id",
}


def main(config: Config, run_dir: RunDir) -> Result:
    """Load the GGUF, copy its weights into a plain model, save model and tokenizer to RUN_DIR/model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = run_dir.input_file(config.gguf_file)
    token_ids = special_token_ids(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError) as error:  # an architecture or tokenizer transformers can't read
        raise EngineError(f"{path.name}: transformers can't load this GGUF ({error})") from None

    eos = token_ids.get("eos", tokenizer.eos_token_id)
    if eos is None:
        raise EngineError(f"{path.name}: names no EOS token ({TOKEN_KEYS['eos']}): answers could never end")
    pad = token_ids.get("pad", eos)
    for name, token_id in {"eos": eos, "pad": pad, "bos": token_ids.get("bos")}.items():
        if token_id is not None and not 0 <= token_id < len(tokenizer):
            raise EngineError(f"{path.name}: {TOKEN_KEYS[name]} is {token_id}, outside the vocabulary")
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)

    model = plain_copy(loaded, dtype=getattr(torch, config.dtype))
    del loaded
    model.config.eos_token_id = eos
    model.config.pad_token_id = pad
    model.config.bos_token_id = token_ids.get("bos")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = token_ids.get("bos")

    with atomic_directory(run_dir.final_model) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        save_config(config, folder / "engine_config.json")
    return Result(
        status="succeeded",
        metrics={
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "eos_token_id": eos,
            "pad_token_id": pad,
        },
        paths={"model": str(run_dir.final_model)},
    )


def special_token_ids(path: Path) -> dict[str, int]:
    """Return {"bos", "eos", "pad"} token ids as the GGUF's metadata states them (absent keys left out)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as error:
        raise EngineError(f"{path.name}: not a readable GGUF file ({error})") from None
    found = {}
    for name, key in TOKEN_KEYS.items():
        field = reader.get_field(key)
        if field is not None:
            found[name] = int(field.contents())
    return found


def plain_copy(loaded, *, dtype):
    """Return a model of the same class and config without the GGUF quantization marker, same weights."""
    import copy

    model_config = copy.deepcopy(loaded.config)
    del model_config.quantization_config  # a model carrying it can't be saved
    model = type(loaded)(model_config)
    model.load_state_dict(loaded.state_dict())  # strict: every weight, nothing left at its random init
    return model.to(dtype).eval()
