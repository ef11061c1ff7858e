"""Per-subject lineage: who received a data subject's personal data (policy Art. 11;
APPI Arts. 33 and 33 (5)).

The per-subject view (:mod:`lineage.view`) holds, for each subject, what each
recipient received (categories, purposes, bases, forms, first and last time, how many
transfers, which rules they broke), the consent decisions on record and the provision
records within retention. :func:`answer` turns that into the answer to a disclosure
request (docs/contract.md), :func:`render_html` into a page a privacy officer can
print and send. ``lineage run`` keeps the view in ``subjects.sqlite`` in its output
folder (:class:`SubjectStore` reads it), so one subject is found later without
reading the run again.

Subjects are pseudonymous references; one that was written as raw personal data
(an e-mail address, say) is kept under its redaction token, and looked up so.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lineage.errors import RunError
from lineage.schemas.types import KIND_LABELS
from lineage.view import Lineage, SubjectView

__all__ = ["SUBJECTS_FILE", "SubjectStore", "answer", "render_html"]

SUBJECTS_FILE = "subjects.sqlite"


def answer(
    subject: str,
    lineage: Lineage | None,
    policy_version: str,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """The disclosure answer for one subject (an empty one when nothing of it was seen)."""
    recipients = []
    notify = []
    if lineage is None:
        lineage = Lineage({}, [], [])
    ordered = sorted(
        lineage.recipients.items(),
        key=lambda kv: (kv[1].first if kv[1].first_at is not None else 0.0, kv[0]),
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
                "first_at": facts.first_at,
                "last_at": facts.last_at,
                "events": facts.events,
                "breaches": sorted(rule for rule, n in facts.breaches.items() if n > 0),
                **({"forms": sorted(facts.forms)} if facts.forms else {}),
            }
        )
        if facts.personal:
            notify.append(rid)
    return {
        "subject": subject,
        "policy_version": policy_version,
        "as_of": (as_of or datetime.now(UTC)).isoformat(),
        "recipients": recipients,
        "consents": lineage.consents,
        "provision_records": lineage.records,
        "notify_on_correction": sorted(notify),
    }


class SubjectStore:
    """The per-subject view of an embedded run, in an SQLite file of its output folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self) -> SubjectView:
        if not self.path.exists():
            raise RunError(f"no {SUBJECTS_FILE} in {self.path.parent}: is it a run's --out folder?")
        return SubjectView(self.path)

    def subjects(self) -> list[str]:
        """Every subject the store holds, sorted."""
        view = self._open()
        try:
            return view.subjects()
        finally:
            view.close()

    def get(self, subjects: Iterable[str]) -> tuple[str, Lineage | None, str]:
        """(subject as found, its lineage or None, the run's policy version), trying each
        spelling of the subject in turn (as given, then its redaction token)."""
        view = self._open()
        try:
            found, lineage = view.find(subjects)
            return found, lineage, view.meta("policy_version") or ""
        finally:
            view.close()


_STYLE = """
@page { size: A4 portrait; margin: 16mm 15mm; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "Hiragino Sans", Meiryo, sans-serif;
  color: #1d2433; margin: 2.5em auto; max-width: 52em; padding: 0 1.5em; }
h1 { font-size: 1.45em; margin: 0 0 .2em; overflow-wrap: anywhere; }
h2 { font-size: 1.1em; margin: 2em 0 .6em; border-bottom: 1px solid #d8dde6; padding-bottom: .3em; }
.meta { color: #5a6475; margin: 0 0 1.5em; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  overflow-wrap: anywhere; }
.tag { display: inline-block; border: 1px solid #c7ced9; border-radius: 3px; padding: 0 .35em;
  margin: 0 .25em .2em 0; font-size: 12px; max-width: 100%; overflow-wrap: anywhere; }
.breach .tag { color: #a3261a; border-color: #f0b4ad; font-weight: 600; }
.none { color: #5a6475; font-style: italic; }
.recipient { border: 1px solid #d8dde6; border-radius: 8px; margin: 0 0 .9em; padding: .7em .9em;
  break-inside: avoid; }
.recipient h3 { font-size: 1.02em; margin: 0 0 .1em; overflow-wrap: anywhere; }
.recipient .who { color: #5a6475; font-size: 12.5px; margin: 0 0 .5em; }
dl { display: grid; grid-template-columns: 9.5em minmax(0, 1fr); gap: .25em .8em; margin: 0; }
dt { color: #5a6475; font-size: 12.5px; padding-top: .1em; }
dd { margin: 0; min-width: 0; }
.when { white-space: nowrap; }
.notify-yes { color: #1d2433; font-weight: 600; }
.notify-no { color: #5a6475; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { text-align: left; vertical-align: top; padding: .4em .5em;
  border-bottom: 1px solid #e6e9ef; overflow-wrap: anywhere; }
th { font-weight: 600; background: #f4f6f9; font-size: 12.5px; }
ul.records { columns: 2; padding-left: 1.2em; margin: 0; }
@media print { body { margin: 0; max-width: none; padding: 0; font-size: 12.5px; }
  h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""

#: Forms that are not personal data, as the reason not to notify says them.
_NOT_PERSONAL = {
    "pseudonymized": "pseudonymized with a key",
    "anonymized": "anonymized",
    "aggregated": "aggregated",
}


def _tags(items: Iterable[str], labels: Mapping[str, str] | None = None) -> str:
    shown = [
        f'<span class="tag" title="{html.escape(i)}">{html.escape((labels or {}).get(i, i))}</span>'
        for i in items
    ]
    return "".join(shown) or '<span class="none">–</span>'


def _moment(text: str | None) -> tuple[str, str, str]:
    """(date, hh:mm, offset) of an RFC 3339 time, as the event said it."""
    if not text:
        return ("", "", "")
    moment = datetime.fromisoformat(text)
    offset = moment.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    return (moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M"), offset)


def _when(first: str | None, last: str | None) -> str:
    """First and last time in few words, each part kept on one line."""
    (d1, t1, z1), (d2, t2, z2) = _moment(first), _moment(last)
    if not d1:
        return '<span class="none">–</span>'
    e = html.escape
    if (d1, t1, z1) == (d2, t2, z2):
        return f'<span class="when">{e(d1)} {e(t1)} ({e(z1)})</span>'
    if d1 == d2 and z1 == z2:
        return f'<span class="when">{e(d1)}, {e(t1)}–{e(t2)} ({e(z1)})</span>'
    return (
        f'<span class="when">{e(d1)} {e(t1)} ({e(z1)})</span> – '
        f'<span class="when">{e(d2)} {e(t2)} ({e(z2)})</span>'
    )


def _why_not(forms: list[str] | None) -> str:
    """Why a recipient that received the subject's data is not to be notified."""
    kinds = [_NOT_PERSONAL[f] for f in forms or () if f in _NOT_PERSONAL]
    what = " or ".join(kinds) if kinds else "pseudonymized with a key, anonymized or aggregated"
    return f"it received only data {what}, which is not personal data"


def render_html(data: dict[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """A self-contained page of the answer, to print and send (no script, no network).

    ``labels`` names categories as the policy does (and the lineage graph shows them);
    without it, categories are shown by id. The page fits A4 portrait when printed.
    """
    e = html.escape
    notify = set(data["notify_on_correction"])
    cards = []
    for r in data["recipients"]:
        kind = KIND_LABELS.get(r["kind"], r["kind"])
        where = f"{kind} · {r['country']}" if r["country"] else kind
        breaches = (
            f'<span class="breach">{_tags(r["breaches"])}</span>'
            if r["breaches"]
            else '<span class="none">none</span>'
        )
        if r["recipient"] in notify:
            told = '<span class="notify-yes">Yes: it received personal data</span>'
        else:
            told = f'<span class="notify-no">No: {e(_why_not(r.get("forms")))}</span>'
        forms = r.get("forms")
        cards.append(
            f'<section class="recipient" data-recipient="{e(r["recipient"])}">'
            f"<h3>{e(r['name'])}</h3>"
            f'<p class="who"><code>{e(r["recipient"])}</code> · {e(where)}</p><dl>'
            f"<dt>Categories</dt><dd>{_tags(r['categories'], labels)}</dd>"
            f"<dt>Purposes</dt><dd>{_tags(r['purposes'])}</dd>"
            f"<dt>Legal basis</dt><dd>{_tags(r['legal_bases'])}</dd>"
            + (f"<dt>Form</dt><dd>{_tags(forms)}</dd>" if forms else "")
            + f"<dt>When</dt><dd>{_when(r['first_at'], r['last_at'])} · "
            f"{r['events']} transfer{'' if r['events'] == 1 else 's'}</dd>"
            f"<dt>Breaches</dt><dd>{breaches}</dd>"
            f"<dt>To notify</dt><dd>{told}</dd>"
            "</dl></section>"
        )
    consents = [
        "<tr>"
        f"<td>{_when(c['occurred_at'], c['occurred_at'])}</td><td>{e(c['status'])}</td>"
        f"<td><code>{e(c['recipient'])}</code></td>"
        f"<td>{_tags(c['purposes']) if c['purposes'] is not None else 'every purpose'}</td>"
        f"<td>{e(c['reference'] or '–')}</td>"
        "</tr>"
        for c in data["consents"]
    ]
    none = '<p class="none">None on record.</p>'
    recipients = (
        "".join(cards)
        if cards
        else '<p class="none">No recipient received this subject\'s data.</p>'
    )
    consents_table = (
        '<table><colgroup><col style="width:30%"><col style="width:12%">'
        '<col style="width:18%"><col style="width:22%"><col style="width:18%"></colgroup>'
        "<tr><th>When</th><th>Decision</th><th>Recipient</th><th>Purposes</th>"
        "<th>Reference</th></tr>" + "".join(consents) + "</table>"
        if consents
        else none
    )
    records = (
        '<ul class="records">'
        + "".join(f"<li><code>{e(r)}</code></li>" for r in data["provision_records"])
        + "</ul>"
        if data["provision_records"]
        else none
    )
    names = {r["recipient"]: r["name"] for r in data["recipients"]}
    to_notify = (
        "<ul>"
        + "".join(
            f"<li>{e(names.get(rid, rid))} <code>{e(rid)}</code></li>"
            for rid in data["notify_on_correction"]
        )
        + "</ul>"
        if data["notify_on_correction"]
        else "<p>Nobody outside the company.</p>"
    )
    spared = [r for r in data["recipients"] if r["recipient"] not in notify]
    not_notified = (
        "<p>Not to notify, though they received this subject's data:</p><ul>"
        + "".join(
            f"<li>{e(r['name'])} <code>{e(r['recipient'])}</code>: {e(_why_not(r.get('forms')))}"
            "</li>"
            for r in spared
        )
        + "</ul>"
        if spared
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Personal data of subject {e(data['subject'])}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Who received the personal data of subject <code>{e(data['subject'])}</code></h1>"
        f'<p class="meta">As of {_when(data["as_of"], data["as_of"])} · policy version '
        f"{e(data['policy_version'])}"
        " · from what the company's systems reported when the data flowed</p>"
        f"<h2>Recipients</h2>{recipients}"
        f"<h2>Consent decisions</h2>{consents_table}"
        "<h2>Records of provision to third parties (APPI Art. 29)</h2>"
        f"{records}"
        "<h2>To notify of a correction or deletion</h2>"
        f"{to_notify}{not_notified}"
        "</body></html>\n"
    )
