"""PPO end to end on a tiny model against a programmatic reward: it learns, and it resumes after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.conftest import REPO_ROOT, read_jsonl, run_engine_cli, write_config, write_jsonl
from training.engine.__main__ import main as cli_main

TOPICS = ["hello", "tell me a story", "what is the weather", "write a poem", "how many days", "thank you"]


def ppo_run_dir(path: Path, model: Path, **overrides) -> Path:
    prompts = [{"messages": [{"role": "user", "content": f"{TOPICS[i % 6]} {i}"}]} for i in range(64)]
    path.mkdir(parents=True)
    write_jsonl(path / "prompts.jsonl", prompts)
    config = {
        "model_path": str(model),
        "reward_model": "builtin:count:e",  # how many letters "e" the answer holds
        "max_new_tokens": 16,
        "temperature": 1.0,
        "per_device_batch_size": 16,
        "num_mini_batches": 2,
        "learning_rate": 2e-3,  # a random tiny model needs big steps to move in a few updates
        "lr_scheduler": "constant",
        "kl_coef": 0.1,
        "max_steps": 30,
        "save_every": 10,
    }
    return write_config(path, **{**config, **overrides})


def test_ppo_raises_the_reward_while_kl_stays_bounded(tmp_path, tiny_model):
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model)
    result = run_engine_cli("ppo", run_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 31))
    start = metrics[0]["score"]  # the first batch is sampled from the untouched policy
    end = sum(m["score"] for m in metrics[-5:]) / 5
    assert end > start + 2.0, (start, end)
    assert all(m["kl"] < 20.0 for m in metrics)  # summed over 16 tokens: about a nat per token at most
    for key in ("entropy", "clipfrac", "vf_loss", "time_generate", "time_score", "time_train"):
        assert key in metrics[-1]
    outcome = json.loads((run_dir / "result.json").read_text())
    assert outcome["status"] == "succeeded" and outcome["step"] == 30
    assert (run_dir / "model" / "config.json").is_file()


def test_ppo_killed_mid_run_resumes_from_the_newest_complete_checkpoint(tmp_path, tiny_model):
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model, max_steps=12, save_every=4, learning_rate=1e-4)
    process = subprocess.Popen(
        [sys.executable, "-m", "training.engine", "ppo", "--run-dir", str(run_dir)],
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "checkpoint-4" / "COMPLETE").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within the time limit"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "result.json").exists()

    result = run_engine_cli("ppo", run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads((run_dir / "result.json").read_text())
    assert outcome["status"] == "succeeded" and outcome["step"] == 12
    resumed = Path(outcome["resumed_from"]).name
    assert resumed.startswith("checkpoint-") and int(resumed.split("-")[1]) >= 4
    # one metrics line per step: the lines after the resumed checkpoint were dropped and redone
    assert [m["step"] for m in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, 13))


def run_in_process(run_dir: Path, capsys) -> tuple[int, str]:
    code = cli_main(["ppo", "--run-dir", str(run_dir)])
    return code, capsys.readouterr().err


def test_unknown_builtin_reward_is_a_clear_config_error(tmp_path, tiny_model, capsys):
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model, reward_model="builtin:nonsense")
    code, err = run_in_process(run_dir, capsys)
    assert code == 2 and "builtin rewards are" in err


def test_unknown_config_key_is_rejected(tmp_path, tiny_model, capsys):
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model, kl_coeff=0.1)
    code, err = run_in_process(run_dir, capsys)
    assert code == 2 and "kl_coef" in err  # the did-you-mean hint


@pytest.mark.parametrize("line", ['{"messages": []}', "not json"])
def test_bad_prompt_lines_fail_with_the_line_number(tmp_path, tiny_model, capsys, line):
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model)
    (run_dir / "prompts.jsonl").write_text(line + "\n")
    code, err = run_in_process(run_dir, capsys)
    assert code == 2 and "line 1" in err


def test_ppo_with_lora_and_a_reward_model_folder_saves_a_merged_policy(tmp_path, tiny_model, capsys):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_model)
    config.num_labels = 1
    run_dir = ppo_run_dir(
        tmp_path / "run", tiny_model, reward_model="rm", max_steps=2, save_every=1, lora={"r": 4, "alpha": 8}
    )
    AutoModelForSequenceClassification.from_config(config).save_pretrained(run_dir / "rm")
    code, err = run_in_process(run_dir, capsys)
    assert code == 0, err
    # checkpoints hold only the adapters; the final folder a plain model with the adapters merged in
    assert (run_dir / "checkpoints" / "checkpoint-2" / "policy" / "adapter_config.json").is_file()
    assert not (run_dir / "model" / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(run_dir / "model")


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, tiny_model):
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model, max_steps=500, save_every=1000)
    process = subprocess.Popen(
        [sys.executable, "-m", "training.engine", "ppo", "--run-dir", str(run_dir)],
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").read_text():
        assert process.poll() is None and time.time() < deadline, "no step logged"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    outcome = json.loads((run_dir / "result.json").read_text())
    assert outcome["status"] == "stopped" and 1 <= outcome["step"] < 500
    assert (run_dir / "checkpoints" / f"checkpoint-{outcome['step']}" / "COMPLETE").is_file()


def test_rollout_and_update_see_the_same_policy_without_dropout_noise(tmp_path, tiny_model):
    # The update's first ratio must be exactly 1: log-probs and values taken at rollout time and
    # again in training mode come from the same deterministic function (TRL disables dropout too).
    import torch

    from training.engine import ppo
    from training.engine.config import config_from_dict
    from training.engine.run_dir import RunDir

    run_dir = ppo_run_dir(tmp_path / "run", tiny_model)
    config = config_from_dict(
        ppo.Config,
        {"model_path": str(tiny_model), "reward_model": "builtin:length", "lora": {"r": 4, "dropout": 0.5}},
    )
    policy, critic, *_ = ppo.load_models(config, RunDir(run_dir), None, torch.device("cpu"), torch.float32)
    with torch.no_grad():  # adapters start as a no-op (B = 0); make them matter
        for name, parameter in [*policy.named_parameters(), *critic.named_parameters()]:
            if "lora_B" in name:
                parameter.normal_()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    policy.train(), critic.train()
    with torch.no_grad():
        logits = [policy(input_ids=ids).logits for _ in range(2)]
        scores = [critic(input_ids=ids).logits for _ in range(2)]
    assert torch.equal(*logits) and torch.equal(*scores)


def test_compiled_ppo_with_the_generate_fallback_runs(tmp_path, tiny_model, capsys):
    # the fallback's model.generate runs eager (torch.compiler.set_stance): its KV cache would make the
    # compiled layers retrace once per layer
    import torch._dynamo

    run_dir = ppo_run_dir(tmp_path / "run", tiny_model, max_steps=2, torch_compile=True, fast_rollout=False)
    torch._dynamo.reset()

    code, err = run_in_process(run_dir, capsys)

    assert code == 0, err
    assert [line["step"] for line in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]
    torch._dynamo.reset()


def test_a_diverging_run_stops_with_a_clear_error_and_saves_nothing(tmp_path, tiny_model, capsys):
    # weights ~1e30 after the first AdamW update: squared in RMSNorm they overflow, the losses turn NaN
    run_dir = ppo_run_dir(tmp_path / "run", tiny_model, learning_rate=1e30, max_steps=6, save_every=1)

    code, err = run_in_process(run_dir, capsys)

    assert code == 2, err
    outcome = json.loads((run_dir / "result.json").read_text())
    assert outcome["status"] == "failed" and "PPO diverged at step 1: pg_loss" in outcome["error"]
    assert "Lower learning_rate" in outcome["error"] and "bf16 false" in outcome["error"]
    # the broken step is logged (the chart shows where it broke), then nothing more: no checkpoint of
    # step 1 (save_every 1) and no final model, instead of five more steps trained on NaN weights
    assert [line["step"] for line in read_jsonl(run_dir / "metrics.jsonl")] == [1]
    assert not list(run_dir.glob("checkpoints/checkpoint-*")) and not (run_dir / "model").exists()
