"""Shared fixtures: one moto S3 server and one Prefect test harness per session, a bucket per
test, and the real SmolLM2 tokenizer on a tiny random model."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.config import Settings, apply_runtime_env

# Tests see only the defaults and what each test sets: not the developer's RETRAIN_ variables
# or a retrain.toml in the working directory.
for _name in [n for n in os.environ if n.startswith("RETRAIN_")]:
    del os.environ[_name]
os.environ["RETRAIN_CONFIG_FILE"] = str(Path(__file__).parent / "no-such-retrain.toml")
apply_runtime_env()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from tasks.storage.local_server import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect server (SQLite) for the whole session: starting one takes 10-20 s."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Shared across sessions so the GGUF → safetensors conversion runs once per machine."""
    return Settings().cache_dir


@pytest.fixture(scope="session")
def smollm2_dir(model_cache: Path) -> Path:
    from tasks.train.base_model import SMOLLM2, resolve_base_model

    return resolve_base_model(SMOLLM2, model_cache)


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.train.base_model import build_tiny_model

    return build_tiny_model(smollm2_dir, tmp_path_factory.mktemp("tiny-smollm2"))


@pytest.fixture
def settings(
    s3_endpoint: str, request: pytest.FixtureRequest, tmp_path: Path, model_cache: Path
) -> Settings:
    """Settings for one test: its own bucket on the session's moto server, a small budget."""
    from tasks.storage.s3 import ensure_bucket, s3_client

    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    settings = Settings(
        cache_dir=model_cache,
        s3={"bucket": bucket, "endpoint_url": s3_endpoint},
        quality={"min_records": 20},
        training={"max_steps": 2, "batch_size": 4, "max_length": 96},
        evaluation={"batch_size": 8},
    )
    ensure_bucket(s3_client(settings.s3), bucket)
    return settings


@pytest.fixture
def flow_settings(settings: Settings, tiny_model_dir: Path) -> Settings:
    """Settings for a whole retrain run on the tiny model: short replies, a small golden set."""
    return settings.model_copy(
        update={
            "training": settings.training.model_copy(update={"base_model": str(tiny_model_dir)}),
            # short replies: a tiny random model says nothing useful, and generating is slow
            "evaluation": settings.evaluation.model_copy(
                update={"max_new_tokens": 4, "max_length": 256, "sample_size": 2}
            ),
            "dataset": settings.dataset.model_copy(
                update={"golden_fraction": 0.1, "golden_max_examples": 16, "golden_min_examples": 8}
            ),
        }
    )
