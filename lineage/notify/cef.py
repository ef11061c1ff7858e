"""One alert or incident as a CEF line in an RFC 5424 syslog message, for SIEMs.

CEF (ArcSight Common Event Format, version 0)::

    CEF:0|privacy-lineage|lineage|0.1.0|art9.no-consent|Art. 9 art9.no-consent: crm -> ads|8|
    rt=1795618800000 externalId=3f2a... msg=Health data went to ... act=open cat=alert ...

Escaping, as the CEF specification says: in the seven header fields a backslash
and a pipe are escaped (``\\\\``, ``\\|``); in extension values a backslash, an equals
sign and line breaks are (``\\\\``, ``\\=``, ``\\n``, ``\\r``), while a pipe is not.
Header fields cannot hold a line break at all: it becomes a space. So a CEF line
never holds a raw line break, and one line is one message on a TCP stream. Every
other control or format character (NUL, ESC, NEL, U+2028, bidi overrides...) is
written as visible text such as ``\\u2028`` (:func:`lineage.characters.visible`)
before escaping: CEF has no escape for them, and collectors split lines or cut
strings on some of them.

The extension uses the CEF dictionary where a key fits (``rt``, ``start``, ``end``,
``externalId``, ``msg``, ``act``, ``cat``, ``reason``, ``cn1``) and labelled custom
strings for the rest: ``cs1`` source, ``cs2`` recipient, ``cs3`` categories, ``cs4``
policy version, ``cs5`` event ids, ``cs6`` article, ``flexString1`` recipient kind. The
subject is left out: a SIEM needs the flow, and the subject stays in the audit trail.

Severity, CEF (0-10) and syslog: critical 10 / crit(2), high 8 / err(3), medium 5 /
warning(4), low 3 / notice(5); a retracted alert is 1 / info(6), good news whatever
the rule's severity, so that a SIEM rule on severity does not page on it.

The syslog header (RFC 5424 s.6): ``<PRI>1 TIMESTAMP HOSTNAME privacy-lineage PROCID
MSGID - MSG`` with MSGID ``alert`` or ``incident``, no structured data, and the CEF line
as MSG, in UTF-8 without a byte-order mark (which many collectors would show as text).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lineage.characters import visible
from lineage.notify.routes import Facility, Kind
from lineage.notify.sanitize import without_subject
from lineage.rules.base import art_label
from lineage.schemas.types import Severity

__all__ = [
    "APP_NAME",
    "cef_line",
    "cef_severity",
    "escape_extension",
    "escape_header",
    "syslog_message",
    "syslog_severity",
]

APP_NAME = "privacy-lineage"
VENDOR, PRODUCT = "privacy-lineage", "lineage"
#: ArcSight's limit on ``msg``; longer is cut.
MSG_LIMIT = 1023
#: ArcSight's limit on the header's Name.
NAME_LIMIT = 512

_CEF_SEVERITY = {Severity.CRITICAL: 10, Severity.HIGH: 8, Severity.MEDIUM: 5, Severity.LOW: 3}
_SYSLOG_SEVERITY = {Severity.CRITICAL: 2, Severity.HIGH: 3, Severity.MEDIUM: 4, Severity.LOW: 5}
_RETRACTED_CEF, _RETRACTED_SYSLOG = 1, 6


def _visible(value: str) -> str:
    """Control and format characters as visible escapes, except the line breaks that the
    two escapes below handle their own way."""
    if value.isprintable():
        return value
    return "\n".join("\r".join(visible(p) for p in line.split("\r")) for line in value.split("\n"))


def escape_header(value: str) -> str:
    r"""A CEF header field: ``\`` and ``|`` escaped, line breaks made spaces.

    >>> escape_header("a|b\\c")
    'a\\|b\\\\c'
    """
    value = _visible(value).replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def escape_extension(value: str) -> str:
    r"""A CEF extension value: ``\``, ``=`` and line breaks escaped; ``|`` left as it is.

    >>> escape_extension("a=b|c\nd")
    'a\\=b|c\\nd'
    """
    value = _visible(value).replace("\\", "\\\\").replace("=", "\\=")
    return value.replace("\r\n", "\\n").replace("\r", "\\r").replace("\n", "\\n")


def _list_item(value: str) -> str:
    """An item of a ``,``-separated list field: event ids are free text, so a ``,`` in
    one is written ``%2C`` (and ``%`` itself ``%25``) and a split on ``,`` gives the ids
    back; an id without either is unchanged."""
    if "%" in value or "," in value:
        return value.replace("%", "%25").replace(",", "%2C")
    return value


def _retracted(record: Mapping[str, Any]) -> bool:
    return record.get("status") == "retracted"


def _severity(record: Mapping[str, Any]) -> Severity | None:
    try:
        return Severity(str(record.get("severity")))
    except ValueError:
        return None


def cef_severity(record: Mapping[str, Any]) -> int:
    """CEF severity 0-10 of an alert or incident (module docstring)."""
    severity = _severity(record)
    if _retracted(record) or severity is None:
        return _RETRACTED_CEF
    return _CEF_SEVERITY[severity]


def syslog_severity(record: Mapping[str, Any]) -> int:
    """Syslog severity (RFC 5424 s.6.2.1) of an alert or incident (module docstring)."""
    severity = _severity(record)
    if _retracted(record) or severity is None:
        return _RETRACTED_SYSLOG
    return _SYSLOG_SEVERITY[severity]


def _millis(value: Any) -> str | None:
    """Epoch milliseconds of an RFC 3339 time: one unambiguous form for every collector."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str(int(moment.timestamp() * 1000))


def _name(record: Mapping[str, Any]) -> str:
    flow = str(record.get("source", ""))
    if record.get("recipient"):
        flow += f" -> {record['recipient']}"
    return f"{art_label(str(record.get('article', '')))} {record.get('rule', '')}: {flow}"


def cef_line(kind: Kind, record: Mapping[str, Any], version: str) -> str:
    """The CEF line of one alert or incident as published (no syslog header)."""
    record = without_subject(record)
    alert = kind is Kind.ALERT
    fields: list[tuple[str, Any]] = []
    if alert:
        fields.append(("rt", _millis(record.get("occurred_at"))))
    else:
        fields += [
            ("rt", _millis(record.get("last_seen"))),
            ("start", _millis(record.get("first_seen"))),
            ("end", _millis(record.get("last_seen"))),
        ]
    fields += [
        ("externalId", record.get("alert_id" if alert else "incident_id")),
        ("cat", kind.value),
        ("act", record.get("status", "open")),
    ]
    if alert:
        message = str(record.get("message", ""))
        fields.append(("msg", message[:MSG_LIMIT]))
        if record.get("retracted_by"):
            fields.append(("reason", f"retracted by consent event {record['retracted_by']}"))
    else:
        fields.append(("cn1Label", "count"))
        fields.append(("cn1", record.get("count")))
    fields += [
        ("cs1Label", "source"),
        ("cs1", record.get("source")),
        ("cs2Label", "recipient"),
        ("cs2", record.get("recipient")),
    ]
    if alert:
        fields += [
            ("cs3Label", "categories"),
            ("cs3", ",".join(str(c) for c in record.get("categories") or [])),
            ("cs4Label", "policyVersion"),
            ("cs4", record.get("policy_version")),
            ("cs5Label", "eventId"),
            ("cs5", record.get("event_id")),
        ]
    else:
        fields += [
            ("cs5Label", "sampleEventIds"),
            ("cs5", ",".join(_list_item(str(e)) for e in record.get("sample_event_ids") or [])),
        ]
    fields += [("cs6Label", "article"), ("cs6", record.get("article"))]
    if alert and record.get("recipient_kind"):
        fields += [("flexString1Label", "recipientKind"), ("flexString1", record["recipient_kind"])]
    extension = " ".join(
        f"{key}={escape_extension(str(value))}"
        for key, value in fields
        if value is not None and value != ""
    )
    header = [
        "CEF:0",
        VENDOR,
        PRODUCT,
        version,
        str(record.get("rule", "unknown")),
        _name(record)[:NAME_LIMIT],
        str(cef_severity(record)),
    ]
    return "|".join([header[0], *(escape_header(h) for h in header[1:])]) + "|" + extension


def _header_word(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or '-'."""
    word = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return word or "-"


_HOSTNAME = _header_word(socket.gethostname(), 255)


def syslog_message(
    kind: Kind,
    record: Mapping[str, Any],
    *,
    version: str,
    facility: Facility = Facility.LOCAL0,
    hostname: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """One RFC 5424 syslog message whose MSG is the record's CEF line (UTF-8, no newline)."""
    priority = facility.code * 8 + syslog_severity(record)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    timestamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = _header_word(hostname, 255) if hostname is not None else _HOSTNAME
    header = f"<{priority}>1 {timestamp} {host} {APP_NAME} {os.getpid()} {kind.value} -"
    return f"{header} {cef_line(kind, record, version)}".encode()
