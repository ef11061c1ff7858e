"""The routes file: which alerts and incidents go where (YAML -> checked, frozen :class:`Routes`).

Example::

    routes:
      - name: privacy-office
        match:
          min_severity: high        # critical, high, medium or low (default: low, all)
          articles: ["9", "10"]     # default: every article
          kinds: [alert, incident]  # default: both
          statuses: [open]          # open, retracted (alerts), updated (incidents)
        urls:
          - "slack://${SLACK_TOKEN_A}/${SLACK_TOKEN_B}/${SLACK_TOKEN_C}/#privacy"
      - name: siem
        syslog:
          - {host: siem.example.com, port: 514, protocol: udp}
    delivery:
      attempts: 5
      give_up_after: 5m

A route sends what its ``match`` accepts (every condition given must hold; a list
holds when any entry does) to each of its destinations: apprise URLs (Slack, Teams,
e-mail, ``json://`` webhooks, ...) and syslog collectors, which get CEF.

Loaded like a policy file, with the policy loader's safe YAML pass (plain YAML only,
no anchors or aliases, no duplicate keys, no control characters, the line of every
key kept), then three checks, each reporting every problem it finds with file, line
and key. A problem never repeats a value of the file: a token pasted under the wrong
key, or a ``urls:`` written as one string, must not end up in a terminal or a CI log.
It names what was expected and the kind of what was given (``Input should be a valid
list (got a string)``):

1. shape: unknown keys, missing keys, wrong types (the pydantic models below);
2. references: route names are unique, and every rule id and article a match names
   is in the rule catalogue (a typo would otherwise match nothing, silently);
3. URLs: each ``${NAME}`` is replaced by that environment variable (a variable not
   set, or empty, is refused by name: tokens stay out of the file; ``$${`` is a
   literal ``${``), and apprise must be able to use the result. Problems name the
   URL's place and scheme, never the URL: once substituted it may hold a token, and
   the loaded URLs are :class:`~pydantic.SecretStr`, so printing a route shows none.
   The values put in, and a URL's password, are given to the log guard
   (:func:`lineage.logguard.protect`): no log line of the process shows them.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    ValidationError,
    model_validator,
)

from lineage.durations import parse_duration
from lineage.errors import PolicyError
from lineage.logguard import protect
from lineage.notify.errors import RoutesError, RoutesProblem

# The policy loader's YAML pass is the one safe reader of our YAML files: reuse it
# rather than keep a second copy of the anchor, tag and depth checks.
from lineage.policy.loader import _compose, _dotted, _line, _shape_problems
from lineage.rules import CATALOGUE
from lineage.rules.base import article_key
from lineage.schemas.types import Severity

__all__ = [
    "MAX_ROUTES_BYTES",
    "Delivery",
    "Facility",
    "Kind",
    "Match",
    "Route",
    "Routes",
    "Status",
    "SyslogTarget",
    "Transport",
    "apprise_refusal",
    "load_routes",
    "load_routes_text",
    "scheme_of",
    "substitute",
    "validate_route_name",
]

#: A routes file larger than this is refused unread.
MAX_ROUTES_BYTES = 256 * 1024

_FROZEN = ConfigDict(extra="forbid", frozen=True)

Path_ = tuple[str | int, ...]


class Kind(StrEnum):
    """What the monitor publishes that a route can forward."""

    ALERT = "alert"
    INCIDENT = "incident"


#: Alerts are ``open`` or ``retracted``; incidents ``open`` then ``updated``.
Status = Literal["open", "retracted", "updated"]


class Transport(StrEnum):
    """How syslog reaches its collector."""

    UDP = "udp"
    TCP = "tcp"


class Facility(StrEnum):
    """Syslog facilities a route may log under (RFC 5424 s.6.2.1)."""

    USER = "user"
    DAEMON = "daemon"
    AUTH = "auth"
    AUTHPRIV = "authpriv"
    LOCAL0 = "local0"
    LOCAL1 = "local1"
    LOCAL2 = "local2"
    LOCAL3 = "local3"
    LOCAL4 = "local4"
    LOCAL5 = "local5"
    LOCAL6 = "local6"
    LOCAL7 = "local7"

    @property
    def code(self) -> int:
        """The facility's number in the syslog priority."""
        return _FACILITY_CODES[self]


_FACILITY_CODES = {
    Facility.USER: 1,
    Facility.DAEMON: 3,
    Facility.AUTH: 4,
    Facility.AUTHPRIV: 10,
    **{Facility(f"local{n}"): 16 + n for n in range(8)},
}

# -- constrained types (plain validators, tested on their own) --------------------------------

_ROUTE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def validate_route_name(value: str) -> str:
    """A route name: it labels metrics and log lines, so a short id, not free text.

    >>> validate_route_name("privacy-office")
    'privacy-office'
    """
    if not _ROUTE_NAME.fullmatch(value):
        raise ValueError(
            "a route name is 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )
    return value


def _article_text(value: Any) -> Any:
    # ``articles: [9, 10]`` is how people write it; the catalogue says "9".
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _seconds(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # refused by the float validator, not read as 0 or 1
    if isinstance(value, str):
        try:
            return parse_duration(value).total_seconds()
        except ValueError:  # its message repeats the value
            raise ValueError("not a duration (write 90s, 30m, 24h or 2d)") from None
    return value


def _nonblank_secret(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("an empty URL")
    return value


RouteName = Annotated[str, AfterValidator(validate_route_name)]
Article = Annotated[str, BeforeValidator(_article_text), Field(min_length=1, max_length=32)]
RuleId = Annotated[str, Field(min_length=1, max_length=128)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
Url = Annotated[SecretStr, BeforeValidator(_nonblank_secret)]
Host = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:%-]{1,255}$")]


# -- the models ---------------------------------------------------------------------------------


class Match(BaseModel):
    """What a route forwards: every condition given must hold."""

    model_config = _FROZEN

    min_severity: Severity = Field(
        default=Severity.LOW, description="the least severity forwarded (default: low, all)"
    )
    articles: Annotated[list[Article], Field(min_length=1)] | None = Field(
        default=None, description="only these policy articles ('9', '10', 'APPI-28'); default all"
    )
    rules: Annotated[list[RuleId], Field(min_length=1)] | None = Field(
        default=None, description="only these rule ids ('art9.no-consent'); default all"
    )
    kinds: Annotated[list[Kind], Field(min_length=1)] = Field(
        default=[Kind.ALERT, Kind.INCIDENT], description="alert, incident or both (default)"
    )
    statuses: Annotated[list[Status], Field(min_length=1)] | None = Field(
        default=None,
        description="only these statuses: open, retracted (alerts), updated (incidents); "
        "default all",
    )

    def accepts(self, kind: Kind, record: Mapping[str, Any]) -> bool:
        """True when ``record`` (an alert or incident as published) is for this route."""
        if kind not in self.kinds:
            return False
        try:
            severity = Severity(str(record.get("severity")))
        except ValueError:
            return False
        if severity.rank < self.min_severity.rank:
            return False
        if self.articles is not None and record.get("article") not in self.articles:
            return False
        if self.rules is not None and record.get("rule") not in self.rules:
            return False
        return self.statuses is None or record.get("status", "open") in self.statuses


class SyslogTarget(BaseModel):
    """A syslog collector (a SIEM): one RFC 5424 message holding one CEF line per record."""

    model_config = _FROZEN

    host: Host = Field(description="the collector's host name or address")
    port: StrictInt = Field(default=514, ge=1, le=65535, description="its port (default 514)")
    protocol: Transport = Field(
        default=Transport.UDP, description="udp (one datagram a message) or tcp (one per line)"
    )
    facility: Facility = Field(default=Facility.LOCAL0, description="syslog facility")


class Route(BaseModel):
    """A name, what it forwards, and where to."""

    model_config = _FROZEN

    name: RouteName = Field(description="names the route in metrics, logs and summaries")
    match: Match = Field(default_factory=Match, description="what it forwards (default all)")
    urls: list[Url] = Field(
        default=[],
        description="apprise URLs (slack://, workflows://, mailtos://, json://, ...); "
        "${NAME} is replaced by the environment variable NAME",
    )
    syslog: list[SyslogTarget] = Field(default=[], description="syslog collectors, sent CEF")

    @model_validator(mode="after")
    def _goes_somewhere(self) -> Route:
        if not self.urls and not self.syslog:
            raise ValueError("a route needs a destination: urls, syslog or both")
        return self


class Delivery(BaseModel):
    """How hard each destination is tried, and how much may wait for it."""

    model_config = _FROZEN

    queue_size: StrictInt = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="notifications waiting per destination; when full the oldest is dropped",
    )
    attempts: StrictInt = Field(
        default=5, ge=1, le=100, description="attempts per notification and destination"
    )
    give_up_after: Seconds = Field(
        default=300.0, gt=0, description="no retry starts later than this after the first try"
    )
    backoff: Seconds = Field(
        default=1.0, ge=0, description="wait before the first retry; doubles at each retry"
    )
    max_backoff: Seconds = Field(default=60.0, ge=0, description="longest wait between tries")
    timeout: Seconds = Field(
        default=10.0, gt=0, description="syslog: longest connect or send (apprise: ?cto=&rto=)"
    )


class Routes(BaseModel):
    """A whole routes file."""

    model_config = _FROZEN

    routes: Annotated[list[Route], Field(min_length=1)] = Field(description="the routes, in order")
    delivery: Delivery = Field(default_factory=Delivery, description="retries and queues")


# -- substitution ----------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(\$?)\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def substitute(text: str, environ: Mapping[str, str], used: list[str] | None = None) -> str:
    """Replace each ``${NAME}`` by the environment variable ``NAME``; ``$${`` stays ``${``.
    ``used``, when given, receives each value put in.

    Raises ValueError naming the variable when it is not set or empty (the value is
    never in the message).

    >>> substitute("json://hooks.example.com/${HOOK}", {"HOOK": "a1b2"})
    'json://hooks.example.com/a1b2'
    """

    def one(found: re.Match[str]) -> str:
        escaped, name = found.group(1), found.group(2)
        if escaped:
            return "${" + name + "}"
        if not _NAME.fullmatch(name):
            # Not repeated: what stands between the braces may be a pasted token.
            raise ValueError(
                "a '${...}' whose inside is not a variable name (A-Z, a-z, 0-9, _; "
                "write $${ for a literal '${')"
            )
        value = environ.get(name)
        if value is None:
            raise ValueError(f"environment variable {name} is not set")
        if not value:
            raise ValueError(f"environment variable {name} is empty")
        if used is not None:
            used.append(value)
        return value

    return _VARIABLE.sub(one, text)


# -- loading -------------------------------------------------------------------------------------


def load_routes(path: str | Path, environ: Mapping[str, str] | None = None) -> Routes:
    """Load and check a routes file; ``environ`` (default ``os.environ``) fills ``${NAME}``."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_ROUTES_BYTES + 1)
        if len(data) > MAX_ROUTES_BYTES:
            message = f"larger than {MAX_ROUTES_BYTES} bytes: not a routes file"
            raise RoutesError([RoutesProblem(str(file), None, "(file)", message)])
        text = data.decode("utf-8")
    except OSError as exc:
        problem = RoutesProblem(str(file), None, "(file)", exc.strerror or str(exc))
        raise RoutesError([problem]) from None
    except UnicodeDecodeError as exc:
        problem = RoutesProblem(str(file), None, "(file)", f"not UTF-8: {exc.reason}")
        raise RoutesError([problem]) from None
    return load_routes_text(text, str(file), environ)


def load_routes_text(
    text: str, file: str = "<routes>", environ: Mapping[str, str] | None = None
) -> Routes:
    """Load and check routes text; ``file`` names it in problems."""
    if len(text) > MAX_ROUTES_BYTES:
        problem = RoutesProblem(file, None, "(file)", f"larger than {MAX_ROUTES_BYTES} bytes")
        raise RoutesError([problem])
    try:
        data, lines = _compose(text, file)
    except PolicyError as exc:
        raise RoutesError([_reworded(p) for p in exc.problems]) from None
    if not isinstance(data, dict):
        raise RoutesError([RoutesProblem(file, 1, "(top)", "a routes file is a YAML mapping")])
    try:
        routes = Routes.model_validate(data)
    except ValidationError as exc:
        raise RoutesError(_shape_problems(exc, lines, file, show_values=False)) from None
    problems = _reference_problems(routes, lines, file)
    if problems:
        raise RoutesError(problems)
    routes, problems = _with_urls(routes, lines, file, os.environ if environ is None else environ)
    if problems:
        raise RoutesError(problems)
    return routes


def _reworded(problem: RoutesProblem) -> RoutesProblem:
    # The YAML pass speaks of policy files; say the same of a routes file.
    message = problem.message.replace("policy files", "routes files").replace(
        "not a policy", "not a routes file"
    )
    return RoutesProblem(problem.file, problem.line, problem.key, message)


def _reference_problems(routes: Routes, lines: dict[Path_, int], file: str) -> list[RoutesProblem]:
    problems: list[RoutesProblem] = []

    def report(path: Path_, message: str) -> None:
        problems.append(RoutesProblem(file, _line(lines, path), _dotted(path), message))

    articles = sorted({spec.article for spec in CATALOGUE.values()}, key=article_key)
    seen: dict[str, int] = {}
    for i, route in enumerate(routes.routes):
        if route.name in seen:
            first = _line(lines, ("routes", seen[route.name], "name"))
            report(("routes", i, "name"), f"this route name is used twice (first on line {first})")
        seen.setdefault(route.name, i)
        match = ("routes", i, "match")
        for j, rule_id in enumerate(route.match.rules or []):
            if rule_id not in CATALOGUE:
                report((*match, "rules", j), f"not a rule id of the catalogue{_hint(rule_id)}")
        for j, article in enumerate(route.match.articles or []):
            if article not in articles:
                report(
                    (*match, "articles", j),
                    f"not an article of the rules (they cover {', '.join(articles)})",
                )
    problems.sort(key=lambda p: p.line or 0)
    return problems


def _hint(rule_id: str) -> str:
    close = difflib.get_close_matches(rule_id, list(CATALOGUE), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _with_urls(
    routes: Routes, lines: dict[Path_, int], file: str, environ: Mapping[str, str]
) -> tuple[Routes, list[RoutesProblem]]:
    """Routes with every URL substituted, and the problems of those that cannot be used."""
    problems: list[RoutesProblem] = []
    checked: list[Route] = []
    for i, route in enumerate(routes.routes):
        urls: list[SecretStr] = []
        for j, secret in enumerate(route.urls):
            path: Path_ = ("routes", i, "urls", j)
            used: list[str] = []
            try:
                url = substitute(secret.get_secret_value(), environ, used)
            except ValueError as exc:
                problems.append(RoutesProblem(file, _line(lines, path), _dotted(path), str(exc)))
                continue
            finally:
                for value in used:  # a token, whatever becomes of the URL
                    protect(value)
            protect(_password(url))
            why = apprise_refusal(url)
            if why is not None:
                problems.append(RoutesProblem(file, _line(lines, path), _dotted(path), why))
                continue
            urls.append(SecretStr(url))
        checked.append(route.model_copy(update={"urls": urls}))
    return routes.model_copy(update={"routes": checked}), problems


def _password(url: str) -> str | None:
    """The password of a URL's ``user:password@``, if it has one."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


_SCHEME = re.compile(r"([a-z][a-z0-9+.-]{0,31})://", re.IGNORECASE)


def scheme_of(url: str) -> str | None:
    """The URL's scheme, lower-case (safe to show: never a token), or None."""
    found = _SCHEME.match(url)
    return found.group(1).lower() if found else None


def apprise_refusal(url: str) -> str | None:
    """Why apprise cannot use ``url`` (never repeating it), or None when it can."""
    scheme = scheme_of(url)
    if scheme is None:
        return "not a URL (write scheme://..., e.g. slack://, mailtos://, json://)"
    try:
        import apprise
    except ImportError:
        return "apprise URLs need the notify extra: pip install 'privacy-lineage[notify]'"
    with _apprise_silent():
        service = apprise.Apprise.instantiate(url)
    if service is None:
        return f"apprise cannot use this {scheme}:// URL (an unknown scheme, or parts missing)"
    return None


@contextlib.contextmanager
def _apprise_silent() -> Iterator[None]:
    # apprise logs a URL it cannot parse, and ours may hold a token once substituted.
    logger = logging.getLogger("apprise")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was
