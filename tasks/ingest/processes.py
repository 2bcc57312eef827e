"""Both cores for a CPU-bound step that splits into independent chunks and holds the GIL:
redaction (spaCy's NER and Presidio, tasks/ingest/pii.py). The toxicity classifier needs no
processes:
its Arrow kernels release the GIL, so it uses threads (tasks/gates/toxicity.py).

joblib's loky backend (joblib comes with scikit-learn) starts its workers by fork + exec, never
by a bare fork: the caller runs inside a Prefect flow (its event-loop and logging threads are
running) with torch imported, and a forked child would inherit every lock those threads held at
that moment. Unlike multiprocessing's "spawn", loky does not re-run the caller's main script in
the workers, so a script without an `if __name__ == "__main__":` guard works too. A worker
starts clean and imports only what its function needs; that start-up (seconds: Presidio imports
transformers) is why callers keep small batches in their own process. loky keeps its workers
for the next call a few minutes, then stops them.

    python -c "from tasks.ingest.processes import map_in_processes; \\
        print(list(map_in_processes(sorted, [[3, 1], [2, 0]], 2)))"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def chunked(items: Sequence[Item], size: int) -> list[Sequence[Item]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def map_in_processes(
    function: Callable[[Item], Result], chunks: Iterable[Item], processes: int
) -> Iterator[Result]:
    """`function` on each chunk in `processes` worker processes, starting now; results in
    chunk order, each as soon as it and those before it are done (a few chunks are in flight at
    a time, so memory stays bounded). `function` must be importable by name, its chunks and
    results picklable."""
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=processes, backend="loky", return_as="generator")
    # the first chunks are sent to the workers now, not when the results are first read
    return parallel(delayed(function)(chunk) for chunk in chunks)
