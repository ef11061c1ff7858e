"""Forward alerts and incidents to the destinations of the routes that match them.

    submit(kind, record)  never blocks: the record is queued for each destination of
                          each route that matches it. Each destination has a bounded
                          queue (``delivery.queue_size``); when it is full, the OLDEST
                          waiting notification is dropped, counted and logged (at most
                          once a minute per destination)
    a thread per destination delivers its queue in order: each notification is tried
                          up to ``delivery.attempts`` times, with exponential backoff and
                          jitter between tries, and no retry starts later than
                          ``delivery.give_up_after`` after the first; then it is given up:
                          one log line naming the route and the destination's number and
                          kind (never its URL, which may hold a token), and counted
    close(timeout)        takes nothing more and delivers what waits until the timeout;
                          what is still waiting then is counted as dropped, what is being
                          sent as failed

Why the oldest is dropped: a queue fills only while a destination is down or slow,
and then what waits grows stale; the newest says how things stand now (an incident's
latest count, the retraction that follows an alert). Every alert stays in the audit
trail (``alerts.jsonl``, the alerts topic) whatever a notification's fate.

Why a thread per destination, not one for all: a Slack outage (4 s timeouts, five
tries, a minute or more of backoff per message) must not hold up the SIEM's syslog.
The threads are daemons: a destination that never answers cannot keep a process
from ending.

Delivery is at least once. In the worker, an event judged again (after a crash, a
rebalance, or outputs Kafka did not take) raises its alerts again with the same
``alert_id``, and they are forwarded again; receivers that care deduplicate on
``alert_id`` (alerts) or on ``incident_id`` and ``count`` (incidents). A record is
never logged here: it is redacted before it is published, and even so only the
route, the destination and counts are logged.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lineage.notify.destination import Destination, destinations_for
from lineage.notify.errors import DeliveryFailed
from lineage.notify.routes import Delivery, Kind, Route, Routes

__all__ = ["Outcome", "RouteStats", "Router", "backoff_delay", "summary_line"]

log = logging.getLogger("lineage.notify")

Outcome = Literal["sent", "failed", "dropped"]
#: ``on_outcome(route, outcome, n)``: told of every notification's fate (for metrics).
OnOutcome = Callable[[str, Outcome, int], None]
MakeDestinations = Callable[[Route, Delivery], list[Destination]]

#: Seconds between two log lines about one destination's drops.
_DROP_LOG_EVERY = 60.0


@dataclass(slots=True)
class RouteStats:
    """What became of a route's notifications (one per record and destination)."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    #: Tries after the first, and the seconds of backoff waited before them.
    retries: int = 0
    backoff_seconds: float = 0.0

    def add(self, other: RouteStats) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.dropped += other.dropped
        self.retries += other.retries
        self.backoff_seconds += other.backoff_seconds


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): "equal jitter".

    The step doubles from ``base`` up to ``cap``; the wait is half the step plus a
    random part of the other half. The fixed half keeps a failing endpoint from being
    hammered; the random half spreads out workers that failed together.

    >>> 0.5 <= backoff_delay(1, 1.0, 60.0, random.Random(1)) <= 1.0
    True
    """
    step = min(cap, base * 2.0 ** min(retry - 1, 64))
    return step / 2 + rng.uniform(0, step / 2)


class _Lane:
    """One destination of one route: its bounded queue, its thread and its counts."""

    def __init__(
        self,
        router: Router,
        route: str,
        number: int,
        destination: Destination,
        delivery: Delivery,
        rng: random.Random,
    ) -> None:
        self.router = router
        self.route = route
        self.number = number
        self.destination = destination
        self.delivery = delivery
        self.rng = rng
        self.stats = RouteStats()
        self._queue: deque[tuple[Kind, Mapping[str, Any]]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = math.inf
        self._busy = False
        self._abandoned = False
        self._drop_logged_at = -math.inf
        self._drops_unlogged = 0
        self.thread = threading.Thread(
            target=self._run, name=f"lineage-notify-{route}-{number}", daemon=True
        )

    @property
    def name(self) -> str:
        return f"route {self.route}: destination {self.number} ({self.destination.label})"

    # -- the caller's side -------------------------------------------------------------------

    def put(self, kind: Kind, record: Mapping[str, Any]) -> bool:
        """Queue one notification; False when closed (then it is counted dropped)."""
        say, held = False, 0
        with self._cond:
            if self._closing:
                self.stats.dropped += 1
                accepted, dropped = False, 1
            else:
                dropped = 0
                if len(self._queue) >= self.delivery.queue_size:
                    self._queue.popleft()
                    self.stats.dropped += 1
                    dropped = 1
                self._queue.append((kind, record))
                self._cond.notify()
                accepted = True
            if dropped:
                self._drops_unlogged += 1
                now = time.monotonic()
                say = now - self._drop_logged_at >= _DROP_LOG_EVERY
                if say:
                    self._drop_logged_at, held, self._drops_unlogged = now, self._drops_unlogged, 0
        if dropped:
            self.router._counted(self.route, "dropped", 1)
            if say:
                log.warning(
                    "%s: %d notifications dropped (%s)",
                    self.name,
                    held,
                    "after close"
                    if not accepted
                    else f"queue full at {self.delivery.queue_size}: the oldest go first",
                )
        return accepted

    def close(self, deadline: float) -> None:
        with self._cond:
            self._closing = True
            self._deadline = deadline
            self._cond.notify_all()

    def abandon(self) -> None:
        """close() ran out of time: what waits is dropped, what is being sent failed."""
        with self._cond:
            self._abandoned = True
            waiting = len(self._queue)
            self._queue.clear()
            in_flight = 1 if self._busy else 0
            self.stats.dropped += waiting
            self.stats.failed += in_flight
        if waiting:
            self.router._counted(self.route, "dropped", waiting)
        if in_flight:
            self.router._counted(self.route, "failed", in_flight)
        if waiting or in_flight:
            log.warning(
                "%s: not done in time: %d waiting notifications dropped, %d being sent given up",
                self.name,
                waiting,
                in_flight,
            )

    # -- the thread's side -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._abandoned:
                    return
                kind, record = self._queue.popleft()
                self._busy = True
            sent, retries, waited = self._deliver(kind, record)
            with self._cond:
                self._busy = False
                if self._abandoned:
                    return  # counted by abandon()
                self.stats.retries += retries
                self.stats.backoff_seconds += waited
                if sent:
                    self.stats.sent += 1
                else:
                    self.stats.failed += 1
            self.router._counted(self.route, "sent" if sent else "failed", 1)

    def _deliver(self, kind: Kind, record: Mapping[str, Any]) -> tuple[bool, int, float]:
        """(sent, retries, seconds waited) for one notification."""
        delivery = self.delivery
        first = time.monotonic()
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                self.destination.send(kind, record)
                return True, attempt - 1, waited
            except DeliveryFailed as exc:
                why = str(exc)
            except Exception as exc:  # a library's surprise must not end the thread
                why = f"unexpected {type(exc).__name__}"
            if attempt >= delivery.attempts:
                break
            delay = backoff_delay(attempt, delivery.backoff, delivery.max_backoff, self.rng)
            if time.monotonic() + delay - first > delivery.give_up_after:
                break
            if not self._wait(delay):
                break
            waited += delay
        log.warning(
            "%s: gave up on a notification after %d attempts in %.1f s: %s",
            self.name,
            attempt,
            time.monotonic() - first,
            why,
        )
        return False, attempt - 1, waited

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False at once when close()'s deadline would pass first."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                if end > self._deadline or self._abandoned:
                    return False
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)


class Router:
    """Routes alerts and incidents to their destinations (see the module docstring).

    >>> router = Router(load_routes("routes.yaml"))    # doctest: +SKIP
    >>> router.start()                                 # doctest: +SKIP
    >>> router.submit("alert", alert)                  # doctest: +SKIP
    >>> print(summary_line(router.close(timeout=30)))  # doctest: +SKIP

    ``destinations(route, delivery)`` makes a route's destinations (default: its
    apprise URLs and syslog targets); ``on_outcome`` is told of every notification's
    fate, from the delivering threads and from :meth:`submit`.
    """

    def __init__(
        self,
        routes: Routes,
        *,
        on_outcome: OnOutcome | None = None,
        destinations: MakeDestinations | None = None,
        version: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        cef_version = version if version is not None else _package_version()
        make: MakeDestinations = destinations or (
            lambda route, delivery: destinations_for(route, delivery, cef_version)
        )
        self.routes = routes
        self._on_outcome = on_outcome
        seed = rng or random.Random()
        self._lanes: dict[str, list[_Lane]] = {
            route.name: [
                _Lane(self, route.name, n, d, routes.delivery, random.Random(seed.random()))
                for n, d in enumerate(make(route, routes.delivery), start=1)
            ]
            for route in routes.routes
        }
        self._started = False
        self._closed = False

    def __enter__(self) -> Router:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start a delivering thread per destination (what was submitted before waits)."""
        if self._started:
            return
        self._started = True
        for lanes in self._lanes.values():
            for lane in lanes:
                lane.thread.start()

    def submit(self, kind: Kind | Literal["alert", "incident"], record: Mapping[str, Any]) -> int:
        """Queue ``record`` for every destination of every route that matches it; never
        blocks. Returns how many notifications were queued (0: no route matched, or closed).

        ``record`` is an alert or an incident as published, which must not change after.
        """
        kind = Kind(kind)
        queued = 0
        for route in self.routes.routes:
            if route.match.accepts(kind, record):
                for lane in self._lanes[route.name]:
                    queued += lane.put(kind, record)
        return queued

    def stats(self) -> dict[str, RouteStats]:
        """Counts per route, now."""
        out: dict[str, RouteStats] = {}
        for name, lanes in self._lanes.items():
            total = out[name] = RouteStats()
            for lane in lanes:
                with lane._cond:
                    total.add(lane.stats)
        return out

    def close(self, timeout: float = 10.0) -> dict[str, RouteStats]:
        """Take nothing more, deliver what waits for up to ``timeout`` seconds, and return
        the counts per route (module docstring). Safe to call twice."""
        deadline = time.monotonic() + timeout
        lanes = [lane for group in self._lanes.values() for lane in group]
        if not self._closed:
            self._closed = True
            for lane in lanes:
                lane.close(deadline)
            for lane in lanes:
                if lane.thread.is_alive():
                    lane.thread.join(max(0.0, deadline - time.monotonic()))
            for lane in lanes:
                if lane.thread.is_alive() or not self._started:
                    lane.abandon()
                else:
                    lane.destination.close()
        return self.stats()

    def _counted(self, route: str, outcome: Outcome, n: int) -> None:
        if self._on_outcome is not None:
            self._on_outcome(route, outcome, n)


def _package_version() -> str:
    from lineage import __version__

    return __version__


def summary_line(stats: Mapping[str, RouteStats]) -> str:
    """One line for people: ``notifications: route a: 3 sent, 0 failed, 0 dropped; ...``."""
    parts = [
        f"route {name}: {s.sent} sent, {s.failed} failed, {s.dropped} dropped"
        for name, s in stats.items()
    ]
    return "notifications: " + ("; ".join(parts) if parts else "no routes")
