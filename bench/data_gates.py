"""Data-gate figures for issue 5, written to bench/results.json under "data_gates".

    .venv/bin/python bench/data_gates.py pii        # precision/recall on tests/data/pii_labelled
    .venv/bin/python bench/data_gates.py redaction    # 10,000 conversations, names included
    .venv/bin/python bench/data_gates.py suites       # every GX suite on 1,000,000 records

Options: `--distinct` makes every text unique (the worst case: nothing is checked once for
many); `--baseline GIT_REF` also runs that ref's code on the same data in the same process and
compares the outputs (the ratio holds under a shared machine's load); `--profile` (redaction)
splits the time between spaCy, Presidio and the record handling; `--processes N` (redaction)
sets the worker processes (above 1, the in-process time is taken too, right after, on the same
data).
The machine's load average and the CPU seconds of this process and of its workers (which a busy
machine inflates less than wall-clock time) are recorded with each figure.

Targets: recall ≥ 99 % structured / ≥ 90 % names, precision ≥ 95 %; redaction ≤ 60 s;
suites ≤ 30 s with peak memory ≤ 4 GB (resident set, this process).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.abc
import importlib.util
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

from record import save_figures, stored

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process and of its worker processes (alive or ended): where the
    work went, which a busy machine does not inflate the way it does wall-clock time."""
    import psutil

    me = psutil.Process()
    own = me.cpu_times()
    workers = own.children_user + own.children_system
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
            workers += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return {"this_process": own.user + own.system, "workers": workers}


def cpu_since(before: dict[str, float]) -> dict[str, float]:
    return {key: round(value - before[key], 2) for key, value in cpu_seconds().items()}


def pii_scores() -> dict:
    """Recall per type and precision on the labelled set (tests/helpers/pii_scoring.py)."""
    from tasks.config import PiiSettings
    from tasks.ingest.pii import get_redactor
    from tests.helpers.pii_scoring import labelled_rows, scores

    rows = labelled_rows()
    return scores(rows, get_redactor(PiiSettings()).analyze([r["text"] for r in rows]))


def redaction_records(n: int, distinct: bool = False) -> list[dict]:
    """n conversations, a fifth with a name and a tenth with an e-mail or phone. `distinct`:
    every text made unique (the worst case: nothing repeats, nothing is analysed once only)."""
    from tests.helpers import batches

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
        if distinct:
            for message in record["messages"]:
                message["text"] += f" (ticket {i})"
    return records


def exists_at(ref: str, path: str) -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{ref}:{path}"], stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )


# where a module lived before tasks/ was split into a package per stage
FLAT_PATHS = {
    "tasks/ingest/pii.py": "tasks/pii.py",
    "tasks/gates/suites.py": "tasks/quality.py",
    "tasks/gates/pii_check.py": "tasks/pii_check.py",
    "tasks/gates/toxicity.py": "tasks/toxicity.py",
}


def path_at(ref: str, path: str) -> str:
    """`path` as named at `ref`: its flat name for refs before the stage packages."""
    return path if exists_at(ref, path) else FLAT_PATHS.get(path, path)


def source_at(ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


class ModulesAt(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of `tasks.*` modules that the working tree no longer has (a ref's flat modules,
    e.g. `tasks.pii_check`), served from that ref: its code then runs with its own siblings."""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        relative = name.replace(".", "/") + ".py"
        if not name.startswith("tasks.") or (ROOT / relative).exists():
            return None
        if not exists_at(self.ref, relative):
            return None
        return importlib.util.spec_from_loader(name, self, origin=f"{self.ref}:{relative}")

    def exec_module(self, module: types.ModuleType) -> None:
        relative = module.__name__.replace(".", "/") + ".py"
        module.__file__ = str(ROOT / relative)
        exec(
            compile(source_at(self.ref, relative), module.__spec__.origin, "exec"), module.__dict__
        )


def module_at(ref: str, path: str, name: str) -> types.ModuleType:
    """A module of this repository as it was at a git ref, loaded beside the current one, so
    the old and the new code are timed in one process on the same data (contention hits
    both)."""
    if not any(isinstance(f, ModulesAt) and f.ref == ref for f in sys.meta_path):
        sys.meta_path.append(ModulesAt(ref))
    path = path_at(ref, path)
    module = types.ModuleType(name)
    module.__file__ = str(ROOT / path)  # where it lives, for paths it builds from its own
    sys.modules[name] = module
    exec(compile(source_at(ref, path), f"{ref}:{path}", "exec"), module.__dict__)
    return module


# Where redaction time goes: (label, file suffix, function) summed from cProfile's cumulative
# times. spaCy's pipe includes tokenising the texts it runs NER on.
PROFILE_PARTS = [
    ("spacy_tokenize_and_ner", "spacy/language.py", "pipe"),
    ("spacy_tokenize_only", "spacy/language.py", "make_doc"),
    ("presidio_nlp_artifacts", "nlp_engine/spacy_nlp_engine.py", "_doc_to_nlp_artifact"),
    ("presidio_recognizers", "presidio_analyzer/analyzer_engine.py", "analyze"),
    ("template_allowlist_filters", "tasks/ingest/pii.py", "_keep"),
    ("anonymizer", "presidio_anonymizer/anonymizer_engine.py", "anonymize"),
    ("record_copy", "tasks/ingest/pii.py", "_fill"),
]


def profile_split(stats: pstats.Stats) -> dict[str, float]:
    split = {}
    for label, suffix, function in PROFILE_PARTS:
        split[label] = round(
            sum(
                row[3]
                for (path, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
                if name == function and path.endswith(suffix)
            ),
            2,
        )
    return split


def redact_timed(redactor, records: list[dict], profile: bool = False) -> tuple[float, list, dict]:
    counts: Counter[str] = Counter()
    profiler = cProfile.Profile() if profile else None
    cpu = cpu_seconds()
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    redacted = list(redactor.redact_records(records, counts))
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    figures = {"seconds": round(seconds, 2), "cpu_seconds": cpu_since(cpu)}
    figures["redactions"] = dict(counts)
    if profiler:
        figures["profile_cumulative_s"] = profile_split(pstats.Stats(profiler))
    return seconds, redacted, figures


def redaction_speed(
    n: int = 10_000,
    baseline: str | None = None,
    distinct: bool = False,
    profile: bool = False,
    processes: int | None = None,
) -> dict:
    """Redact n conversations; with `baseline`, also with tasks/ingest/pii.py of that git ref, on
    the
    same records in this process, and compare the outputs."""
    started = time.perf_counter()
    import presidio_analyzer  # noqa: F401  (imports transformers: a cost paid once per process)

    import_s = time.perf_counter() - started
    from tasks.config import PiiSettings
    from tasks.ingest.pii import get_redactor, may_hold_name

    started = time.perf_counter()
    redactor = get_redactor(PiiSettings(**({"processes": processes} if processes else {})))
    load_s = time.perf_counter() - started
    records = redaction_records(n, distinct)
    texts = [m["text"] for r in records for m in r["messages"]]
    seconds, redacted, figures = redact_timed(redactor, records, profile)
    result = {
        "conversations": n,
        "processes": redactor.config.processes,
        "distinct_texts_workload": distinct,
        "texts": len(texts),
        "distinct_texts": len(set(texts)),
        "distinct_texts_needing_ner": sum(map(may_hold_name, set(texts))),
        **figures,
        "import_presidio_seconds": round(import_s, 2),
        "model_load_seconds": round(load_s, 2),
        "quarantined": sum(1 for clean, _ in redacted if clean is None),
        "target_s": 60,
    }
    if redactor.config.processes > 1:
        # the same code in this process only, right after: what the worker processes bring
        in_process = get_redactor(PiiSettings(processes=1))
        one_seconds, one_redacted, one_figures = redact_timed(in_process, records)
        result["in_process"] = {
            "seconds": round(one_seconds, 2),
            "cpu_seconds": one_figures["cpu_seconds"],
            "processes": 1,
            "speedup_of_processes": round(one_seconds / seconds, 2),
            "records_redacted_differently": sum(
                1 for a, b in zip(one_redacted, redacted, strict=True) if a != b
            ),
        }
    if baseline:
        old = module_at(baseline, "tasks/ingest/pii.py", "pii_baseline").get_redactor(PiiSettings())
        old_seconds, old_redacted, old_figures = redact_timed(old, records)
        seconds, redacted, _ = redact_timed(redactor, records)  # again, right after the old one
        result["baseline"] = {
            "ref": baseline,
            "seconds": old_figures["seconds"],
            "redactions": old_figures["redactions"],
            "current_seconds_same_run": round(seconds, 2),
            "speedup": round(old_seconds / seconds, 2),
            "records_redacted_differently": sum(
                1 for a, b in zip(old_redacted, redacted, strict=True) if a != b
            ),
        }
    result["load_average"] = os.getloadavg()
    return result


def suites_on(
    n: int = 1_000_000, baseline: str | None = None, distinct: bool = False, turns: int = 1
) -> dict:
    """Every suite on n records (20,000 conversations repeated; `distinct`: every text made
    unique, the worst case for checking each distinct text once; `turns`: exchanges per
    conversation, each message classified on its own); with `baseline`, also with
    tasks/gates/suites.py, tasks/gates/pii_check.py and tasks/gates/toxicity.py of that git ref
    (and its
    settings), on the same records, and compare every check."""
    from tasks.config import QualitySettings
    from tasks.gates.suites import evaluate
    from tests.helpers import batches

    started = time.perf_counter()
    import great_expectations  # noqa: F401  (imports paid once per process, timed apart)
    import profanity_check  # noqa: F401

    import_s = time.perf_counter() - started
    records = batches.clean_batch(20_000)
    records = [dict(records[i % 20_000], conversation_id=f"c-{i}") for i in range(n)]
    if distinct or turns > 1:
        for i, record in enumerate(records):
            record["messages"] = [
                {**m, "text": f"{m['text']} (ticket {i}, turn {turn})"} if distinct else m
                for turn in range(turns)
                for m in record["messages"]
            ]
    config = QualitySettings(max_duplicate_fraction=1.0)  # the 20,000 texts repeat on purpose

    def timed(evaluate_batch, settings: QualitySettings = config) -> tuple[float, Any, dict]:
        cpu = cpu_seconds()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as docs:
            report = evaluate_batch(records, settings, 0, None, Path(docs))
        return time.perf_counter() - started, report, cpu_since(cpu)

    seconds, report, cpu = timed(evaluate)
    result = {
        "records": n,
        "distinct_texts_workload": distinct,
        "turns": turns,
        "seconds": round(seconds, 2),
        "cpu_seconds": cpu,
        "import_gx_and_classifier_seconds": round(import_s, 2),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "verdict": report.verdict,
        "checks": len(report.checks),
        "target_s": 30,
        "target_peak_gb": 4,
    }
    if baseline:
        old = module_at(baseline, "tasks/gates/suites.py", "quality_baseline")
        # the frames live in suites.py (quality.py) before the gate was split into modules
        if exists_at(baseline, "tasks/gates/frames.py"):
            frames = module_at(baseline, "tasks/gates/frames.py", "frames_baseline")
            old.conversation_frame, old.mix_frame = frames.conversation_frame, frames.mix_frame
            old.segment_frame = frames.segment_frame
        else:
            frames = old
        frames.count_leaks = module_at(
            baseline, "tasks/gates/pii_check.py", "pii_check_baseline"
        ).count_leaks
        # older refs classify inside quality.py
        if exists_at(baseline, path_at(baseline, "tasks/gates/toxicity.py")):
            frames.profane_probability = module_at(
                baseline, "tasks/gates/toxicity.py", "toxicity_baseline"
            ).profane_probability
        # the ref's own settings class: older refs read fields this one no longer has
        old_config = module_at(baseline, "tasks/config.py", "config_baseline").QualitySettings(
            **config.model_dump(mode="json", exclude_unset=True)
        )
        old_seconds, old_report, _ = timed(old.evaluate, old_config)
        seconds, report, _ = timed(evaluate)  # again, right after the old one

        def outcomes(checks) -> list[tuple]:
            return [(c.name, c.result, c.observed) for c in checks]

        result["baseline"] = {
            "ref": baseline,
            "seconds": round(old_seconds, 2),
            "current_seconds_same_run": round(seconds, 2),
            "speedup": round(old_seconds / seconds, 2),
            "same_verdict": old_report.verdict == report.verdict,
            "checks_differing": [
                name
                for (name, *a), (_, *b) in zip(
                    outcomes(old_report.checks), outcomes(report.checks), strict=True
                )
                if a != b
            ],
            "peak_rss_gb_both": round(peak_rss_gb(), 2),
        }
    result["load_average"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["pii", "redaction", "suites"])
    parser.add_argument("-n", type=int, default=None)
    parser.add_argument(
        "--baseline", metavar="GIT_REF", help="also time that ref's code on the same data"
    )
    parser.add_argument("--distinct", action="store_true", help="no text repeats (worst case)")
    parser.add_argument("--profile", action="store_true", help="redaction: where time goes")
    parser.add_argument("--turns", type=int, default=1, help="suites: exchanges per conversation")
    parser.add_argument(
        "--processes",
        type=int,
        help="redaction: worker processes (default: the config's); above 1, the "
        "in-process time is taken too, right after, on the same data",
    )
    args = parser.parse_args()
    options: dict = {"n": args.n} if args.n else {}
    if args.what == "redaction":
        options |= {"baseline": args.baseline, "distinct": args.distinct, "profile": args.profile}
        options |= {"processes": args.processes}
    elif args.what == "suites":
        options |= {"baseline": args.baseline, "distinct": args.distinct, "turns": args.turns}
    run = {"pii": pii_scores, "redaction": redaction_speed, "suites": suites_on}[args.what]
    figures = run(**options)
    key = args.what + ("_distinct" if args.distinct else "")
    key += f"_turns{args.turns}" if args.what == "suites" and args.turns > 1 else ""
    key += "_vs_baseline" if args.baseline else ""
    key += f"_processes{args.processes}" if args.what == "redaction" and args.processes else ""
    save_figures(
        "data_gates",
        {
            **(stored("data_gates") or {}),
            key: {
                **figures,
                "command": " ".join(["bench/data_gates.py", *sys.argv[1:]]),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        },
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
