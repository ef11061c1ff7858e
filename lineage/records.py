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

A record that cannot be one (not JSON, not an object, no ``record_id``, a
``provided_at`` that is not a time with an offset) stops the reading with one
:class:`~lineage.errors.RunError` naming where it is (``FILE:LINE``, or
``TOPIC[PARTITION]@OFFSET``) and what is wrong, never the value: a record holds a
subject and a recipient (:func:`parse_record`).
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

__all__ = [
    "FIELDS",
    "RECORDS_FILE",
    "parse_record",
    "read_jsonl",
    "select",
    "write_csv",
    "write_jsonl",
]

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
                    yield parse_record(line, f"{path}:{number}")
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror}") from exc


def parse_record(raw: bytes, where: str) -> dict[str, Any]:
    """One provision record from its JSON text, or a :class:`RunError` that names
    ``where`` and what is wrong in a line that never repeats the value."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RunError(f"{where}: not JSON: not a provision record") from None
    if not isinstance(record, dict):
        raise RunError(f"{where}: {_kind(record)}, not a provision record (a JSON object)")
    problem = _problem(record)
    if problem is not None:
        raise RunError(f"{where}: not a provision record: {problem}")
    return record


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _problem(record: dict[str, Any]) -> str | None:
    """What makes ``record`` unusable here (the fields :func:`select` reads), or None."""
    rid = record.get("record_id")
    if rid is None:
        return "record_id is missing"
    if not isinstance(rid, str):
        return f"record_id is {_kind(rid)}, not a string"
    if not rid:
        return "record_id is empty"
    recipient = record.get("recipient")
    if recipient is not None and not isinstance(recipient, str):
        return f"recipient is {_kind(recipient)}, not a string"
    provided = record.get("provided_at")
    if provided is None:
        return "provided_at is missing"
    if not isinstance(provided, str):
        return f"provided_at is {_kind(provided)}, not a string"
    try:
        moment = datetime.fromisoformat(provided)
    except ValueError:  # its message repeats the value
        return "provided_at is not an ISO 8601 time"
    if moment.tzinfo is None:
        return "provided_at has no UTC offset"
    return None


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


#: How a cell a spreadsheet would run as a formula starts; and the quote that marks a
#: cell as text, so that text which starts with one keeps it (``'=x`` is not ``=x``).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


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
