"""Chat-format fine-tuning files: good ones, and one broken line of each kind."""

from __future__ import annotations

import json
import random

CHANNEL_STYLES = [
    ("Hi, my order #{n} never arrived.", "Sorry about that! I've re-sent order {n}."),
    ("pls cancel subscription asap!!", "Done: your subscription ends today. Anything else?"),
    ("Bonjour, je voudrais un remboursement pour la commande {n}.", "Le remboursement est lancé."),
    ("Where can I find invoice {n}? I looked everywhere " * 3, "Under Account → Invoices."),
]


def good_example(n: int, rng: random.Random) -> dict:
    user, agent = rng.choice(CHANNEL_STYLES)
    messages = [{"role": "system", "content": "You are a support assistant."}]
    for turn in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": user.format(n=n + turn)})
        messages.append({"role": "assistant", "content": agent.format(n=n + turn)})
    return {"messages": messages}


def good_lines(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [json.dumps(good_example(n, rng), ensure_ascii=False) for n in range(count)]


BROKEN = {
    "invalid_json": '{"messages": [{"role": "user", "content": "hi"}',
    "data_type": '["not", "an", "object"]',
    "missing_messages_list": '{"prompt": "hi", "completion": "hello"}',
    "message_not_object": '{"messages": ["hi", {"role": "assistant", "content": "x"}]}',
    "message_missing_key": '{"messages": [{"content": "hi"},'
    ' {"role": "assistant", "content": "x"}]}',
    "message_unrecognized_key": '{"messages": [{"role": "user", "content": "hi", "mood": "angry"},'
    ' {"role": "assistant", "content": "x"}]}',
    "unrecognized_role": '{"messages": [{"role": "customer", "content": "hi"},'
    ' {"role": "assistant", "content": "x"}]}',
    "missing_content": '{"messages": [{"role": "user", "content": 42},'
    ' {"role": "assistant", "content": "x"}]}',
    "invalid_weight": '{"messages": [{"role": "user", "content": "hi"},'
    ' {"role": "assistant", "content": "x", "weight": 0.5}]}',
    "example_missing_assistant_message": '{"messages": [{"role": "user", "content": "hi"}]}',
    "blank_line": "   ",
}
