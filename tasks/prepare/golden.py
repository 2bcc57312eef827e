"""The golden set: a frozen evaluation set, chosen once by hash, never trained on.

Freezing: conversations whose id hashes below `dataset.golden_fraction` form the golden bucket.
The first batch whose bucket holds at least `dataset.golden_min_examples` conversations freezes
the lowest-hash ones (up to `golden_max_examples`) with If-None-Match, next to a manifest that
records the fraction, hash key and leak-check settings it was drawn with; later runs use the
stored values, so changing the config never moves a conversation in or out of the bucket. A
smaller first batch freezes nothing and says so: the run waits for more logs.

Leak check, the same on every run: a record is kept out of train and validation when its
conversation id is golden, its customer text (up to the last agent answer, normalised once,
here) equals a golden one, or it is a near-duplicate of one (MinHash over character shingles,
`datasketch`). `assert_no_leak` re-checks the final splits and fails the stage if any got past.

    python -c "from tasks.prepare.golden import normalise; print(normalise('Where is  MY order?!'))"
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.config import DatasetSettings, Settings
from tasks.storage import layout
from tasks.storage.s3 import (
    ConcurrentUpdateError,
    encode_jsonl,
    get_json,
    get_jsonl,
    put_bytes_if,
    put_json_if,
    s3_client,
)

HASH_KEY = "sha256(conversation_id), first 8 bytes big-endian / 2**64"
NORMALISATION = "nfkc-casefold-alnum-v1"
SHINGLE = 4  # characters: short support messages are too short for word shingles
ASKING = {"customer", "user"}
ANSWERING = {"agent", "assistant"}


class GoldenSetPending(ValueError):
    """No golden set can be frozen from what has arrived so far; the run waits for more logs."""


class GoldenLeakError(RuntimeError):
    """A golden conversation reached train or validation despite the leak check."""


class GoldenRef(BaseModel):
    """The frozen golden set a run evaluates on, or why there is none yet."""

    key: str
    examples: int
    fraction: float
    pending: str | None = None  # set when nothing is frozen yet: the reason the run waits


def hash_fraction(conversation_id: str) -> float:
    """A stable number in [0, 1) per conversation, used to assign splits (HASH_KEY)."""
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def normalise(text: str) -> str:
    """The one normalisation (NORMALISATION): NFKC, case-folded, punctuation → space, squeezed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text)).strip()


def leak_key(turns: Iterable[tuple[str, str]]) -> str:
    """(role, text) turns → what the customer asked that got an answer, normalised.

    Turns after the last agent answer are not part of a training example (to_chat_example drops
    them), so they are not part of the key either: a re-sent conversation that ends in
    "thanks" has the same key as the original. Works for records and chat examples alike.
    """
    turns = list(turns)
    answered = max((i for i, (role, _) in enumerate(turns) if role in ANSWERING), default=-1)
    return normalise(" ".join(text for role, text in turns[: answered + 1] if role in ASKING))


def record_key(record: dict[str, Any]) -> str:
    return leak_key((m["role"], m["text"]) for m in record["messages"])


def example_key(example: dict[str, Any]) -> str:
    return leak_key((m["role"], m["content"]) for m in example["messages"])


def minhash(key: str, num_perm: int):
    from datasketch import MinHash

    signature = MinHash(num_perm=num_perm)
    padded = f" {key} "
    signature.update_batch(
        padded[i : i + SHINGLE].encode() for i in range(max(len(padded) - SHINGLE + 1, 1))
    )
    return signature


@dataclass
class FrozenGolden:
    """What training must never see of a golden set: ids, exact keys, near-duplicate index."""

    conversation_ids: frozenset[str]
    customer_keys: frozenset[str]
    fraction: float
    threshold: float
    num_perm: int
    _index: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from datasketch import MinHashLSH

        self._index = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        self._signatures = {}
        for n, key in enumerate(sorted(self.customer_keys)):
            self._signatures[n] = minhash(key, self.num_perm)
            self._index.insert(n, self._signatures[n])

    def leak_reason(self, conversation_id: str, key: str) -> str | None:
        """Why a conversation must stay out of training, or None if it may be trained on."""
        if conversation_id in self.conversation_ids:
            return "golden conversation id"
        if key in self.customer_keys:
            return "same customer message as a golden example"
        signature = minhash(key, self.num_perm)
        for n in self._index.query(signature):  # LSH candidates, confirmed on the estimate
            if signature.jaccard(self._signatures[n]) >= self.threshold:
                return "near-duplicate of a golden customer message"
        return None


def frozen_from_examples(examples: list[dict[str, Any]], manifest: dict[str, Any]) -> FrozenGolden:
    near = manifest["near_duplicate"]
    return FrozenGolden(
        conversation_ids=frozenset(e["metadata"]["conversation_id"] for e in examples),
        customer_keys=frozenset(example_key(e) for e in examples),
        fraction=manifest["fraction"],
        threshold=near["threshold"],
        num_perm=near["num_perm"],
    )


def frozen_from_records(records: list[dict[str, Any]], config: DatasetSettings) -> FrozenGolden:
    """The leak-check view of golden records being frozen now, with the configured settings."""
    return FrozenGolden(
        conversation_ids=frozenset(r["conversation_id"] for r in records),
        customer_keys=frozenset(record_key(r) for r in records),
        fraction=config.golden_fraction,
        threshold=config.near_duplicate_threshold,
        num_perm=config.minhash_num_perm,
    )


def manifest_for(config: DatasetSettings, examples: int, run_id: str) -> dict[str, Any]:
    return {
        "fraction": config.golden_fraction,
        "hash_key": HASH_KEY,
        "min_examples": config.golden_min_examples,
        "max_examples": config.golden_max_examples,
        "examples": examples,
        "normalisation": NORMALISATION,
        "near_duplicate": {
            "method": f"MinHash over {SHINGLE}-character shingles (datasketch)",
            "threshold": config.near_duplicate_threshold,
            "num_perm": config.minhash_num_perm,
        },
        "frozen_at": datetime.now(UTC).isoformat(),
        "run_id": run_id,
    }


def choose_golden(records: list[dict[str, Any]], config: DatasetSettings) -> list[dict[str, Any]]:
    """The lowest-hash conversations of the golden bucket, at most golden_max_examples.

    Raises GoldenSetPending when the bucket holds fewer than golden_min_examples.
    """
    ids = sorted(
        {r["conversation_id"] for r in records},
        key=hash_fraction,
    )
    in_bucket = [i for i in ids if hash_fraction(i) < config.golden_fraction]
    if len(in_bucket) < config.golden_min_examples:
        raise GoldenSetPending(
            f"waiting for more logs before freezing the golden set: {len(in_bucket)} of "
            f"{len(ids)} conversations fell in the golden bucket (`dataset.golden_fraction` = "
            f"{config.golden_fraction}), `dataset.golden_min_examples` is "
            f"{config.golden_min_examples}. Nothing was trained; the next run reads these logs "
            "again together with new ones. To freeze sooner, raise `dataset.golden_fraction` or "
            "lower `dataset.golden_min_examples`."
        )
    chosen = set(in_bucket[: config.golden_max_examples])
    by_time = sorted(records, key=lambda r: (r["timestamp"], r["conversation_id"]))
    seen: set[str] = set()
    golden = []
    for record in by_time:  # time order, first copy of an id: reruns give identical files
        if record["conversation_id"] in chosen and record["conversation_id"] not in seen:
            seen.add(record["conversation_id"])
            golden.append(record)
    return golden


def golden_keys(settings: Settings) -> tuple[str, str]:
    return layout.golden_data_key(settings.s3), layout.golden_manifest_key(settings.s3)


def load_golden(client: Any, settings: Settings) -> FrozenGolden | None:
    """The frozen golden set's leak-check view, or None if none was frozen yet."""
    data_key, manifest_key = golden_keys(settings)
    manifest = get_json(client, settings.s3.bucket, manifest_key).body
    if manifest is None:
        return None
    return frozen_from_examples(get_jsonl(client, settings.s3.bucket, data_key), manifest)


def freeze(
    client: Any,
    settings: Settings,
    examples: list[dict[str, Any]],
    run_id: str,
) -> FrozenGolden:
    """Write the golden set, then its manifest, each only if absent; the manifest is the commit
    point (a run that sees no manifest treats the set as not frozen). Losing a race to another
    first run keeps the other run's set."""
    data_key, manifest_key = golden_keys(settings)
    manifest = manifest_for(settings.dataset, len(examples), run_id)
    try:
        put_bytes_if(client, settings.s3.bucket, data_key, encode_jsonl(examples), None)
        put_json_if(client, settings.s3.bucket, manifest_key, manifest, None)
    except ConcurrentUpdateError:
        frozen = load_golden(client, settings)
        if frozen is None:
            raise
        return frozen
    return frozen_from_examples(examples, manifest)


@task
def golden_status(settings: Settings, redacted_key: str) -> GoldenRef:
    """Whether this run can be evaluated: the frozen set, or whether this batch can freeze one.

    Reads only; build_dataset does the freezing.
    """
    client = s3_client(settings.s3)
    data_key, _ = golden_keys(settings)
    frozen = load_golden(client, settings)
    if frozen is not None:
        return GoldenRef(
            key=data_key, examples=len(frozen.conversation_ids), fraction=frozen.fraction
        )
    records = get_jsonl(client, settings.s3.bucket, redacted_key)
    try:
        chosen = choose_golden(records, settings.dataset)
    except GoldenSetPending as waiting:
        return GoldenRef(
            key=data_key,
            examples=0,
            fraction=settings.dataset.golden_fraction,
            pending=str(waiting),
        )
    return GoldenRef(key=data_key, examples=len(chosen), fraction=settings.dataset.golden_fraction)


def assert_no_leak(
    splits: dict[str, list[dict[str, Any]]], golden: FrozenGolden, names=("train", "validation")
) -> None:
    """The last line of defence: fail the stage if any golden conversation reached training."""
    for name in names:
        for record in splits[name]:
            reason = golden.leak_reason(record["conversation_id"], record_key(record))
            if reason:
                raise GoldenLeakError(
                    f"conversation {record['conversation_id']} in `{name}` leaks the golden set "
                    f"({reason}); the dataset was not written. This is a bug in the split logic: "
                    "report it with the run id."
                )
