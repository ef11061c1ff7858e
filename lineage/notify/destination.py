"""What the router delivers to: a :class:`Destination`, and the ones a route names.

A destination sends one alert or incident, or raises
:class:`~lineage.notify.errors.DeliveryFailed` with a reason safe to log; the router
(:mod:`lineage.notify.router`) retries, counts and gives up. Each destination is used
by one thread only, so it may keep a connection open between sends.

A route's destinations are numbered from 1, its ``urls`` first and then its
``syslog`` targets, in file order; log lines name a destination by route, number
and :attr:`Destination.label` (a scheme such as ``slack``, or ``syslog/udp``), never
by its URL, which may hold a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from lineage.notify.routes import Delivery, Kind, Route

__all__ = ["Destination", "destinations_for"]


class Destination(Protocol):
    """One place notifications go to."""

    #: What the destination is, safe to log: ``slack``, ``json``, ``syslog/tcp``...
    label: str

    def send(self, kind: Kind, record: Mapping[str, Any]) -> None:
        """Deliver one alert or incident, or raise DeliveryFailed."""

    def close(self) -> None:
        """Let go of any connection."""


def destinations_for(route: Route, delivery: Delivery, version: str) -> list[Destination]:
    """The route's destinations, numbered as the module docstring says."""
    from lineage.notify.apprise_destination import AppriseDestination
    from lineage.notify.syslog_destination import SyslogDestination

    found: list[Destination] = [AppriseDestination(url) for url in route.urls]
    found += [
        SyslogDestination(target, timeout=delivery.timeout, version=version)
        for target in route.syslog
    ]
    return found
