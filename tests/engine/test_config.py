import json
from dataclasses import FrozenInstanceError

import pytest

from training.engine.config import LoraConfig, TrainConfig, config_from_dict, load_config, save_config
from training.engine.errors import EngineError


def test_known_keys_load_with_types_and_defaults():
    config = config_from_dict(TrainConfig, {"model_path": "m", "learning_rate": 1, "lora": {"r": 4}})

    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.per_device_batch_size == 8
    assert config.lora == LoraConfig(r=4)


def test_unknown_key_is_rejected_with_a_suggestion():
    with pytest.raises(EngineError, match=r"unknown key 'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        config_from_dict(TrainConfig, {"model_path": "m", "lerning_rate": 1e-4})


def test_unknown_nested_key_is_rejected():
    with pytest.raises(EngineError, match="lora: unknown key 'rank'"):
        config_from_dict(TrainConfig, {"model_path": "m", "lora": {"rank": 4}})


def test_missing_required_key_is_named():
    with pytest.raises(EngineError, match="missing required key 'model_path'"):
        config_from_dict(TrainConfig, {})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("per_device_batch_size", 2.5, "per_device_batch_size: must be an integer"),
        ("bf16", "yes", "bf16: must be true or false"),
        ("lr_scheduler", "exponential", "lr_scheduler: must be one of"),
        ("learning_rate", -1.0, "learning_rate must be positive"),
    ],
)
def test_wrong_values_are_rejected(key, value, message):
    with pytest.raises(EngineError, match=message):
        config_from_dict(TrainConfig, {"model_path": "m", key: value})


def test_config_is_frozen():
    config = TrainConfig(model_path="m")
    with pytest.raises(FrozenInstanceError):
        config.seed = 1


def test_saved_config_loads_back_equal(tmp_path):
    config = TrainConfig(model_path="m", lora=LoraConfig(target_modules=("q_proj", "v_proj")))
    save_config(config, tmp_path / "config.json")

    assert load_config(TrainConfig, tmp_path / "config.json") == config


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EngineError, match="config.json: not valid JSON"):
        load_config(TrainConfig, tmp_path / "config.json")


def test_top_level_must_be_an_object(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(EngineError, match="must be a JSON object"):
        load_config(TrainConfig, tmp_path / "config.json")
