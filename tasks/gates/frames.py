"""The computed columns the suites validate: GX's row-condition expectations are SQL-only, so
the batch becomes pandas frames first.

- `conversation_frame`: one row per conversation (lengths, parsed timestamps, duplicate keys,
  leak counts from an independent PII detector, offensive flags from alt-profanity-check on
  each message);
- `mix_frame`: one row per intent / category with its share and its reference share;
- `segment_frame`: one row per customer segment compared with the rest.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import QualitySettings
from tasks.gates.pii_check import count_leaks
from tasks.gates.toxicity import profane_probability

ROLES = ("customer", "agent")


@dataclasses.dataclass
class SideTexts:
    """One side's texts: joined per conversation, and on their own where a conversation has
    several messages on this side (toxicity: one insult among long, polite replies is diluted
    below the threshold when they are classified as one text)."""

    joined: pd.Series  # one text per conversation, its messages joined by newlines
    split: list[str]  # each message of the conversations with several on this side
    split_rows: array  # each of those messages' frame row, as int64 (Python ints are 36 B)


def _side_texts(records: list[dict[str, Any]]) -> dict[str, SideTexts]:
    """Per role, its texts in every conversation, joined by newlines and one by one."""
    joined: dict[str, list[str]] = {role: [] for role in ROLES}
    split: dict[str, list[str]] = {role: [] for role in ROLES}
    split_rows = {role: array("q") for role in ROLES}
    for row, record in enumerate(records):
        said: dict[str, list[str]] = {role: [] for role in ROLES}
        for message in record.get("messages", ()):
            texts = said.get(message.get("role"))
            if texts is not None:
                texts.append(message.get("text", ""))
        for role, texts in said.items():
            joined[role].append("\n".join(texts))
            if len(texts) > 1:
                split[role] += texts
                split_rows[role].extend([row] * len(texts))
    # the joined Python strings are dropped once in Arrow: ~1 GB on a million 3-turn records
    return {
        role: SideTexts(pd.Series(joined.pop(role), dtype="str"), split[role], split_rows[role])
        for role in ROLES
    }


FRAME_FIELDS = (
    "conversation_id",
    "timestamp",
    "channel",
    "language",
    "intent",
    "category",
    "resolved",
    "csat",
)


def conversation_frame(
    records: Iterable[dict[str, Any]],
    config: QualitySettings | None = None,
    allow_list: Iterable[str] = (),
) -> pd.DataFrame:
    """One row per conversation with the columns the suites check. Texts are used to compute
    columns and then dropped, so a million-record frame stays small. Built column by column
    (one pass over the records per field): a million records take about a second."""
    config = config or QualitySettings()
    records = records if isinstance(records, list) else list(records)
    columns = {
        name: pd.Series([r.get(name) for r in records], dtype="object") for name in FRAME_FIELDS
    }
    columns["segments"] = pd.Series([r.get("segments") or [] for r in records], dtype="object")
    sides = _side_texts(records)
    frame = pd.DataFrame(columns)
    del columns
    customer, agent = sides["customer"].joined, sides["agent"].joined
    frame["customer_chars"] = customer.str.len().astype("int64")
    frame["agent_chars"] = agent.str.len().astype("int64")
    parsed = pd.to_datetime(frame.pop("timestamp"), errors="coerce", utc=True, format="ISO8601")
    frame["timestamp_epoch"] = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    frame["content_key"] = pd.util.hash_pandas_object(customer + "\0" + agent, index=False)
    frame["resolved"] = pd.to_numeric(frame["resolved"], errors="coerce").astype("float64")
    frame["csat"] = pd.to_numeric(frame["csat"], errors="coerce").astype("float64")
    allow_list = list(allow_list)
    # per side: replies repeat more than whole conversations, and each distinct text is
    # checked once
    leaks = count_leaks(customer, allow_list) + count_leaks(agent, allow_list)
    frame = pd.concat([frame, leaks], axis=1)
    for role, side_texts in sides.items():
        frame[f"{role}_offensive"] = _offensive(side_texts, config)
    return frame


def _offensive(side: SideTexts, config: QualitySettings) -> np.ndarray:
    """1.0 for each conversation where the classifier flags one of this side's messages. Each
    distinct text is classified once: support replies repeat templates a lot."""
    split_rows = np.asarray(side.split_rows)
    whole = np.ones(len(side.joined), dtype=bool)  # at most one message: the joined text is it
    whole[split_rows] = False
    # the texts stay in the Arrow buffers pandas holds them in: a list of a million Python
    # strings per side is ~0.8 GB more at the peak (measured)
    texts = pd.concat([side.joined[whole], pd.Series(side.split, dtype="str")], ignore_index=True)
    rows = np.concatenate([np.flatnonzero(whole), split_rows])
    codes, distinct = pd.factorize(texts)
    flagged = (profane_probability(distinct) >= config.offensive_probability)[codes]
    return (np.bincount(rows[flagged], minlength=len(side.joined)) > 0).astype("float64")


def share_of(values: pd.Series) -> pd.Series:
    return values.dropna().value_counts(normalize=True)


def js_divergence(batch: pd.Series, reference: pd.Series) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two category mixes."""
    from scipy.spatial.distance import jensenshannon

    labels = sorted(set(batch.index) | set(reference.index))
    p = batch.reindex(labels, fill_value=0).to_numpy()
    q = reference.reindex(labels, fill_value=0).to_numpy()
    return float(jensenshannon(p, q, base=2) ** 2)


def mix_frame(frame: pd.DataFrame, reference: pd.Series | None) -> pd.DataFrame:
    """One row per intent and per category: its share, and against the reference category
    mix its reference share and the batch's Jensen-Shannon divergence."""
    rows = []
    for field in ("intent", "category"):
        for value, share in share_of(frame[field]).items():
            rows.append({"field": field, "value": str(value), f"{field}_share": share})
    mix = pd.DataFrame(rows, columns=["field", "value", "intent_share", "category_share"])
    mix["reference_share"] = np.nan
    mix["reference_category_share"] = np.nan
    mix["js_divergence"] = np.nan
    categories = share_of(frame["category"])
    if reference is None or reference.empty or categories.empty:
        return mix
    batch_size = int(frame["category"].notna().sum())
    for value, ref_share in reference.items():
        is_row = (mix["field"] == "category") & (mix["value"] == str(value))
        if not is_row.any():
            mix = pd.concat(
                [
                    mix,
                    pd.DataFrame(
                        [{"field": "category", "value": str(value), "category_share": 0.0}]
                    ),
                ],
                ignore_index=True,
            )
            is_row = (mix["field"] == "category") & (mix["value"] == str(value))
        mix.loc[is_row, "reference_share"] = ref_share
        # gated only where the batch is big enough to expect 5 of them: absence is then news
        if ref_share * batch_size >= 5:
            mix.loc[is_row, "reference_category_share"] = mix.loc[is_row, "category_share"]
    mix["js_divergence"] = js_divergence(categories, reference)
    return mix


def segment_frame(frame: pd.DataFrame, config: QualitySettings) -> pd.DataFrame:
    """Each customer segment vs the rest of the batch: reply length ratio, resolution-rate and
    CSAT gaps. Gaps need enough labelled conversations on both sides, else they stay empty."""
    columns = ["segment", "conversations", "reply_length_ratio", "resolution_gap", "csat_gap"]
    exploded = frame[["segments"]].explode("segments").dropna()
    minimum = config.segment_min_conversations
    rows = []
    for segment, members in exploded.groupby("segments").groups.items():
        inside = frame.index.isin(members)
        if inside.sum() < minimum or (~inside).sum() < minimum:
            continue
        mean_in = frame.loc[inside, "agent_chars"].mean()
        mean_out = frame.loc[~inside, "agent_chars"].mean()
        rows.append(
            {
                "segment": str(segment),
                "conversations": int(inside.sum()),
                "reply_length_ratio": mean_in / mean_out if mean_out else np.nan,
                "resolution_gap": _gap(frame["resolved"], inside, minimum),
                "csat_gap": _gap(frame["csat"], inside, minimum),
            }
        )
    return pd.DataFrame(rows, columns=columns).astype(
        {c: "float64" for c in columns[2:]}, errors="ignore"
    )


def _gap(values: pd.Series, inside: np.ndarray, minimum: int) -> float:
    a, b = values[inside].dropna(), values[~inside].dropna()
    if len(a) < minimum or len(b) < minimum:
        return np.nan
    return abs(float(a.mean()) - float(b.mean()))


def reference_mix(rows: Iterable[dict[str, Any]]) -> pd.Series | None:
    """Category mix of support-log records or of chat examples with metadata (the golden set)."""
    categories = [r.get("category") or (r.get("metadata") or {}).get("category") for r in rows]
    series = share_of(pd.Series([c for c in categories if c], dtype="object"))
    return series if not series.empty else None
