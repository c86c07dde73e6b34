"""configs.py: the web side validates a run config with the engine's own check, without torch."""

import importlib
import json
import subprocess
import sys

import pytest

from tests.engine.helpers import REPO_ROOT
from training.engine.__main__ import COMMANDS
from training.engine.configs import COMMAND_CONFIGS, PpoConfig, SftConfig, validate_command_config
from training.engine.errors import EngineError

# one valid config.json per command, as the web side would write it
VALID = {
    "make-tiny": {"architecture": "llama"},
    "sft": {"model_path": "/models/base", "packing": True},
    "reward": {"model_path": "/models/sft", "margin_scale": 0.5},
    "dpo": {"model_path": "/models/sft", "beta": 0.2},
    "ppo": {"model_path": "/models/sft", "reward_model": "builtin:count:good"},
    "sample": {"model_path": "/models/sft", "num_responses": 2},
    "score": {"model_path": "/models/reward", "batch_size": 16},
    "import-gguf": {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "dtype": "bfloat16"},
}

VALIDATE_EVERY_COMMAND = f"""
import json, sys
from training.engine.configs import validate_command_config
for command, raw in json.loads({json.dumps(json.dumps(VALID))}).items():
    validate_command_config(command, raw)
heavy = sorted(name for name in ("torch", "transformers", "trl", "datasets", "peft") if name in sys.modules)
print(json.dumps(heavy))
"""


def test_validating_every_command_config_imports_no_torch_transformers_or_trl():
    process = subprocess.run(
        [sys.executable, "-c", VALIDATE_EVERY_COMMAND],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout) == []


def test_every_command_has_a_config_and_its_module_exposes_that_class():
    assert set(COMMAND_CONFIGS) == set(COMMANDS) == set(VALID)
    for command, module in COMMANDS.items():
        assert importlib.import_module(module).Config is COMMAND_CONFIGS[command]


@pytest.mark.parametrize("command", sorted(VALID))
def test_a_valid_config_builds_the_command_class(command):
    config = validate_command_config(command, VALID[command])

    assert type(config) is COMMAND_CONFIGS[command]


@pytest.mark.parametrize(
    ("command", "raw", "message"),
    [
        (
            "sft",
            {"model_path": "m", "lerning_rate": 1e-4},
            "unknown key 'lerning_rate' (did you mean 'learning_rate'?)",
        ),
        ("reward", {}, "missing required key 'model_path'"),
        ("dpo", {"model_path": "m", "beta": "high"}, "beta: must be a number"),
        (
            "ppo",
            {"model_path": "m", "reward_model": "builtin:nonsense"},
            "builtin rewards are ['count', 'length']",
        ),
        ("sample", {"model_path": "m", "top_p": 0}, "top_p must be in (0, 1]"),
        ("make-tiny", {"architecture": "gpt2"}, "architecture: must be one of ['qwen2', 'llama']"),
        ("import-gguf", {"gguf_file": "m.gguf", "dtype": "int8"}, "dtype: must be one of"),
        ("train", {}, "unknown engine command 'train'"),
    ],
)
def test_bad_input_raises_the_engine_error_naming_the_key(command, raw, message):
    with pytest.raises(EngineError) as error:
        validate_command_config(command, raw)

    assert message in str(error.value)


def test_the_web_check_and_the_engine_start_up_give_the_same_config(tmp_path):
    from training.engine.config import load_config

    raw = {"model_path": "m", "reward_model": "rm", "kl_coef": 0.1, "lora": {"r": 8}}
    (tmp_path / "config.json").write_text(json.dumps(raw))

    assert validate_command_config("ppo", raw) == load_config(PpoConfig, tmp_path / "config.json")
    assert validate_command_config("sft", {"model_path": "m"}) == SftConfig(model_path="m")
