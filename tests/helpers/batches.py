"""Batches of support logs built for the gate tests: varied channels, lengths and styles, with
one defect planted per "bad input" case (the suites must not only know the Bitext sample)."""

from __future__ import annotations

import random
from typing import Any

INTENTS = {
    "ORDER": ["cancel_order", "track_order", "change_order"],
    "REFUND": ["get_refund", "check_refund_policy"],
    "ACCOUNT": ["create_account", "recover_password", "delete_account"],
    "SHIPPING": ["change_shipping_address", "delivery_options"],
    "PAYMENT": ["payment_issue", "check_payment_methods"],
}
CHANNELS = ["chat", "email", "web_form", "phone", "social"]
OPENERS = ["hi", "Hello,", "hey there", "Good morning.", "yo", "Dear support team,"]
ASKS = [
    "I need help with my {what}, it has been {n} days",
    "can u help me with {what} pls",
    "Could you please assist me regarding the {what}? Order {{{{Order Number}}}}.",
    "whats going on with my {what}??",
]
REPLIES = [
    "I understand how important your {what} is. Please open your account, choose the order and "
    "follow the steps shown; I will stay with you until it is done.",
    "Thank you for reaching out about your {what}. I have checked the details and everything is "
    "now in order. Is there anything else I can help you with today?",
    "Sorry for the trouble with your {what}. You can manage it from the 'Orders' page; it usually "
    "takes {n} minutes. Let me know if anything is unclear.",
]
SEGMENTS = ["polite", "colloquial", "typos", "offensive", "formal"]
INSULTS = [
    "You are a stupid idiot, figure it out yourself.",
    "What a dumb fucking question, read the damn page.",
    "Shut up, you moron, I am not helping you.",
]


def conversation(i: int, rng: random.Random, **overrides: Any) -> dict[str, Any]:
    category = rng.choice(sorted(INTENTS))
    intent = rng.choice(INTENTS[category])
    what = intent.replace("_", " ")
    ask = f"{rng.choice(OPENERS)} {rng.choice(ASKS).format(what=what, n=rng.randint(1, 9))}"
    reply = rng.choice(REPLIES).format(what=what, n=rng.randint(2, 30))
    record = {
        "conversation_id": f"conv-{i:06d}",
        "timestamp": f"2026-11-{rng.randint(1, 20):02d}T{rng.randint(0, 23):02d}:15:00Z",
        "channel": rng.choice(CHANNELS),
        "language": "en",
        "intent": intent,
        "category": category,
        "segments": rng.sample(SEGMENTS, rng.randint(1, 2)),
        "resolved": rng.random() < 0.85,
        "csat": rng.randint(3, 5),
        "messages": [{"role": "customer", "text": ask}, {"role": "agent", "text": reply}],
    }
    record.update(overrides)
    return record


def clean_batch(n: int = 400, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [conversation(i, rng) for i in range(n)]


def with_offensive_agents(batch: list[dict[str, Any]], share: float) -> list[dict[str, Any]]:
    for i, record in enumerate(batch[: int(len(batch) * share)]):
        record["messages"][-1]["text"] = INSULTS[i % len(INSULTS)]
    return batch


def with_dominant_intent(batch: list[dict[str, Any]], share: float) -> list[dict[str, Any]]:
    for record in batch[: int(len(batch) * share)]:
        record["intent"], record["category"] = "track_order", "ORDER"
    return batch


def with_short_segment_replies(batch: list[dict[str, Any]], segment: str) -> list[dict[str, Any]]:
    for record in batch:
        if segment in record["segments"]:
            record["messages"][-1]["text"] = "See FAQ."
    return batch


def without_field(batch: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    for record in batch:
        record.pop(field, None)
    return batch
