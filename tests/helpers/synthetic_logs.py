"""Synthetic support logs for drift tests: not Bitext, with their own products, channels, styles,
lengths and mistakes, so the statistics are checked on data the project has not seen.

`make_logs(n, seed)` draws from one distribution; the keyword arguments move it the ways real
traffic moves: a new product line, another writing style for the replies, longer messages.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

TOPICS = {
    "ORDERS": {
        "track_order": [
            "where is my order {order}",
            "hi, my parcel {order} still hasnt arrived, can you check",
            "order {order} tracking says pending for days??",
        ],
        "cancel_order": [
            "please cancel order {order}",
            "I want to cancel the {product} I ordered yesterday",
            "how can i stop order {order} before it ships",
        ],
    },
    "BILLING": {
        "refund_status": [
            "when do I get my refund for the {product}",
            "refund for {order} not received yet",
            "still waiting on money back for order {order}",
        ],
        "wrong_charge": [
            "you charged me twice for {product}",
            "there is an extra charge on my card for {order}",
        ],
    },
    "ACCOUNT": {
        "reset_password": [
            "cant log in, need a password reset",
            "forgot my password again, help",
            "the reset link for my account doesn't work",
        ],
        "delete_account": ["please delete my account", "how do I close my account for good"],
    },
    "DEVICES": {
        "setup_device": [
            "how do i pair the {product} with my phone",
            "{product} won't turn on after charging",
            "setting up {product}, the app cant find it",
        ],
    },
}
NEW_TOPIC = {
    "SOLAR": {
        "panel_output": [
            "my rooftop solar array from {product} produces far less kilowatt output this week",
            "inverter of the {product} photovoltaic kit shows fault code E{order}",
        ],
        "installer_visit": [
            "when will the installer come to mount the {product} panels on my roof",
            "reschedule the photovoltaic installation appointment for {product}",
        ],
    }
}
PRODUCTS = ["AeroBuds", "Kettle One", "HomeHub mini", "TrailWatch 3", "DeskLamp Pro"]
NEW_PRODUCTS = ["SunPeak 400", "HelioGrid X", "PhotonRoof"]
REPLIES = [
    "Sorry about that. I checked {order} and it is on its way.",
    "Thanks for reaching out. I have sent the steps to your email.",
    "I can help. Please confirm the email on your account.",
    "Done, the change is made. Anything else?",
    "I understand. I have escalated this to our team; expect an update within a day.",
]
FORMAL_OPENERS = [
    "Dear valued customer, we sincerely appreciate your patience regarding this matter.",
    "Good afternoon, and thank you most kindly for contacting our customer care department.",
]
FORMAL_BODY = [
    "Please be assured that a dedicated specialist has reviewed the circumstances of your "
    "request in considerable detail, including reference {order}.",
    "We have taken the liberty of documenting every step undertaken thus far, so that any "
    "colleague may continue seamlessly should you contact us again.",
    "Should the resolution outlined herein prove unsatisfactory in any respect, kindly reply "
    "to this correspondence and we shall endeavour to remedy the situation promptly.",
    "Furthermore, as a gesture of goodwill, we would be delighted to extend complimentary "
    "priority handling to all of your forthcoming enquiries.",
]
FORMAL_CLOSERS = ["Yours faithfully, the Customer Care Team.", "With warmest regards, Support."]
CHANNELS = ["chat", "email", "whatsapp", "phone_transcript"]
FILLERS = [
    "thanks",
    "asap please",
    "this is the second time I ask",
    "",
    "",
    "ok?",
    "really annoyed tbh",
]


def _typo(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters in one word: the mistakes customers make."""
    words = text.split()
    i = rng.randrange(len(words))
    if len(words[i]) > 3:
        j = rng.randrange(len(words[i]) - 1)
        w = words[i]
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def make_logs(
    n: int,
    seed: int,
    *,
    new_topic_share: float = 0.0,
    formal_replies: bool = False,
    longer_messages: bool = False,
    start: datetime | None = None,
    id_prefix: str = "syn",
) -> list[dict[str, Any]]:
    """n support-log records (the docs/design.md contract) drawn with `seed`."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 1, tzinfo=UTC)
    records = []
    for i in range(n):
        new = rng.random() < new_topic_share
        topics = NEW_TOPIC if new else TOPICS
        category = rng.choice(sorted(topics))
        intent = rng.choice(sorted(topics[category]))
        slots = {
            "order": str(rng.randrange(10_000, 99_999)),
            "product": rng.choice(NEW_PRODUCTS if new else PRODUCTS),
        }
        customer = rng.choice(topics[category][intent]).format(**slots)
        customer = f"{customer} {rng.choice(FILLERS)}".strip()
        if rng.random() < 0.2:
            customer = _typo(customer, rng)
        if longer_messages:
            customer += " " + " ".join(
                rng.choice(topics[category][intent]).format(**slots) for _ in range(3)
            )
        if formal_replies:
            body = rng.sample(FORMAL_BODY, k=rng.randint(2, 4))
            agent = " ".join(
                [rng.choice(FORMAL_OPENERS), *body, rng.choice(FORMAL_CLOSERS)]
            ).format(**slots)
        else:
            agent = " ".join(rng.sample(REPLIES, k=rng.randint(1, 2))).format(**slots)
        messages = [{"role": "customer", "text": customer}, {"role": "agent", "text": agent}]
        if rng.random() < 0.3:  # some conversations go on for another exchange
            messages += [
                {"role": "customer", "text": rng.choice(["thanks", "when?", "still broken"])},
                {"role": "agent", "text": rng.choice(REPLIES).format(**slots)},
            ]
        records.append(
            {
                "conversation_id": f"{id_prefix}-{seed}-{i:05d}",
                "timestamp": (start + timedelta(minutes=7 * i)).isoformat(),
                "channel": rng.choice(CHANNELS),
                "language": "en",
                "messages": messages,
                "intent": intent,
                "category": category,
            }
        )
    return records
