import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.engine.helpers import REPO_ROOT, read_jsonl, run_engine_cli, write_config, write_jsonl
from training.engine.checkpoint import COMPLETE_MARKER

DIALOGUE = {
    "messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
    ]
}


def result_of(run_dir):
    return json.loads((run_dir / "result.json").read_text())


def test_unknown_config_key_fails_with_one_clear_message(tmp_path):
    write_config(tmp_path, model_path="model", learning_rte=1e-4)

    process = run_engine_cli("sft", tmp_path)

    assert process.returncode == 2
    assert process.stderr.strip() == (
        "error: config.json: unknown key 'learning_rte' (did you mean 'learning_rate'?)"
    )
    assert result_of(tmp_path)["status"] == "failed"
    assert "learning_rte" in result_of(tmp_path)["error"]


def test_bad_data_line_fails_naming_the_line(tiny_model, tmp_path):
    write_config(tmp_path, model_path=str(tiny_model), max_steps=1)
    rows = [json.dumps(DIALOGUE), json.dumps(DIALOGUE), '{"messages": [{"role": "user", "content": 3}]}']
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")

    process = run_engine_cli("sft", tmp_path)

    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == (
        "error: train.jsonl line 3: messages[0]: content must be a string"
    )
    assert "Traceback" not in process.stderr
    assert result_of(tmp_path)["error"] == "train.jsonl line 3: messages[0]: content must be a string"


def test_missing_data_file_and_missing_model_are_reported(tmp_path):
    write_config(tmp_path, model_path="./no-such-model")
    write_jsonl(tmp_path / "train.jsonl", [DIALOGUE])

    process = run_engine_cli("sft", tmp_path)

    assert process.returncode == 2
    assert "model_path './no-such-model': no such folder" in process.stderr


def test_sigterm_saves_a_checkpoint_and_a_rerun_resumes_from_the_newest_complete_one(tiny_model, tmp_path):
    write_config(tmp_path, model_path=str(tiny_model), max_steps=200, save_every=1000, log_every=1)
    write_jsonl(tmp_path / "train.jsonl", [DIALOGUE] * 16)
    command = [sys.executable, "-m", "training.engine", "sft", "--run-dir", str(tmp_path)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        metrics = tmp_path / "metrics.jsonl"
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, stderr
    stopped = result_of(tmp_path)
    assert stopped["status"] == "stopped"
    stop_step = stopped["step"]
    assert 3 <= stop_step < 200
    checkpoint = tmp_path / "checkpoints" / f"checkpoint-{stop_step}"
    assert (checkpoint / COMPLETE_MARKER).is_file()

    # A later checkpoint the Trainer was killed while writing (no marker): it must be ignored.
    half_written = tmp_path / "checkpoints" / f"checkpoint-{stop_step + 50}"
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes(b"truncated")

    rerun = run_engine_cli("sft", tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    finished = result_of(tmp_path)
    assert finished["status"] == "succeeded" and finished["step"] == 200
    assert finished["resumed_from"] == str(checkpoint)
    assert not half_written.exists()
    steps = [line["step"] for line in read_jsonl(tmp_path / "metrics.jsonl")]
    assert steps == list(range(1, 201))  # nothing lost, nothing logged twice


@pytest.mark.parametrize(
    ("environ", "visible"),
    [
        ({}, "0"),  # several GPUs would make the HF Trainer use nn.DataParallel, which TRL refuses
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, "2"),  # the first of those the scheduler gave us
        ({"CUDA_VISIBLE_DEVICES": "1"}, "1"),
        ({"CUDA_VISIBLE_DEVICES": ""}, ""),  # no GPU stays no GPU
        ({"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "0,1"}, "0,1"),  # torchrun: each rank picks its own
    ],
)
def test_a_process_outside_torchrun_sees_one_gpu(environ, visible):
    from training.engine.__main__ import one_gpu_outside_torchrun

    environ = dict(environ)
    one_gpu_outside_torchrun(environ)
    assert environ["CUDA_VISIBLE_DEVICES"] == visible
