import json

from tests.engine.helpers import read_jsonl, run_engine_cli, write_config, write_jsonl
from training.engine import sampling
from training.engine.data import check_messages
from training.engine.run_dir import RunDir

PROMPTS = [
    {"messages": [{"role": "user", "content": "Hello"}], "id": "p1"},
    {"context": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}]},
    {"messages": [{"role": "user", "content": "What is the sea?"}], "id": 3},
]


def test_sample_writes_ranking_tasks_with_k_answers_per_prompt(tiny_model, tmp_path):
    write_config(
        tmp_path, model_path=str(tiny_model), num_responses=3, max_new_tokens=8, batch_size=2, generator="v1"
    )
    write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)

    process = run_engine_cli("sample", tmp_path)

    assert process.returncode == 0, process.stderr
    tasks = read_jsonl(tmp_path / "samples.jsonl")
    assert len(tasks) == len(PROMPTS)
    for task, prompt in zip(tasks, PROMPTS, strict=True):
        assert task["context"] == prompt.get("messages", prompt.get("context"))
        assert check_messages(task["context"], where="context")
        assert len(task["responses"]) == 3
        for response in task["responses"]:
            assert set(response) == {"content", "generator"}
            assert isinstance(response["content"], str) and response["generator"] == "v1"
    assert [task.get("id") for task in tasks] == ["p1", None, 3]
    assert json.loads((tmp_path / "result.json").read_text())["metrics"] == {"prompts": 3, "responses": 9}
    assert not (tmp_path / "samples.jsonl.partial").exists()


def test_sample_resumes_after_the_last_complete_line(tiny_model, tmp_path):
    write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    done = {"context": PROMPTS[0]["messages"], "responses": [{"content": "kept", "generator": "earlier"}] * 2}
    (tmp_path / "samples.jsonl.partial").write_text(json.dumps(done) + "\n" + '{"context": [{"ro')
    config = sampling.Config(model_path=str(tiny_model), num_responses=2, max_new_tokens=4, batch_size=1)

    result = sampling.main(config, RunDir(tmp_path))

    tasks = read_jsonl(tmp_path / "samples.jsonl")
    assert result.status == "succeeded"
    assert tasks[0] == done  # the line written before the kill is kept, not sampled again
    assert len(tasks) == 3 and all(len(task["responses"]) == 2 for task in tasks)


def test_a_run_killed_mid_batch_resumes_with_the_answers_an_uninterrupted_run_draws(tiny_model, tmp_path):
    config = sampling.Config(model_path=str(tiny_model), num_responses=2, max_new_tokens=6, batch_size=2)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for run in (whole, resumed):
        run.mkdir()
        write_jsonl(run / "prompts.jsonl", PROMPTS)
    sampling.main(config, RunDir(whole))
    expected = read_jsonl(whole / "samples.jsonl")
    # killed after the first line of the first batch (prompts 1 and 2) reached the disk
    (resumed / "samples.jsonl.partial").write_text(json.dumps(expected[0]) + "\n")

    sampling.main(config, RunDir(resumed))

    assert read_jsonl(resumed / "samples.jsonl") == expected
    assert len({r["content"] for task in expected for r in task["responses"]}) > 1  # sampled, not constant


def test_greedy_answers_match_transformers_generate_prompt_by_prompt(tiny_model, tmp_path):
    # one batch of prompts of different lengths (left padding), K copies each, cut at EOS
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    config = sampling.Config(
        model_path=str(tiny_model), num_responses=2, max_new_tokens=12, batch_size=3, temperature=0.0
    )
    sampling.main(config, RunDir(tmp_path))

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    for task in read_jsonl(tmp_path / "samples.jsonl"):
        text = tokenizer.apply_chat_template(task["context"], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        assert [r["content"] for r in task["responses"]] == [expected, expected]
