"""Builds the generated part of tests/data/pii_labelled.jsonl: support messages with personal
data in realistic formats (phone numbers of several countries and notations, payment cards of
several networks with a valid Luhn digit, IBANs of several countries with valid check digits,
e-mails, IPs, US SSNs and person names inside sentences), plus look-alikes that must survive
(order and invoice numbers, dates, prices, tracking codes, product names).

Rows it wrote carry `"source": "generated"`; the hand-written rows of the file are kept as they
are, first. Seeded: the same file every time.

    .venv/bin/python tests/data/make_pii_labelled.py && .venv/bin/python bench/data_gates.py pii
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

OUT = Path(__file__).with_name("pii_labelled.jsonl")
rng = random.Random(20261123)


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


# ------------------------------------------------------------------ payment cards


def luhn_complete(partial: str) -> str:
    """`partial` followed by the digit that makes the Luhn checksum 0."""
    total = 0
    for position, digit in enumerate(int(d) for d in reversed(partial + "0")):
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return partial + str((10 - total % 10) % 10)


# network: (prefixes, length, grouping)
CARD_NETWORKS = {
    "visa": (["4"], 16, (4, 4, 4, 4)),
    "mastercard": (["51", "53", "55", "2221", "2720", "2500"], 16, (4, 4, 4, 4)),
    "amex": (["34", "37"], 15, (4, 6, 5)),
    "discover": (["6011", "65", "644"], 16, (4, 4, 4, 4)),
    "jcb": (["3528", "3566", "3589"], 16, (4, 4, 4, 4)),
    "diners": (["300", "305", "36", "38"], 14, (4, 6, 4)),
    "unionpay": (["62"], 16, (4, 4, 4, 4)),
}


def card(network: str, separator: str) -> str:
    prefixes, length, grouping = CARD_NETWORKS[network]
    prefix = rng.choice(prefixes)
    number = luhn_complete(prefix + digits(length - len(prefix) - 1))
    groups, start = [], 0
    for size in grouping:
        groups.append(number[start : start + size])
        start += size
    return separator.join(groups)


# ------------------------------------------------------------------ IBANs


# country: BBAN layout, as (kind, length) parts: n digits, a upper-case letters, c alphanumeric
IBAN_LAYOUTS = {
    "DE": [("n", 8), ("n", 10)],
    "GB": [("a", 4), ("n", 6), ("n", 8)],
    "FR": [("n", 5), ("n", 5), ("c", 11), ("n", 2)],
    "ES": [("n", 4), ("n", 4), ("n", 2), ("n", 10)],
    "IT": [("a", 1), ("n", 5), ("n", 5), ("c", 12)],
    "NL": [("a", 4), ("n", 10)],
    "BE": [("n", 12)],
    "CH": [("n", 5), ("c", 12)],
    "AT": [("n", 5), ("n", 11)],
    "PL": [("n", 8), ("n", 16)],
    "IE": [("a", 4), ("n", 6), ("n", 8)],
    "PT": [("n", 21)],
    "SE": [("n", 3), ("n", 17)],
    "DK": [("n", 4), ("n", 10)],
}


def bban(country: str) -> str:
    alphabet = {"n": string.digits, "a": string.ascii_uppercase}
    alphabet["c"] = string.ascii_uppercase + string.digits
    return "".join(
        "".join(rng.choice(alphabet[kind]) for _ in range(length))
        for kind, length in IBAN_LAYOUTS[country]
    )


def iban(country: str, grouped: bool) -> str:
    """ISO 13616: check digits = 98 - (BBAN + country + "00" as a number) mod 97."""
    basic = bban(country)
    number = int("".join(str(int(c, 36)) for c in basic + country + "00"))
    compact = f"{country}{98 - number % 97:02d}{basic}"
    if not grouped:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


# ------------------------------------------------------------------ phone numbers


def phones() -> list[str]:
    """Numbers in the ranges each country gives subscribers, in the notations people type."""
    us_area = ["212", "415", "646", "312", "617", "206", "503", "713", "305", "404"]
    out = []
    for _ in range(3):
        area, line = rng.choice(us_area), digits(4)
        exchange = str(rng.randint(201, 989))
        out += [
            f"+1 {area}-{exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"({area}) {exchange}-{line}",
            f"1-{area}-{exchange}-{line}",
            f"+1.{area}.{exchange}.{line}",
        ]
    for _ in range(3):  # UK: London landlines, mobiles 07[4-9]
        mobile = f"7{rng.choice('4589')}{digits(2)} {digits(6)}"
        london = f"{rng.choice('378')}{digits(3)} {digits(4)}"
        out += [f"+44 {mobile}", f"0{mobile}", f"+44 (0)20 {london}", f"020 {london}"]
        out += [f"+44{mobile.replace(' ', '')}"]
    for _ in range(3):  # Germany: Berlin/Munich landlines, mobiles 015x-017x
        mobile = f"1{rng.choice(['51', '52', '60', '70', '71', '76'])}"
        out += [
            f"+49 30 {digits(8)}",
            f"030 {digits(4)} {digits(4)}",
            f"+49 {mobile} {digits(8)}",
            f"0{mobile} {digits(7)}",
            f"+49 (0)89 {digits(3)} {digits(4)}",
        ]
    for _ in range(3):  # France: 01-05 landlines, 06/07 mobiles, pairs of digits
        pairs = " ".join(digits(2) for _ in range(4))
        mobile = rng.choice("67")
        out += [
            f"+33 {mobile} {pairs}",
            f"0{mobile} {pairs}",
            f"0{rng.choice('12345')}.{pairs.replace(' ', '.')}",
            f"+33 (0){rng.choice('12345')} {pairs}",
        ]
    for _ in range(3):  # India: mobiles start with 6-9
        mobile = f"{rng.choice('6789')}{digits(4)}"
        rest = digits(5)
        out += [f"+91 {mobile} {rest}", f"+91-{mobile}{rest}", f"0{mobile} {rest}"]
        out += [f"{mobile}-{rest}"]
    return out


# ------------------------------------------------------------------ people, mail, hosts

NAMES = [
    "Laura Whitfield",
    "Ahmed Hassan",
    "Björn Lindqvist",
    "Zoë Martin",
    "José García",
    "Nguyen Van An",
    "Siobhán O'Connor",
    "Jean-Luc Moreau",
    "Olga Petrova",
    "Kenji Watanabe",
    "Chiara Rossi",
    "Mohammed Al-Rashid",
    "Anna Kowalczyk",
    "Lucas Oliveira",
    "Ingrid Hansen",
    "Priya Raman",
    "Thomas Müller",
    "Fiona MacLeod",
    "Wei Zhang",
    "Isabella Costa",
    "Dmitri Volkov",
    "Amara Okafor",
    "Pieter de Vries",
    "Sven Eriksson",
    "Yuki Nakamura",
    "Carmen Ruiz",
    "Rahul Sharma",
    "Hannah Schneider",
    "Mateus Pereira",
    "Grace Kim",
    "Oluwaseun Adeyemi",
    "Elif Y\u0131lmaz",  # dotless i
    "Marco Bianchi",
    "Sarah O'Brien",
    "David Levi",
]
FIRST_NAMES = ["Sarah", "Marco", "Priya", "Tom", "Aisha", "Lena", "Javier", "Mei"]
NAME_SENTENCES = [
    "Hi, my name is {v} and my parcel is late",
    "{v} here, I still have not received a refund",
    "Please update the delivery address for {v}.",
    "The order was placed by my colleague {v} last Tuesday",
    "Dear {v}, thank you for contacting us.",
    "Can you transfer the account to {v}?",
    "Regards, {v}",
    "I am writing on behalf of {v} who cannot log in",
    "Kind regards,\n{v}",
    "hello, {v} speaking, the app keeps crashing",
]
FIRST_NAME_SENTENCES = [
    "Hi {v}, your replacement ships tomorrow.",
    "Thanks {v}! That fixed it.",
    "Sorry for the wait, {v}. I have escalated the ticket.",
]
EMAIL_USERS = [
    "laura.whitfield",
    "a.hassan84",
    "bjorn+returns",
    "zoe_martin",
    "jgarcia",
    "nvan.an",
    "s.oconnor",
    "jl-moreau",
    "olga.p",
    "kenji.w",
    "chiara1990",
    "m.alrashid",
    "anna.k",
    "lucas_oliveira",
    "ingrid",
    "priya.raman",
    "t.mueller",
    "fiona.macleod",
    "wei.zhang",
]
EMAIL_DOMAINS = [
    "gmail.com",
    "outlook.com",
    "web.de",
    "orange.fr",
    "yahoo.co.uk",
    "hotmail.it",
    "mail.ru",
    "uol.com.br",
    "rediffmail.com",
    "icloud.com",
    "proton.me",
    "company.co.jp",
    "students.uni-mannheim.de",
    "gmx.at",
    "shop-owner.store",
]
EMAIL_SENTENCES = [
    "please send the receipt to {v}",
    "My e-mail is {v}, can you check the account?",
    "I registered with {v} but never got the code",
    "{v} is my new address, update it please",
    "Contact me at <{v}> about the return",
    "cc {v} on the reply please.",
]
PHONE_SENTENCES = [
    "you can reach me on {v}",
    "My phone number is {v}.",
    "Please call {v} between 9 and 5",
    "new number: {v}",
    "{v} is the best number to call",
    "whatsapp me at {v} if the courier is late",
    "Tel. {v}",
]
CARD_SENTENCES = [
    "I was charged twice on card {v}",
    "the card number is {v}, expiry 08/27",
    "Please refund to {v}.",
    "payment with {v} failed three times",
    "My new card: {v}",
]
IBAN_SENTENCES = [
    "Please refund the money to IBAN {v}",
    "My bank account is {v}.",
    "transfer it to {v} instead of the card",
    "IBAN: {v}, account holder is me",
    "The refund went to {v} but it was my old account",
]
IP_SENTENCES = [
    "someone logged in from {v} last night",
    "My router shows {v} as the address",
    "the error page said client {v} is blocked",
]
SSN_SENTENCES = [
    "for the tax form my SSN is {v}",
    "social security number {v}",
    "The W-9 has {v} on it.",
]

# Written after the redactor's name cues (tasks/ingest/pii.py) were set, in other phrasings, to see
# how they carry over; lower-case names included (the redactor keeps only capitalised ones).
HELD_OUT_NAMES = [
    ("The package was signed for by {v} at reception", "Tomasz Wiśniewski"),
    ("Ask {v} in billing, she knows the case", "Mei Ling Chua"),
    ("Account holder: {v}", "Rosa Delgado"),
    ("my son {v} ordered it with my card", "Lukas Becker"),
    ("Please cancel {v}'s subscription", "Hamid Rezaei"),
    ("{v} from the Leeds branch called twice", "Gareth Pritchard"),
    ("Good morning {v}, the refund is on its way", "Ms Adebayo"),
    ("hi my name is {v} and i need help", "maria lopez"),
    ("it's for {v}, he is my flatmate", "alex turner"),
    ("the courier left it with {v} next door", "Ruth Abernathy"),
]
# Look-alikes: none of these is personal data; each must come out unchanged.
LOOK_ALIKES = [
    "Where is order #ORD-2026-55812?",
    "My order number is 4501938271 and it has not shipped",
    "order 113542617735902 was cancelled by mistake",
    "Invoice INV-0048213 shows the wrong total",
    "invoice no. 2026/11/00731 is attached",
    "The parcel was due on 2026-11-21 and is still missing",
    "It arrived on 21.11.2026 at 14:30.",
    "delivered Nov 21, 2026 between 10:00 and 12:00",
    "I was charged $1,249.99 instead of $249.99",
    "the price dropped to €1.299,00 the next day",
    "refund of 59,90 EUR please",
    "UPS tracking 1Z 999 AA1 01 2345 6784",
    "USPS tracking number 9400 1000 0000 0000 0000 00",
    "DHL tracking JD014600006281234567",
    "Royal Mail tracking AB123456789GB",
    "FedEx 7946 1234 5678",
    "I bought the Galaxy S24 Ultra and the screen flickers",
    "my iPhone 15 Pro Max will not charge",
    "The ThinkPad X1 Carbon Gen 11 arrived damaged",
    "the Dyson V15 Detect lost suction",
    "Kindle Paperwhite keeps restarting",
    "model number KD-55X85K, serial 4009213",
    "error code 0x80070005 when I install the update",
    "app version 3.14.2 (build 20261121) crashes on start",
    "Use promo code WINTER25 for 25% off",
    "gift card balance shows 150.00 USD",
    "the box is 40 x 30 x 20 cm and weighs 2.5 kg",
    "Postcode SW1A 1AA, flat 4B",
    "the warehouse is at 1600 Amphitheatre Parkway",
    "ticket 20261121-0042 was closed without an answer",
    "case #CS-884213 is still open",
    "SKU 8806090572449 is out of stock",
    "booking reference K7XQ2M for 2 adults",
    "subscription renews on 01/12/2026 for 9.99",
    "my loyalty number is 00 4821 339",
    "return label RMA-77812-B",
    "I ordered 3 items, 2 arrived",
    "batch 2026-W47 was recalled",
    "The Thinkpad T14s is listed at 1,099.00",
    "Click 'Track Order' then 'Request Refund'",
]


def row(template: str, kind: str, value: str) -> dict:
    return {"text": template.format(v=value), "entities": [{"type": kind, "value": value}]}


def generated() -> list[dict]:
    rows = []
    for i, number in enumerate(phones()):
        rows.append(row(PHONE_SENTENCES[i % len(PHONE_SENTENCES)], "PHONE", number))
    networks = list(CARD_NETWORKS)
    for i in range(42):
        value = card(networks[i % len(networks)], [" ", "-", ""][i % 3])
        rows.append(row(CARD_SENTENCES[i % len(CARD_SENTENCES)], "CREDIT_CARD", value))
    countries = list(IBAN_LAYOUTS)
    for i in range(42):
        value = iban(countries[i % len(countries)], grouped=i % 3 != 2)
        rows.append(row(IBAN_SENTENCES[i % len(IBAN_SENTENCES)], "IBAN", value))
    for i, user in enumerate(EMAIL_USERS * 2):
        value = f"{user}@{EMAIL_DOMAINS[i % len(EMAIL_DOMAINS)]}"
        value = value.upper() if i % 11 == 5 else value
        rows.append(row(EMAIL_SENTENCES[i % len(EMAIL_SENTENCES)], "EMAIL", value))
    for i, name in enumerate(NAMES * 2):
        rows.append(row(NAME_SENTENCES[i % len(NAME_SENTENCES)], "PERSON", name))
    for i, name in enumerate(FIRST_NAMES):
        rows.append(row(FIRST_NAME_SENTENCES[i % len(FIRST_NAME_SENTENCES)], "PERSON", name))
    ips = [".".join(str(rng.randint(low, 254)) for low in (11, 0, 0, 1)) for _ in range(10)]
    ips += ["2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "2a02:8108:1c0:5f00::2"]
    for i, value in enumerate(ips):
        rows.append(row(IP_SENTENCES[i % len(IP_SENTENCES)], "IP_ADDRESS", value))
    for i in range(12):
        area = rng.choice([n for n in range(1, 900) if n != 666])
        value = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        rows.append(row(SSN_SENTENCES[i % len(SSN_SENTENCES)], "US_SSN", value))
    rows += [row(template, "PERSON", name) for template, name in HELD_OUT_NAMES]
    rows += mixed()
    rows += [{"text": text, "entities": []} for text in LOOK_ALIKES]
    return [{**r, "source": "generated"} for r in rows]


def mixed() -> list[dict]:
    """Several values in one message, next to look-alikes."""
    rows = []
    for i in range(8):
        name, mail = NAMES[i * 4 % len(NAMES)], f"{EMAIL_USERS[i]}@{EMAIL_DOMAINS[i]}"
        order = f"#{rng.randint(100000, 999999)}"
        text = (
            f"Hello, I am {name}. Order {order} from {rng.randint(1, 28)}/11/2026 never came; "
            f"write to {mail} please."
        )
        entities = [{"type": "PERSON", "value": name}, {"type": "EMAIL", "value": mail}]
        rows.append({"text": text, "entities": entities})
    for i in range(6):
        value = card(list(CARD_NETWORKS)[i], " ")
        price = f"${rng.randint(10, 999)}.{rng.randint(0, 99):02d}"
        text = f"The charge of {price} on {value} for invoice INV-{digits(6)} is wrong"
        rows.append({"text": text, "entities": [{"type": "CREDIT_CARD", "value": value}]})
    return rows


def main() -> None:
    existing = [json.loads(line) for line in OUT.read_text().splitlines()]
    kept = [r for r in existing if r.get("source") != "generated"]
    rows = kept + generated()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    values = sum(len(r["entities"]) for r in rows)
    print(f"{len(rows)} rows, {values} labelled values -> {OUT}")


if __name__ == "__main__":
    main()
