import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.engine import tiny
from training.engine.run_dir import RunDir


def test_tiny_model_loads_and_generates_offline(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=5, do_sample=False)

    assert model.config.model_type == "qwen2"
    assert output.shape[1] > prompt["input_ids"].shape[1]


def test_tokenizer_round_trips_any_text(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = "Ünïcode, emoji 🙂 and words never seen: zyxwvut"

    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_llama_shape_and_same_seed_gives_same_weights(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        tiny.main(tiny.Config(architecture="llama", num_layers=1), RunDir(folder))

    model_a = AutoModelForCausalLM.from_pretrained(first / "model")
    model_b = AutoModelForCausalLM.from_pretrained(second / "model")
    assert model_a.config.model_type == "llama"
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_saved_tokenizer_tokenizes_like_the_one_built(tiny_model):
    # a qwen2 folder reloads as Qwen2Tokenizer, which rebuilds its own pipeline around the vocabulary
    built = tiny.build_tokenizer(vocab_size=tiny.Config().vocab_size)
    loaded = AutoTokenizer.from_pretrained(tiny_model)
    text = "In 2024 the café sold 365 cups\n\nof tea, didn't it?  Ünïcode ✓ 12:30"
    assert loaded(text)["input_ids"] == built(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
