"""bench/results.json: one JSON object, one key per bench; a bench replaces only its own key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


def stored(key: str) -> Any:
    """A bench's last recorded figures, or None."""
    return (json.loads(RESULTS.read_text()) if RESULTS.exists() else {}).get(key)


def save_figures(key: str, figures: Any) -> None:
    """Store a bench's figures under its key, keeping every other bench's."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = figures
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
