"""Settings: one typed object from defaults, a TOML file and RETRAIN_ environment variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.config import Settings


def test_environment_overrides_nested_fields(monkeypatch):
    monkeypatch.setenv("RETRAIN_S3__BUCKET", "acme-support")
    monkeypatch.setenv("RETRAIN_TRAINING__MAX_STEPS", "7")
    settings = Settings()
    assert settings.s3.bucket == "acme-support"
    assert settings.training.max_steps == 7
    assert settings.s3.raw_prefix == "raw/support-logs/"  # untouched defaults stay


def test_toml_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    config = tmp_path / "retrain.toml"
    config.write_text('model_name = "acme-bot"\n[s3]\nbucket = "from-file"\n')
    monkeypatch.setenv("RETRAIN_CONFIG_FILE", str(config))
    assert Settings().s3.bucket == "from-file"
    assert Settings().model_name == "acme-bot"
    monkeypatch.setenv("RETRAIN_S3__BUCKET", "from-env")
    assert Settings().s3.bucket == "from-env"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("RETRAIN_S3__RAW_PREFIX", "raw", "must end with '/'"),
        ("RETRAIN_TRAINING__MAX_STEPS", "0", "greater than or equal to 1"),
        ("RETRAIN_TRAINING__BACKEND", "gpu-cluster", "backend"),
    ],
)
def test_invalid_values_fail_fast_and_say_why(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
