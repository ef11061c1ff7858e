"""Provision records (APPI Art. 29): select them and write them for the regulator or an auditor.

Every transfer of personal data to a third party in APPI's sense, or abroad, yields
one record (see :meth:`lineage.engine.Engine`); ``lineage run`` writes them to
``provision-records.jsonl`` and the worker to the ``provision-records`` topic. This
module reads them back, keeps each record once (a record delivered twice has the
same ``record_id``), filters by day and recipient, and writes CSV or JSONL.

The CSV opens cleanly in a spreadsheet: a header with the contract's field names
in the contract's order, one row a record, ISO 8601 times, categories joined with
``;``, UTF-8 with a byte-order mark, and no cell a spreadsheet would run as a
formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from lineage.errors import RunError
from lineage.policy.model import Policy

__all__ = ["FIELDS", "RECORDS_FILE", "read_jsonl", "select", "write_csv", "write_jsonl"]

RECORDS_FILE = "provision-records.jsonl"

#: A provision record's fields, in the contract's order (docs/contract.md).
FIELDS = [
    "record_id",
    "provided_at",
    "recipient",
    "recipient_name",
    "recipient_country",
    "subject",
    "categories",
    "purpose",
    "legal_basis",
    "consent_reference",
    "lawful",
    "event_id",
    "policy_version",
]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a run's ``provision-records.jsonl``."""
    try:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError:
                        raise RunError(f"{path}:{number}: not a provision record") from None
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror}") from exc


def select(
    records: Iterable[dict[str, Any]],
    policy: Policy,
    *,
    since: date | None = None,
    until: date | None = None,
    recipient: str | None = None,
) -> list[dict[str, Any]]:
    """Each record once, in the order given, within [since, until] (days in the policy's
    calendar, both included) and for ``recipient`` when given."""
    out = []
    seen: set[str] = set()
    for record in records:
        rid = record.get("record_id")
        if not isinstance(rid, str) or rid in seen:
            continue
        seen.add(rid)
        if recipient is not None and record.get("recipient") != recipient:
            continue
        if since is not None or until is not None:
            day = policy.day_of(datetime.fromisoformat(record["provided_at"]))
            if (since is not None and day < since) or (until is not None and day > until):
                continue
        out.append(record)
    return out


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text  # a spreadsheet shows it as text and runs nothing
    return text


def write_csv(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write the CSV (header first); return how many rows."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    n = 0
    for record in records:
        writer.writerow([_cell(record.get(name)) for name in FIELDS])
        n += 1
    return n


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    """Write one JSON record a line, fields in the contract's order; return how many."""
    n = 0
    for record in records:
        out.write(orjson.dumps({name: record.get(name) for name in FIELDS}) + b"\n")
        n += 1
    return n


def csv_text(records: Iterable[dict[str, Any]]) -> str:
    """The CSV as text (for tests and small answers)."""
    buffer = io.StringIO()
    write_csv(records, buffer)
    return buffer.getvalue()
