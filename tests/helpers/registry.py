"""Register a model version in a test bucket."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tasks.promote.registry import (
    register_version,
)


def register(settings, version: str, tmp_path: Path) -> None:
    adapter = tmp_path / version
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    card = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "status": "candidate",
        "base_model": "unused",
        "lineage": {"dataset_version": "d1"},
    }
    register_version.fn(settings, version, str(adapter), card)
