"""The demo fleet: a day of a music-stock web service's personal-data traffic, synthetic.

Seven internal systems (web frontend, checkout, payments, CRM, support desk, ad
gateway, analytics SDK) collect, use and pass on personal data; a consent platform
records grants and withdrawals. Most flows are lawful under the shipped policy; a
realistic minority breaks it, and every rule of the catalogue is exercised (a day of
a few thousand events shows them all), because breach scenarios are scheduled in turn
rather than drawn by chance. A few malformed messages (one of each kind) and re-sent
events are mixed in, as a real fleet produces them.

>>> lines = list(generate_day(events=200, seed=1))
>>> len(lines) >= 200
True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson

__all__ = ["DEFAULT_DAY", "FLEET", "generate_day"]

DEFAULT_DAY = date(2026, 11, 20)
FLEET = (
    "web-frontend",
    "checkout",
    "payments",
    "crm",
    "support-desk",
    "ad-gateway",
    "analytics-sdk",
)

JST = timezone(timedelta(hours=9))
KEYED = {"method": "hmac-sha256", "keyed": True}
Event = dict[str, Any]
Scenario = Callable[[random.Random, str], Event]


def _transfer(
    source: str, recipient: str, categories: list[str], purpose: str, **extra: Any
) -> Event:
    event: Event = {
        "source": source,
        "action": "transfer",
        "recipient": recipient,
        "categories": categories,
        "purpose": purpose,
        "encrypted_in_transit": True,
    }
    event.update(extra)
    return event


# -- lawful traffic: (weight, scenario) ---------------------------------------------------------

LAWFUL: list[tuple[int, Scenario]] = [
    (
        14,
        lambda r, s: {
            "source": "web-frontend",
            "action": "collect",
            "subject": s,
            "categories": ["identity.name", "contact.email", "contact.address"],
            "purpose": "service_operation",
            "legal_basis": "consent",
        },
    ),
    (
        12,
        lambda r, s: {
            "source": "web-frontend",
            "action": "collect",
            "subject": s,
            "categories": ["activity.viewing_history", "activity.ip_address", "device.cookie"],
            "purpose": "contact_and_notices",
        },
    ),
    (
        10,
        lambda r, s: {
            "source": "crm",
            "action": "use",
            "subject": s,
            "categories": ["contact.email", "activity.purchase_history"],
            "purpose": "contact_and_notices",
            "attributes": {"campaign": f"cmp-{r.randrange(40):02d}"},
        },
    ),
    (
        10,
        lambda r, s: _transfer(
            "checkout",
            "payment-processor",
            ["identity.name", "financial.credit_card"],
            "service_operation",
            subject=s,
            legal_basis="outsourcing",
            attributes={"order": f"ord-{r.randrange(10**6):06d}"},
        ),
    ),
    (
        6,
        lambda r, s: _transfer(
            "payments",
            "card-network",
            ["financial.credit_card"],
            "service_operation",
            subject=s,
            via="payment-processor",
            legal_basis="outsourcing",
        ),
    ),
    (
        12,
        lambda r, s: _transfer(
            "ad-gateway",
            "ad-network",
            ["activity.viewing_history", "device.cookie"],
            "targeted_advertising",
            subject=s,
            form="pseudonymized",
            pseudonymization=KEYED,
        ),
    ),
    (
        4,
        lambda r, s: _transfer(
            "ad-gateway",
            "ad-exchange",
            ["activity.viewing_history"],
            "targeted_advertising",
            subject=s,
            via="ad-network",
            form="pseudonymized",
            pseudonymization=KEYED,
        ),
    ),
    (
        5,
        lambda r, s: _transfer(
            "crm",
            "audiostock-artists",
            ["identity.name", "contact.email", "activity.purchase_history"],
            "affiliate_services",
            subject=s,
            legal_basis="joint_use",
        ),
    ),
    (
        8,
        lambda r, s: _transfer(
            "analytics-sdk",
            "analytics-module",
            ["activity.site_history", "device.id"],
            "statistics",
            form="aggregated",
        ),
    ),
    (
        4,
        lambda r, s: _transfer(
            "crm",
            "mail-delivery",
            ["contact.email"],
            "contact_and_notices",
            subject=s,
            legal_basis="outsourcing",
        ),
    ),
    (
        3,
        lambda r, s: {
            "source": "checkout",
            "action": "use",
            "subject": s,
            "categories": ["financial.credit_card"],
            "purpose": "service_operation",
        },
    ),
    (
        2,
        lambda r, s: {
            "source": "crm",
            "action": "delete",
            "subject": s,
            "categories": ["contact.email", "contact.phone"],
            "purpose": "contact_and_notices",
        },
    ),
    (
        1,
        lambda r, s: _transfer(
            "support-desk",
            "police",
            ["identity.name", "contact.phone"],
            "legal_obligation",
            subject=s,
            legal_basis="exception",
            exception={
                "kind": "legal_requirement",
                "reference": f"court-order-2026-{r.randrange(999):03d}",
            },
        ),
    ),
]

# -- breaches: each named for the rule it exercises, scheduled in turn -------------------------

BREACHES: list[tuple[str, Scenario]] = [
    (
        "art6.no-agreement+unsupervised",
        lambda r, s: _transfer(
            "support-desk",
            "support-outsourcer",
            ["contact.phone"],
            "contact_and_notices",
            subject=s,
            legal_basis="outsourcing",
        ),
    ),
    (
        "art6.out-of-scope",
        lambda r, s: _transfer(
            "checkout",
            "payment-processor",
            ["identity.name", "identity.date_of_birth"],
            "service_operation",
            subject=s,
            legal_basis="outsourcing",
        ),
    ),
    (
        "art6.sub-outsourcing",
        lambda r, s: _transfer(
            "payments",
            "mail-delivery",
            ["contact.email"],
            "contact_and_notices",
            subject=s,
            via="payment-processor",
        ),
    ),
    (
        "art6.unencrypted",
        lambda r, s: _transfer(
            "crm",
            "mail-delivery",
            ["contact.email"],
            "contact_and_notices",
            subject=s,
            encrypted_in_transit=False,
        ),
    ),
    (
        "art6.raw-personal-data",
        lambda r, s: {
            "source": "support-desk",
            "action": "use",
            "subject": s,
            "categories": ["contact.email"],
            "purpose": "contact_and_notices",
            "attributes": {
                "ticket": f"T-{r.randrange(10**5)}",
                "note": "callback requested by taro.yamada@example.jp",
            },
        },
    ),
    (
        "art6.raw-personal-data(card)",
        lambda r, s: {
            "source": "checkout",
            "action": "use",
            "subject": s,
            "categories": ["financial.credit_card"],
            "purpose": "service_operation",
            "attributes": {"debug_card": "4111 1111 1111 1111"},
        },
    ),
    (
        "art7.not-announced",
        lambda r, s: _transfer(
            "crm",
            "label-partner",
            ["identity.name", "contact.email"],
            "affiliate_services",
            subject=s,
            legal_basis="joint_use",
        ),
    ),
    (
        "art7.category-not-announced",
        lambda r, s: _transfer(
            "crm",
            "audiostock-artists",
            ["identity.name", "identity.date_of_birth"],
            "affiliate_services",
            subject=s,
            legal_basis="joint_use",
        ),
    ),
    (
        "art7.purpose-not-announced",
        lambda r, s: _transfer(
            "crm",
            "audiostock-artists",
            ["contact.email"],
            "contact_and_notices",
            subject=s,
            legal_basis="joint_use",
        ),
    ),
    (
        "art9.no-consent",
        lambda r, s: _transfer(
            "crm",
            "market-research",
            ["identity.date_of_birth", "activity.purchase_history"],
            "statistics",
            subject=s,
            legal_basis="consent",
        ),
    ),
    (
        "art9.unknown-recipient",
        lambda r, s: _transfer(
            "analytics-sdk",
            "tracker.example-cdn.io",
            ["device.id", "activity.site_history"],
            "statistics",
            subject=s,
        ),
    ),
    (
        "art9.exception-unsupported",
        lambda r, s: _transfer(
            "support-desk",
            "police",
            ["identity.name"],
            "legal_obligation",
            subject=s,
            legal_basis="exception",
            exception={"kind": "legal_requirement", "reference": ""},
        ),
    ),
    (
        "art10.category",
        lambda r, s: _transfer(
            "ad-gateway",
            "ad-network",
            ["activity.viewing_history", "contact.email"],
            "targeted_advertising",
            subject=s,
            form="pseudonymized",
            pseudonymization=KEYED,
        ),
    ),
    (
        "art10.identifiable",
        lambda r, s: _transfer(
            "ad-gateway",
            "ad-network",
            ["activity.viewing_history", "device.id"],
            "targeted_advertising",
            subject=s,
            form="pseudonymized",
            pseudonymization={"method": "sha256", "keyed": False},
        ),
    ),
    (
        "art10.no-conditions",
        lambda r, s: _transfer(
            "ad-gateway",
            "social-ads",
            ["activity.viewing_history"],
            "targeted_advertising",
            subject=s,
            form="pseudonymized",
            pseudonymization=KEYED,
        ),
    ),
    (
        "art10.purpose",
        lambda r, s: _transfer(
            "ad-gateway",
            "ad-network",
            ["activity.purchase_history"],
            "statistics",
            subject=s,
            form="pseudonymized",
            pseudonymization=KEYED,
        ),
    ),
    (
        "art10.onward",
        lambda r, s: _transfer(
            "ad-gateway",
            "social-ads",
            ["activity.viewing_history"],
            "targeted_advertising",
            subject=s,
            via="ad-network",
            form="pseudonymized",
            pseudonymization=KEYED,
        ),
    ),
    (
        "art2.undeclared-category",
        lambda r, s: {
            "source": "web-frontend",
            "action": "collect",
            "subject": s,
            "categories": ["identity.name", "identity.my_number"],
            "purpose": "service_operation",
        },
    ),
    (
        "art3.undeclared-purpose",
        lambda r, s: {
            "source": "crm",
            "action": "use",
            "subject": s,
            "categories": ["contact.email", "activity.purchase_history"],
            "purpose": "credit_scoring",
        },
    ),
    (
        "art3.category-not-for-purpose",
        lambda r, s: {
            "source": "crm",
            "action": "use",
            "subject": s,
            "categories": ["contact.email", "financial.bank_account"],
            "purpose": "contact_and_notices",
        },
    ),
    (
        "art8.identifying",
        lambda r, s: _transfer(
            "analytics-sdk",
            "analytics-module",
            ["identity.name", "device.id"],
            "statistics",
            subject=s,
        ),
    ),
    (
        "appi28.foreign-no-basis",
        lambda r, s: _transfer(
            "support-desk",
            "overseas-support",
            ["contact.phone", "contact.email"],
            "contact_and_notices",
            subject=s,
            legal_basis="outsourcing",
        ),
    ),
    (
        "art10.retention",
        lambda r, s: _transfer(
            "ad-gateway",
            "ad-network",
            ["activity.purchase_history"],
            "targeted_advertising",
            subject=s,
            form="pseudonymized",
            pseudonymization=KEYED,
            attributes={"collected_at": "2023-09-01T10:00:00+09:00"},
        ),
    ),
]

#: One of each kind of bad input (docs/contract.md): they must all reach the dead letters.
MALFORMED: list[bytes] = [
    b'{"event_id": "bad-json", "occurred_at": ',  # not JSON
    b'{"event_id": "bad-missing", "occurred_at": "2026-11-20T10:00:00+09:00", "source": "crm"}',
    b'{"event_id": "bad-type", "occurred_at": "2026-11-20T10:00:00+09:00", "source": "crm",'
    b' "action": "use", "categories": "contact.email", "purpose": "contact_and_notices"}',
    b'{"event_id": "bad-enum", "occurred_at": "2026-11-20T10:00:00+09:00", "source": "crm",'
    b' "action": "sell", "categories": ["contact.email"], "purpose": "contact_and_notices"}',
    b'{"schema_version": "2", "event_id": "bad-version", "occurred_at":'
    b' "2026-11-20T10:00:00+09:00", "source": "crm", "action": "use",'
    b' "categories": ["contact.email"], "purpose": "contact_and_notices"}',
    b'{"event_id": "bad-time", "occurred_at": "2026-11-20 10:00:00", "source": "crm",'
    b' "action": "use", "categories": ["contact.email"], "purpose": "contact_and_notices"}',
    b'{"event_id": "bad-size", "occurred_at": "2026-11-20T10:00:00+09:00", "source": "crm",'
    b' "action": "use", "subject": "' + b"x" * 300 + b'", "categories": ["contact.email"],'
    b' "purpose": "contact_and_notices"}',
]

_BREACH_EVERY = 25  # one breach in 25 events: a few percent of the day
_RESEND_EVERY = 997  # now and then a producer re-sends an event it already sent


def generate_day(
    *,
    day: date = DEFAULT_DAY,
    events: int = 20_000,
    seed: int = 7,
    malformed: int = 7,
    subjects: int | None = None,
) -> Iterator[bytes]:
    """One JSON line (bytes, no newline) per message, deterministic for a seed.

    ``events`` counts the access and consent events; ``malformed`` bad lines (at most one
    of each kind) and a few re-sent duplicates come on top. ``subjects`` is how many data
    subjects the fleet serves (default one for every eight events).
    """
    rnd = random.Random(seed)
    start = datetime(day.year, day.month, day.day, tzinfo=JST)
    step = 86_400 / max(events, 1)
    population = subjects if subjects is not None else max(200, events // 8)
    subjects_ = [f"u-{rnd.getrandbits(24):06x}" for _ in range(population)]
    quarter = len(subjects_) // 4
    consented = subjects_[:quarter]  # granted market-research for statistics
    withdrawn = subjects_[quarter : quarter + 20]
    scoped = subjects_[quarter + 20 : quarter + 40]
    others = subjects_[quarter + 40 :]
    weights = [w for w, _ in LAWFUL]
    lawful = [s for _, s in LAWFUL]
    bad = [MALFORMED[i % len(MALFORMED)] for i in range(malformed)]
    bad_at = {int(events * (k + 1) / (len(bad) + 1)): line for k, line in enumerate(bad)}
    emitted: list[bytes] = []
    known_withdrawn: list[str] = []
    known_scoped: list[str] = []
    known_consented: list[str] = []
    breach_turn = 0
    consent_turn = 0

    def stamp(i: int) -> str:
        at = start + timedelta(seconds=i * step + rnd.random() * step)
        return at.isoformat(timespec="milliseconds")

    # The consent platform's decisions come early in the day, withdrawals and narrow
    # consents first so that even a small day shows what they lead to. A subject is used
    # for a consent scenario only once its decision has been emitted.
    consents: list[tuple[Event, list[str] | None]] = []
    for s in withdrawn[:10]:
        consents.append(({"subject": s, "recipient": "*", "status": "granted"}, None))
        consents.append(({"subject": s, "recipient": "*", "status": "withdrawn"}, known_withdrawn))
    for s in scoped[:10]:
        grant = {
            "subject": s,
            "recipient": "market-research",
            "purposes": ["contact_and_notices"],
            "status": "granted",
        }
        consents.append((grant, known_scoped))
    for s in consented:
        grant = {
            "subject": s,
            "recipient": "market-research",
            "purposes": ["statistics"],
            "status": "granted",
        }
        consents.append((grant, known_consented))
    consents = consents[: max(4, events // 20)]

    late: dict[int, Event] = {}  # consents the platform sends late, by when they arrive
    for i in range(events):
        if i in bad_at:
            yield bad_at[i]
        if i in late:
            yield orjson.dumps(late.pop(i))
        if i and i % _RESEND_EVERY == 0 and emitted:
            yield emitted[rnd.randrange(len(emitted))]
        occurred = stamp(i)
        if consent_turn < len(consents) and i % 5 == 0:
            decision, known = consents[consent_turn]
            consent_turn += 1
            event: Event = {
                "type": "consent",
                "event_id": f"demo-c{i}",
                "occurred_at": occurred,
                "reference": f"cmp-{consent_turn:05d}",
                **decision,
            }
            if known is not None:
                known.append(decision["subject"])
        else:
            subject = others[rnd.randrange(len(others))]
            if i % _BREACH_EVERY == _BREACH_EVERY - 1:
                name, scenario = BREACHES[breach_turn % len(BREACHES)]
                breach_turn += 1
                body = scenario(rnd, subject)
                if name == "art9.no-consent":
                    # Rotate: no consent at all, consent withdrawn, consent for else.
                    variant = (breach_turn // len(BREACHES)) % 3
                    if variant == 1 and known_withdrawn:
                        body["subject"] = rnd.choice(known_withdrawn)
                    elif variant == 2 and known_scoped:
                        body["subject"] = rnd.choice(known_scoped)
                    elif variant == 0 and (breach_turn // len(BREACHES)) % 2 == 0:
                        # The consent platform syncs late: a grant made a minute before
                        # the transfer arrives a few events after it, and retracts its alert.
                        made = datetime.fromisoformat(occurred) - timedelta(minutes=1)
                        late[i + 3] = {
                            "type": "consent",
                            "event_id": f"demo-late-{i}",
                            "occurred_at": made.isoformat(timespec="milliseconds"),
                            "subject": body["subject"],
                            "recipient": "market-research",
                            "purposes": ["statistics"],
                            "status": "granted",
                            "reference": f"cmp-late-{i}",
                        }
            elif i % 17 == 0 and known_consented:
                body = _transfer(
                    "crm",
                    "market-research",
                    ["activity.purchase_history"],
                    "statistics",
                    legal_basis="consent",
                    subject=rnd.choice(known_consented),
                )
            else:
                body = rnd.choices(lawful, weights)[0](rnd, subject)
            event = {"event_id": f"demo-{i}", "occurred_at": occurred, **body}
        line = orjson.dumps(event)
        if len(emitted) < 256:
            emitted.append(line)
        yield line
