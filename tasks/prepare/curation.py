"""Curation: which redacted records become training examples, one record at a time.

- `to_chat_or_reason`: a record → the OpenAI chat format, or the reason it cannot be one. A
  record that cannot be converted (no agent reply after a customer turn once `system` notes are
  left out, say) is quarantined with that reason; it never stops the run.
- `select_best`: learn from the best. Only conversations that meet the configured quality
  signals are trained on (resolved, CSAT at or above a bar when present, agent reply length
  within bounds); the others are kept for evaluation and counted per reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tasks.config import CurationSettings

ROLE_TO_CHAT = {"customer": "user", "agent": "assistant"}
# Turns that are not part of the dialogue (platform notes, transfers): left out of examples.
SKIPPED_ROLES = frozenset({"system"})


def to_chat_or_reason(
    record: dict[str, Any], system_prompt: str
) -> tuple[dict[str, Any] | None, str | None]:
    """(example, None) or (None, reason). The example ends at the last agent turn: trailing
    customer turns have no answer to learn from."""
    turns = []
    for message in record.get("messages") or []:
        role, text = message.get("role"), message.get("text")
        if role in SKIPPED_ROLES:
            continue
        if role not in ROLE_TO_CHAT:
            return None, f"unknown message role {str(role)[:40]!r}"
        if not isinstance(text, str) or not text.strip():
            return None, "message without text"
        turns.append({"role": ROLE_TO_CHAT[role], "content": text})
    while turns and turns[-1]["role"] != "assistant":
        turns.pop()
    if not any(t["role"] == "user" for t in turns):
        return None, "no agent reply after a customer message"
    return {"messages": [{"role": "system", "content": system_prompt}, *turns]}, None


def split_convertible(
    records: list[dict[str, Any]], system_prompt: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records that convert, and quarantine rows (source pointer + reason) for the rest."""
    kept, rejected = [], []
    for record in records:
        _, reason = to_chat_or_reason(record, system_prompt)
        if reason is None:
            kept.append(record)
        else:
            rejected.append(quarantine_row(record, f"cannot build a chat example: {reason}"))
    return kept, rejected


def quarantine_row(record: dict[str, Any], reason: str) -> dict[str, Any]:
    source = record.get("_source") or {}
    return {
        "source_key": source.get("key"),
        "line": source.get("line"),
        "reason": reason,
        "conversation_id": record.get("conversation_id"),
    }


def below_bar_reason(record: dict[str, Any], config: CurationSettings) -> str | None:
    """Why a conversation is not good enough to learn from, or None."""
    if config.require_resolved and record.get("resolved") is False:
        return "not resolved"
    csat = record.get("csat")
    if csat is not None and csat < config.min_csat:
        return f"csat below {config.min_csat}"
    replies = [m.get("text", "") for m in record.get("messages", []) if m.get("role") == "agent"]
    longest = max((len(r) for r in replies), default=0)
    if longest < config.min_reply_chars:
        return f"agent reply shorter than {config.min_reply_chars} chars"
    if longest > config.max_reply_chars:
        return f"agent reply longer than {config.max_reply_chars} chars"
    return None


def select_best(
    records: list[dict[str, Any]], config: CurationSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter[str]]:
    """(kept for training, dropped, drop counts per reason)."""
    kept, dropped, reasons = [], [], Counter()
    for record in records:
        reason = below_bar_reason(record, config)
        if reason is None:
            kept.append(record)
        else:
            dropped.append(record)
            reasons[reason] += 1
    return kept, dropped, reasons
