"""Data-gate figures for issue 5, written to bench/results.json under "data_gates".

    .venv/bin/python bench/data_gates.py pii        # precision/recall on tests/data/pii_labelled
    .venv/bin/python bench/data_gates.py redaction    # 10,000 conversations, names included
    .venv/bin/python bench/data_gates.py suites       # every GX suite on 1,000,000 records

Targets: recall ≥ 99 % structured / ≥ 90 % names, precision ≥ 95 %; redaction ≤ 60 s;
suites ≤ 30 s with peak memory ≤ 4 GB (resident set, this process).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from record import save_figures, stored

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
LABELLED = ROOT / "tests" / "data" / "pii_labelled.jsonl"
TYPES = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD"}
TYPES |= {"IBAN_CODE": "IBAN", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS", "PERSON": "PERSON"}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def pii_scores() -> dict:
    """A labelled value counts as found when a finding overlaps it (a phone number found as
    a phone or any other type is still removed); a finding overlapping no label is a false
    positive."""
    from tasks.config import PiiSettings
    from tasks.pii import get_redactor

    rows = [json.loads(line) for line in LABELLED.read_text().splitlines()]
    findings = get_redactor(PiiSettings()).analyze([r["text"] for r in rows])
    found, total, false_pos, true_pos = Counter(), Counter(), 0, 0
    misses = []
    for row, results in zip(rows, findings, strict=True):
        spans = []
        for e in row["entities"]:
            start = row["text"].index(e["value"])
            spans.append((start, start + len(e["value"]), e["type"]))
        for start, end, kind in spans:
            total[kind] += 1
            if any(r.start < end and start < r.end for r in results):
                found[kind] += 1
            else:
                misses.append(kind)
        for r in results:
            if any(r.start < end and start < r.end for start, end, _ in spans):
                true_pos += 1
            else:
                false_pos += 1
    recall = {kind: round(found[kind] / total[kind], 4) for kind in sorted(total)}
    structured = [k for k in total if k != "PERSON"]
    return {
        "examples": len(rows),
        "labelled_values": sum(total.values()),
        "recall_by_type": recall,
        "recall_structured": round(
            sum(found[k] for k in structured) / sum(total[k] for k in structured), 4
        ),
        "recall_names": recall.get("PERSON"),
        "precision": round(true_pos / (true_pos + false_pos), 4) if true_pos + false_pos else None,
        "false_positives": false_pos,
        "missed_types": dict(Counter(misses)),
    }


def redaction_speed(n: int = 10_000) -> dict:
    """Redact n conversations, a fifth with a name and a tenth with an e-mail or phone."""
    import batches

    from tasks.config import PiiSettings
    from tasks.pii import get_redactor

    started = time.perf_counter()
    redactor = get_redactor(PiiSettings())
    load_s = time.perf_counter() - started
    records = batches.clean_batch(n)
    for i, record in enumerate(records):
        if i % 5 == 0:
            record["messages"][0]["text"] = (
                f"Hi, this is Laura Whitfield. {record['messages'][0]['text']}"
            )
        if i % 10 == 0:
            record["messages"][0]["text"] += (
                f" mail laura{i}@example.org or call +1 415 555 {i % 10000:04d}"
            )
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    redacted = list(redactor.redact_records(records, counts))
    seconds = time.perf_counter() - started
    return {
        "conversations": n,
        "texts": sum(len(r["messages"]) for r in records),
        "seconds": round(seconds, 2),
        "model_load_seconds": round(load_s, 2),
        "redactions": dict(counts),
        "quarantined": sum(1 for clean, _ in redacted if clean is None),
        "target_s": 60,
    }


def suites_on(n: int = 1_000_000) -> dict:
    import batches

    from tasks.config import QualitySettings
    from tasks.quality import evaluate

    records = batches.clean_batch(20_000)
    records = [dict(records[i % 20_000], conversation_id=f"c-{i}") for i in range(n)]
    config = QualitySettings(max_duplicate_fraction=1.0)  # the 20,000 texts repeat on purpose
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as docs:
        report = evaluate(records, config, 0, None, Path(docs))
    seconds = time.perf_counter() - started
    return {
        "records": n,
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "verdict": report.verdict,
        "checks": len(report.checks),
        "target_s": 30,
        "target_peak_gb": 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["pii", "redaction", "suites"])
    parser.add_argument("-n", type=int, default=None)
    args = parser.parse_args()
    run = {"pii": pii_scores, "redaction": redaction_speed, "suites": suites_on}[args.what]
    figures = run(args.n) if args.n else run()
    save_figures(
        "data_gates",
        {
            **(stored("data_gates") or {}),
            args.what: {
                **figures,
                "command": " ".join(["bench/data_gates.py", *sys.argv[1:]]),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        },
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
