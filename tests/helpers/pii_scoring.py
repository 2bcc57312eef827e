"""Recall and precision of the redactor on the labelled set tests/data/pii_labelled.jsonl
(built by tests/data/make_pii_labelled.py), for bench/data_gates.py pii and
tests/ingest/test_pii.py.

A labelled value counts as found when a finding overlaps it (a phone number found as a phone
or as any other type is still removed); a finding that overlaps no label is a false positive.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

LABELLED = Path(__file__).parents[1] / "data" / "pii_labelled.jsonl"


def labelled_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELLED.read_text().splitlines()]


def _spans(row: dict[str, Any]) -> list[tuple[int, int, str]]:
    spans = []
    for entity in row["entities"]:
        start = row["text"].index(entity["value"])
        spans.append((start, start + len(entity["value"]), entity["type"]))
    return spans


def scores(rows: list[dict[str, Any]], findings: list[list]) -> dict[str, Any]:
    """Per-type recall, recall of the structured types and of names, precision. Counts and
    types only: no value of the set."""
    found, total, false_pos, true_pos = Counter(), Counter(), 0, 0
    misses: Counter[str] = Counter()
    for row, results in zip(rows, findings, strict=True):
        spans = _spans(row)
        for start, end, kind in spans:
            total[kind] += 1
            if any(r.start < end and start < r.end for r in results):
                found[kind] += 1
            else:
                misses[kind] += 1
        for r in results:
            if any(r.start < end and start < r.end for start, end, _ in spans):
                true_pos += 1
            else:
                false_pos += 1
    structured = [kind for kind in total if kind != "PERSON"]
    return {
        "examples": len(rows),
        "labelled_values": sum(total.values()),
        "labelled_by_type": dict(sorted(total.items())),
        "recall_by_type": {kind: round(found[kind] / total[kind], 4) for kind in sorted(total)},
        "recall_structured": round(
            sum(found[k] for k in structured) / sum(total[k] for k in structured), 4
        ),
        "recall_names": round(found["PERSON"] / total["PERSON"], 4) if total["PERSON"] else None,
        "precision": round(true_pos / (true_pos + false_pos), 4) if true_pos + false_pos else None,
        "false_positives": false_pos,
        "missed_types": dict(misses),
    }
