"""Alert routing: alerts and incidents forwarded to people and SIEMs as they are raised.

A routes file (:mod:`lineage.notify.routes`) says which alerts and incidents go
where: apprise URLs (Slack, Microsoft Teams, e-mail, ``json://`` webhooks and the rest
of apprise's services, the ``notify`` extra) and syslog collectors, which get CEF
(:mod:`lineage.notify.cef`). The :class:`Router` (:mod:`lineage.notify.router`) takes
each record without blocking and delivers it in the background, retrying with
backoff; ``lineage run --routes`` and the worker (``LINEAGE_ROUTES``) use it.

Delivery is at least once: a record published again (an event judged again after a
crash or a rebalance) is forwarded again, with the same ``alert_id``.
"""

from lineage.notify.errors import DeliveryFailed, NotifyError, RoutesError, RoutesProblem
from lineage.notify.router import Router, RouteStats, summary_line
from lineage.notify.routes import Kind, Routes, load_routes, load_routes_text

__all__ = [
    "DeliveryFailed",
    "Kind",
    "NotifyError",
    "RouteStats",
    "Router",
    "Routes",
    "RoutesError",
    "RoutesProblem",
    "load_routes",
    "load_routes_text",
    "summary_line",
]
