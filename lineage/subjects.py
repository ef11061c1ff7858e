"""Per-subject lineage: who received a data subject's personal data (policy Art. 11;
APPI Arts. 33 and 33 (5)).

The engine keeps, for each subject, what each recipient received (categories,
purposes, bases, first and last time, how many transfers, which rules they
broke), the consent decisions on record and the provision records written
(:class:`~lineage.state.SubjectState`). :func:`answer` turns that into the answer
to a disclosure request (docs/contract.md), :func:`render_html` into a page a
privacy officer can print and send. ``lineage run`` keeps every subject in
``subjects.sqlite`` in its output folder (:class:`SubjectStore`), so one subject is
found later without reading the run again.

Subjects are pseudonymous references; one that was written as raw personal data
(an e-mail address, say) is kept under its redaction token, and looked up so.
"""

from __future__ import annotations

import html
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from lineage.errors import RunError
from lineage.state import SubjectState

__all__ = ["SUBJECTS_FILE", "SubjectStore", "answer", "render_html"]

SUBJECTS_FILE = "subjects.sqlite"


def answer(
    subject: str,
    state: SubjectState | None,
    policy_version: str,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """The disclosure answer for one subject (an empty one when nothing of it was seen)."""
    recipients = []
    records: list[str] = []
    notify = []
    consents = []
    if state is not None:
        ordered = sorted(
            state.recipients.items(),
            key=lambda kv: (kv[1].first_at.timestamp() if kv[1].first_at else 0.0, kv[0]),
        )
        for rid, facts in ordered:
            recipients.append(
                {
                    "recipient": rid,
                    "name": facts.name,
                    "kind": facts.kind,
                    "country": facts.country,
                    "categories": sorted(facts.categories),
                    "purposes": sorted(facts.purposes),
                    "legal_bases": sorted(facts.bases),
                    "first_at": facts.first_at.isoformat() if facts.first_at else None,
                    "last_at": facts.last_at.isoformat() if facts.last_at else None,
                    "events": facts.events,
                    "breaches": sorted(rule for rule, n in facts.breaches.items() if n > 0),
                }
            )
            records.extend(facts.records)
            if facts.personal:
                notify.append(rid)
        consents = [
            {
                "recipient": d.recipient,
                "purposes": sorted(d.purposes) if d.purposes is not None else None,
                "status": d.status.value,
                "occurred_at": d.occurred_at.isoformat(),
                "reference": d.reference,
            }
            for d in sorted(state.decisions, key=lambda d: (d.occurred_at, d.offset))
        ]
    return {
        "subject": subject,
        "policy_version": policy_version,
        "as_of": (as_of or datetime.now(UTC)).isoformat(),
        "recipients": recipients,
        "consents": consents,
        "provision_records": records,
        "notify_on_correction": sorted(notify),
    }


class SubjectStore:
    """Every subject's state of an embedded run, in an SQLite file of its output folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, subjects: Iterable[tuple[str, SubjectState]], policy_version: str) -> int:
        """Write every subject (replacing the file); return how many."""
        self.path.unlink(missing_ok=True)
        try:
            db = sqlite3.connect(self.path)
        except sqlite3.Error as exc:
            raise RunError(f"cannot write {self.path}: {exc}") from exc
        try:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("CREATE TABLE subjects (subject TEXT PRIMARY KEY, state BLOB NOT NULL)")
            db.execute("INSERT INTO meta VALUES ('policy_version', ?)", (policy_version,))
            rows = ((s, orjson.dumps(st.to_json())) for s, st in subjects)
            n = db.executemany("INSERT INTO subjects VALUES (?, ?)", rows).rowcount
            db.commit()
        finally:
            db.close()
        return n

    def get(self, subjects: Iterable[str]) -> tuple[str, SubjectState | None, str]:
        """(subject as found, its state or None, the run's policy version), trying each
        spelling of the subject in turn (as given, then its redaction token)."""
        if not self.path.exists():
            raise RunError(f"no {SUBJECTS_FILE} in {self.path.parent}: is it a run's --out folder?")
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            version = db.execute("SELECT value FROM meta WHERE key = 'policy_version'").fetchone()
            tried = list(subjects)
            for subject in tried:
                row = db.execute(
                    "SELECT state FROM subjects WHERE subject = ?", (subject,)
                ).fetchone()
                if row is not None:
                    return subject, SubjectState.from_json(orjson.loads(row[0])), version[0]
            return tried[0], None, version[0]
        except sqlite3.Error as exc:
            raise RunError(f"cannot read {self.path}: {exc}") from exc
        finally:
            db.close()


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Hiragino Sans",Meiryo,sans-serif;
color:#1d2433;margin:2.5em auto;max-width:60em;padding:0 1.5em}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.1em;margin:2em 0 .6em;border-bottom:1px solid
#d8dde6;padding-bottom:.3em}.meta{color:#5a6475;margin:0 0 1.5em}table{border-collapse:collapse;
width:100%}th,td{text-align:left;vertical-align:top;padding:.45em .6em;border-bottom:1px solid
#e6e9ef}th{font-weight:600;background:#f4f6f9}td.n{text-align:right}.breach{color:#a3261a;
font-weight:600}.none{color:#5a6475;font-style:italic}code{font:12px ui-monospace,monospace}
.tag{display:inline-block;border:1px solid #c7ced9;border-radius:3px;padding:0 .35em;
margin:0 .25em .2em 0;font-size:12px}@media print{body{margin:0;max-width:none}
h2{break-after:avoid}tr{break-inside:avoid}}
"""


def _tags(items: Iterable[str]) -> str:
    return "".join(f'<span class="tag">{html.escape(i)}</span>' for i in items) or "–"


def render_html(data: dict[str, Any]) -> str:
    """A self-contained page of the answer, to print and send (no script, no network)."""
    e = html.escape
    rows = []
    for r in data["recipients"]:
        breaches = (
            f'<span class="breach">{_tags(r["breaches"])}</span>' if r["breaches"] else "none"
        )
        rows.append(
            "<tr>"
            f"<td><strong>{e(r['name'])}</strong><br><code>{e(r['recipient'])}</code></td>"
            f"<td>{e(r['kind'])}</td><td>{e(r['country'] or '–')}</td>"
            f"<td>{_tags(r['categories'])}</td><td>{_tags(r['purposes'])}</td>"
            f"<td>{_tags(r['legal_bases'])}</td>"
            f"<td>{e(r['first_at'] or '')}<br>{e(r['last_at'] or '')}</td>"
            f'<td class="n">{r["events"]}</td><td>{breaches}</td>'
            "</tr>"
        )
    consents = [
        "<tr>"
        f"<td>{e(c['occurred_at'])}</td><td>{e(c['status'])}</td>"
        f"<td><code>{e(c['recipient'])}</code></td>"
        f"<td>{_tags(c['purposes']) if c['purposes'] is not None else 'every purpose'}</td>"
        f"<td>{e(c['reference'] or '–')}</td>"
        "</tr>"
        for c in data["consents"]
    ]
    none = '<p class="none">None on record.</p>'
    recipients_table = (
        "<table><tr><th>Recipient</th><th>Kind</th><th>Country</th><th>Categories</th>"
        "<th>Purposes</th><th>Legal basis</th><th>First / last</th><th>Transfers</th>"
        "<th>Breaches</th></tr>" + "".join(rows) + "</table>"
        if rows
        else '<p class="none">No recipient received this subject\'s data.</p>'
    )
    consents_table = (
        "<table><tr><th>When</th><th>Decision</th><th>Recipient</th><th>Purposes</th>"
        "<th>Reference</th></tr>" + "".join(consents) + "</table>"
        if consents
        else none
    )
    records = (
        "<ul>"
        + "".join(f"<li><code>{e(r)}</code></li>" for r in data["provision_records"])
        + "</ul>"
        if data["provision_records"]
        else none
    )
    notify = (
        _tags(data["notify_on_correction"]) if data["notify_on_correction"] else "Nobody outside."
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Personal data of subject {e(data['subject'])}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Who received the personal data of subject <code>{e(data['subject'])}</code></h1>"
        f'<p class="meta">As of {e(data["as_of"])} · policy version {e(data["policy_version"])}'
        " · from what the company's systems reported when the data flowed</p>"
        f"<h2>Recipients</h2>{recipients_table}"
        f"<h2>Consent decisions</h2>{consents_table}"
        "<h2>Records of provision to third parties (APPI Art. 29)</h2>"
        f"{records}"
        "<h2>To notify of a correction or deletion</h2>"
        f"<p>{notify}</p>"
        "</body></html>\n"
    )
