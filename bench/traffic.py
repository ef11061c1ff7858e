"""A day of traffic for any policy, with a chosen share of breaching events.

    .venv/bin/python bench/traffic.py --policy bench/policies/sakura-retail.yaml \\
        --events 200000 --breach-share 0.05 --out day.jsonl

The flows are built from the policy itself: each internal system uses declared
categories for declared purposes, passes data to the outsourcers, affiliates and ad
providers the policy names, and consents arrive for some subjects. Each flow shape is
judged once, alone, by the engine, and so sorted into lawful and breaching shapes; the
day draws from the two in the proportion asked for (``--breach-share``: 0.05 a typical
day, 0.9 a breach storm), over ``--subjects`` subjects, with a few duplicates and
malformed lines. The share of events that did raise an alert is printed, measured by
judging the day, not assumed.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import zlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from lineage.engine import Engine
from lineage.policy import Policy, load_policy

JST = timezone(timedelta(hours=9))
DAY = date(2026, 11, 20)


def _concrete(policy: Policy, refs: list[str]) -> list[str]:
    """Category ids a list of ids or prefixes covers."""
    found = []
    for cid in policy.categories:
        if any(cid == ref or cid.startswith(ref + ".") for ref in refs):
            found.append(cid)
    return found


def _shapes(policy: Policy) -> list[dict[str, Any]]:
    """Candidate flow shapes: everything but the ids, the subject and the time."""
    shapes: list[dict[str, Any]] = []
    systems = sorted(policy.systems) or ["app"]
    for purpose_id, purpose in sorted(policy.purposes.items()):
        allowed = _concrete(policy, list(purpose.categories))
        for system in systems:
            for category in allowed[:4]:
                shapes.append(
                    {"source": system, "action": "use", "categories": [category],
                     "purpose": purpose_id}
                )  # fmt: skip
            shapes.append(
                {"source": system, "action": "collect", "categories": allowed[:2] or ["x.y"],
                 "purpose": purpose_id}
            )  # fmt: skip
        undeclared = {"source": systems[0], "action": "use", "categories": ["misc.undeclared"],
                      "purpose": purpose_id}  # fmt: skip
        shapes.append(undeclared)
    for rid in sorted(policy.recipients):
        for purpose_id, purpose in sorted(policy.purposes.items()):
            allowed = _concrete(policy, list(purpose.categories))
            for category in allowed[:3]:
                for basis, encrypted, form in (
                    ("outsourcing", True, "identified"),
                    ("joint_use", True, "identified"),
                    ("consent", True, "identified"),
                    ("none", True, "pseudonymized"),
                    ("outsourcing", False, "identified"),
                ):
                    shape: dict[str, Any] = {
                        "source": systems[
                            zlib.crc32(f"{rid}/{purpose_id}".encode()) % len(systems)
                        ],
                        "action": "transfer",
                        "categories": [category],
                        "purpose": purpose_id,
                        "recipient": rid,
                        "legal_basis": basis,
                        "encrypted_in_transit": encrypted,
                        "form": form,
                    }
                    if form == "pseudonymized":
                        shape["pseudonymization"] = {"method": "hmac-sha256", "keyed": False}
                    shapes.append(shape)
    return shapes


def _judge(policy: Policy, shapes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], ...]:
    """(lawful, breaching): each shape judged alone, for a subject with no consent."""
    lawful: list[dict[str, Any]] = []
    breaching: list[dict[str, Any]] = []
    when = datetime.combine(DAY, datetime.min.time(), JST).replace(hour=12).isoformat()
    for i, shape in enumerate(shapes):
        engine = Engine(policy)
        event = {"event_id": f"probe-{i}", "occurred_at": when, "subject": "probe", **shape}
        outcome = engine.process(orjson.dumps(event), origin="probe", offset=0)
        if outcome.status != "judged":
            continue
        (breaching if outcome.alerts else lawful).append(shape)
    return lawful, breaching


def generate(
    policy: Policy,
    events: int,
    breach_share: float,
    *,
    subjects: int = 50_000,
    seed: int = 7,
    day: date = DAY,
) -> Iterator[bytes]:
    """``events`` lines spread evenly over ``day`` (Japan time)."""
    rng = random.Random(seed)
    lawful, breaching = _judge(policy, _shapes(policy))
    if not lawful or not breaching:
        raise SystemExit("the policy gives no lawful or no breaching flow shapes")
    start = datetime.combine(day, datetime.min.time(), JST)
    step = 86_400 / max(events, 1)
    third_parties = [r for r, v in policy.recipients.items() if v.kind.value == "third_party"]
    recent: list[bytes] = []
    for n in range(events):
        at = (start + timedelta(seconds=n * step)).isoformat(timespec="milliseconds")
        subject = f"s-{rng.randrange(subjects):06d}"
        roll = rng.random()
        if roll < 0.001 and recent:
            yield rng.choice(recent)  # a producer's retry: the same event again
            continue
        if roll < 0.0015:
            yield b'{"event_id": "broken-' + str(n).encode() + b'", "occurred_at": '
            continue
        if roll < 0.02 and third_parties:
            line = orjson.dumps(
                {"type": "consent", "event_id": f"c-{n}", "occurred_at": at, "subject": subject,
                 "recipient": rng.choice(third_parties), "status": "granted"}
            )  # fmt: skip
        else:
            pool = breaching if rng.random() < breach_share else lawful
            shape = rng.choice(pool)
            line = orjson.dumps({"event_id": f"e-{n}", "occurred_at": at, "subject": subject,
                                 **shape})  # fmt: skip
        if len(recent) < 64:
            recent.append(line)
        else:
            recent[rng.randrange(64)] = line
        yield line


def measured_share(policy: Policy, path: Path) -> tuple[int, float]:
    """(events, share of access events that raised at least one alert), by judging them."""
    engine = Engine(policy)
    access = breached = 0
    with path.open("rb") as lines:
        for offset, line in enumerate(lines):
            outcome = engine.process(line.rstrip(b"\n"), origin="day", offset=offset)
            event = outcome.event if outcome.status == "judged" else None
            if event is not None and getattr(event, "type", "access") == "access":
                access += 1
                breached += bool(outcome.alerts)
    return offset + 1, breached / max(access, 1)


def write_day(policy_path: Path, out: Path, events: int, breach_share: float, seed: int) -> None:
    policy = load_policy(policy_path)
    with out.open("wb") as f:
        lines = generate(policy, events, breach_share, seed=seed)
        while chunk := list(itertools.islice(lines, 4096)):
            f.write(b"\n".join(chunk) + b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--breach-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_day(args.policy, args.out, args.events, args.breach_share, args.seed)
    n, share = measured_share(load_policy(args.policy), args.out)
    print(f"wrote {n:,} lines to {args.out}; {share:.1%} of access events raised an alert")
    return 0


if __name__ == "__main__":
    sys.exit(main())
