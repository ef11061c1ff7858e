"""Slack, Microsoft Teams, e-mail, webhooks and the rest of apprise's services.

Every apprise URL gets the texts for people (:mod:`lineage.notify.text`): a title
and a plain-text body, with control characters shown as escapes and chat mentions
made inert. A ``json://`` or ``jsons://`` webhook is for machines: it gets the record
as published on the alerts or incidents topic, less its ``subject`` (dropped, and its
value masked as ``[subject]`` wherever another field holds it:
:func:`lineage.notify.sanitize.without_subject`); ``alert_id`` leads to the whole
record in the audit trail.

apprise cannot post a JSON body of our own: its ``json://`` service always posts its
envelope ``{"version", "title", "message", "attachments", "type"}`` (the URL's
``:key=value`` arguments only add fixed strings or rename those keys). So the record's
JSON text is the envelope's ``message``, and ``title`` the line for people::

    {"version": "1.0", "title": "[high] Art. 9 art9.no-consent: crm -> ads",
     "message": "{\\"alert_id\\": \\"3f2a...\\", ...}", "attachments": [], "type": "failure"}

A receiver reads the record with one more ``json.loads(payload["message"])``. Headers
ride in the URL (``json://host/path?+Authorization=Bearer%20${HOOK_TOKEN}``).

apprise retries nothing here (its ``retry`` default is 0): the router retries, with
backoff, and counts. Its connect and read timeouts are the URL's ``cto`` and ``rto``
(4 s each unless the URL says otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apprise
import orjson
from pydantic import SecretStr

from lineage.notify import text
from lineage.notify.errors import DeliveryFailed, NotifyError
from lineage.notify.routes import Kind, scheme_of
from lineage.notify.sanitize import without_subject

__all__ = ["MACHINE_SCHEMES", "AppriseDestination"]

#: Schemes that get the record itself rather than the texts for people.
MACHINE_SCHEMES = frozenset({"json", "jsons"})


class AppriseDestination:
    """One apprise URL (see the module docstring for what it is sent)."""

    def __init__(self, url: SecretStr) -> None:
        raw = url.get_secret_value()
        self.label = scheme_of(raw) or "apprise"
        self._machine = self.label in MACHINE_SCHEMES
        self._apprise = apprise.Apprise()
        if not self._apprise.add(raw):
            # load_routes() checked every URL: only a changed apprise gets here.
            raise NotifyError(f"apprise refused a {self.label}:// URL it accepted when loaded")

    def send(self, kind: Kind, record: Mapping[str, Any]) -> None:
        if self._machine:
            body = orjson.dumps(without_subject(record)).decode()
        else:
            body = text.body(kind, record)
        result = self._apprise.notify(
            body=body,
            title=text.title(kind, record),
            notify_type=apprise.NotifyType(text.level(record)),
            body_format=apprise.NotifyFormat.TEXT,
        )
        if not result:
            raise DeliveryFailed(f"{self.label}: {result.status.name.lower()}")

    def close(self) -> None:
        self._apprise.clear()
