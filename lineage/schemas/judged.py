"""An access event as the engine judges it: the validated model's values, in a class of
the compiled group.

The engine and the rules read an event's fields 30 times an event on a typical day and
66 in a breach storm. A pydantic model answers each read through the generic attribute
lookup (the class's attributes, then the instance's dict), about 25 ns; a class
compiled with them (:mod:`lineage.compiled`) answers from its own struct. And an event
decoded in another process (:mod:`lineage.decode_process`) is made into this class
from its packed values directly, without the model's dict, fields set and four
descriptor calls.

An :class:`Access` holds what validation made of the event, and nothing else: it is
made only from a validated :class:`~lineage.schemas.AccessEvent` (:func:`judged`) or
from what :func:`~lineage.schemas.packed.pack` made of one
(:func:`~lineage.schemas.packed.unpack_judged`). :func:`model_of` makes the model
again, the same as the one validated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lineage.schemas.events import AccessEvent, ExceptionClaim, Pseudonymization
from lineage.schemas.types import Action, Form, LegalBasis
from lineage.schemas.zones import EPOCHS, SUFFIXES

__all__ = ["EVERY_FIELD", "Access", "iso_text", "judged", "model_of", "posix_of"]

#: The fields of an access event: those an event made by the engine itself has set.
EVERY_FIELD = frozenset(AccessEvent.model_fields)


class Access:
    """An access event's fields, as :class:`~lineage.schemas.AccessEvent` holds them."""

    type: str
    schema_version: str
    event_id: str
    occurred_at: datetime
    source: str
    action: Action
    subject: str | None
    categories: list[str]
    form: Form
    pseudonymization: Pseudonymization | None
    purpose: str
    recipient: str | None
    via: str | None
    legal_basis: LegalBasis | None
    exception: ExceptionClaim | None
    encrypted_in_transit: bool | None
    attributes: dict[str, Any]
    #: The names of the fields the message set (the model's ``model_fields_set``).
    fields_set: frozenset[str]
    #: ``occurred_at`` as POSIX seconds (:func:`posix_of`), which judging reads for
    #: every event.
    posix: float
    _at_text: str | None

    def __init__(
        self,
        event_id: str,
        occurred_at: datetime,
        source: str,
        action: Action,
        subject: str | None,
        categories: list[str],
        form: Form,
        pseudonymization: Pseudonymization | None,
        purpose: str,
        recipient: str | None,
        via: str | None,
        legal_basis: LegalBasis | None,
        exception: ExceptionClaim | None,
        encrypted_in_transit: bool | None,
        attributes: dict[str, Any],
        fields_set: frozenset[str],
        at_text: str | None = None,
    ) -> None:
        # The only values the model allows.
        self.type = "access"
        self.schema_version = "1"
        self.event_id = event_id
        self.occurred_at = occurred_at
        self.source = source
        self.action = action
        self.subject = subject
        self.categories = categories
        self.form = form
        self.pseudonymization = pseudonymization
        self.purpose = purpose
        self.recipient = recipient
        self.via = via
        self.legal_basis = legal_basis
        self.exception = exception
        self.encrypted_in_transit = encrypted_in_transit
        self.attributes = attributes
        self.fields_set = fields_set
        self.posix = posix_of(occurred_at)
        self._at_text = at_text

    @property
    def at_text(self) -> str:
        """``occurred_at.isoformat()``, made once: an alert, a provision record, the
        subject's view and a pending alert each carry it."""
        text = self._at_text
        if text is None:
            text = self._at_text = iso_text(self.occurred_at)
        return text

    def __repr__(self) -> str:
        return f"Access(event_id={self.event_id!r})"


def judged(event: AccessEvent) -> Access:
    """The validated ``event`` as the engine judges it."""
    return Access(
        event.event_id,
        event.occurred_at,
        event.source,
        event.action,
        event.subject,
        event.categories,
        event.form,
        event.pseudonymization,
        event.purpose,
        event.recipient,
        event.via,
        event.legal_basis,
        event.exception,
        event.encrypted_in_transit,
        event.attributes,
        frozenset(event.model_fields_set),
    )


def model_of(access: Access) -> AccessEvent:
    """The model ``access`` was made from, the same as validation made it."""
    return AccessEvent.model_construct(
        set(access.fields_set),
        type="access",
        schema_version="1",
        event_id=access.event_id,
        occurred_at=access.occurred_at,
        source=access.source,
        action=access.action,
        subject=access.subject,
        categories=access.categories,
        form=access.form,
        pseudonymization=access.pseudonymization,
        purpose=access.purpose,
        recipient=access.recipient,
        via=access.via,
        legal_basis=access.legal_basis,
        exception=access.exception,
        encrypted_in_transit=access.encrypted_in_transit,
        attributes=access.attributes,
    )


def posix_of(moment: datetime) -> float:
    """``moment.timestamp()``, the same float, for the events' times.

    ``timestamp()`` subtracts the epoch in UTC, which asks the event's zone for its
    offset: a call into pydantic's ``TzInfo`` that cost a tenth of judging an event.
    A time in a zone of :func:`lineage.schemas.zones.zone_of`, as every event time
    unpacked from the decoding process is, is subtracted from the epoch in that same
    zone object instead, which needs no offset at all: the difference is the same, and
    so is its ``total_seconds()``. Other times (decoded in this process, each with a
    zone of its own) are left to ``timestamp()``.
    """
    epoch = EPOCHS.get(id(moment.tzinfo))  # None, a zone kept for good, is no key there
    if epoch is None:
        return moment.timestamp()
    return (moment - epoch).total_seconds()


#: "00" to "59": the hours, minutes and seconds of :func:`iso_text`.
_TWO = [f"{n:02d}" for n in range(60)]
#: "YYYY-MM-DDT" by year * 10,000 + month * 100 + day: one a day met, up to
#: :data:`_MOST_DATES` (events of any day may come, over years: then it starts again).
_DATES: dict[int, str] = {}
_MOST_DATES = 4_096


def iso_text(moment: datetime) -> str:
    """``moment.isoformat()``, the same text, for the events' times.

    ``isoformat()`` asks the event's zone for its offset through a call into pydantic's
    ``TzInfo``, and formats each field with ``printf``: 0.9 us, in an alert, a provision
    record, a view fact and a pending alert of nearly every event of a breach storm. A
    time in a zone of :func:`lineage.schemas.zones.zone_of` (every event time unpacked
    from the decoding process) is put together from its fields, its day's text and its
    zone's end instead. Other times are left to ``isoformat()``.
    """
    suffix = SUFFIXES.get(id(moment.tzinfo))
    if suffix is None:
        return moment.isoformat()
    key = moment.year * 10_000 + moment.month * 100 + moment.day
    date = _DATES.get(key)
    if date is None:
        if len(_DATES) >= _MOST_DATES:
            _DATES.clear()
        date = _DATES[key] = moment.date().isoformat() + "T"
    two = _TWO
    micro = moment.microsecond
    clock = f"{date}{two[moment.hour]}:{two[moment.minute]}:{two[moment.second]}"
    if micro:
        return f"{clock}.{str(1_000_000 + micro)[1:]}{suffix}"
    return clock + suffix
