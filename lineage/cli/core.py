"""The core commands of ``lineage``: run, demo, records, subject.

Thin: validate, call the core, print, exit.

Exit codes: 0 done; 2 usage or policy errors; 3 ``--fail-on`` met; 1 anything else
that stopped the run (an unreadable input, an unreachable broker).
"""

from __future__ import annotations

import importlib
import sys
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click
import orjson
from click.core import ParameterSource

from lineage.cli.options import policy_option, policy_or_exit, redactor_or_exit
from lineage.durations import parse_duration
from lineage.errors import LineageError, PolicyError
from lineage.garbage import collect_garbage_seldom
from lineage.logguard import install_log_guard
from lineage.policy import Policy, load_policy
from lineage.redact import Redactor
from lineage.rules.base import art_label, article_key
from lineage.run import Forward, RunSummary, run_embedded
from lineage.schemas import Severity

if TYPE_CHECKING:
    from lineage.notify import Routes

__all__ = ["main"]

SEVERITIES = [s.value for s in Severity]
_PROGRESS_MIN_BYTES = 4 * 1024 * 1024


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"lineage: error: {message}", err=True)
    sys.exit(code)


def _print_summary(summary: RunSummary, out: Path) -> None:
    s = summary.stats
    rate = s.messages / summary.seconds if summary.seconds > 0 else 0.0
    click.echo(
        f"{s.messages} messages in {summary.seconds:.1f}s ({rate:,.0f}/s): "
        f"{s.access_events} access, {s.consent_events} consent, {s.duplicates} duplicates, "
        f"{s.dead_letters} dead letters"
    )
    if s.alerts:
        ordered = sorted(s.by_article.items(), key=lambda kv: article_key(kv[0]))
        articles = ", ".join(f"{art_label(a)}: {n}" for a, n in ordered)
        severities = ", ".join(
            f"{sev.value} {s.by_severity[sev.value]}"
            for sev in Severity
            if s.by_severity[sev.value]
        )
        click.echo(f"{s.alerts} alerts ({articles}) - {severities}; {summary.incidents} incidents")
        if s.retracted:
            by_article = ", ".join(
                f"{art_label(a)}: {n}"
                for a, n in sorted(
                    summary.retracted_by_article.items(), key=lambda kv: article_key(kv[0])
                )
            )
            click.echo(
                f"{s.retracted} alerts retracted by consents that arrived late ({by_article}): "
                f"{s.alerts - s.retracted} alerts stand, as lineage.html counts them"
            )
    else:
        click.echo("no alerts")
    if s.records:
        click.echo(f"{s.records} provision records (APPI Art. 29)")
    click.echo(
        f"outputs in {out}/ (alerts.jsonl, incidents.jsonl, dead-letter.jsonl, "
        "provision-records.jsonl, subjects.sqlite, lineage.*)"
    )


def _redactor() -> Redactor:
    return redactor_or_exit()


def _routes_or_exit(path: Path) -> Routes:
    """Load a routes file, or print each problem (file:line: key: message) and exit 2."""
    from lineage.notify import RoutesError, load_routes

    try:
        return load_routes(path)
    except RoutesError as exc:
        for problem in exc.problems:
            click.echo(f"lineage: routes error: {problem}", err=True)
        sys.exit(2)


def _run_source(
    policy: Policy,
    stream: IO[bytes],
    name: str,
    out: Path,
    size: int | None,
    lateness: Any,
    forward: Forward | None = None,
) -> RunSummary:
    show_bar = size is not None and size >= _PROGRESS_MIN_BYTES and sys.stderr.isatty()
    if not show_bar:
        return run_embedded(
            policy,
            stream,
            out,
            source_name=name,
            redactor=_redactor(),
            consent_lateness=lateness,
            forward=forward,
        )
    bar: Any
    with click.progressbar(
        length=size, label="judging events", file=sys.stderr, show_eta=True
    ) as bar:
        return run_embedded(
            policy,
            stream,
            out,
            source_name=name,
            redactor=_redactor(),
            on_progress=bar.update,
            consent_lateness=lateness,
            forward=forward,
        )


def one_line(exc: click.ClickException) -> str:
    """A click error (usage, bad parameter, missing file) as one line that names the
    command, the option and the value: ``lineage: error: lineage run: Invalid value for
    '--fail-on': 'hgh' is not one of 'critical', 'high', 'medium', 'low'. (see 'lineage run
    --help')``."""
    message = " ".join(exc.format_message().split())
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    if ctx is not None:
        return f"lineage: error: {ctx.command_path}: {message} (see '{ctx.command_path} --help')"
    return f"lineage: error: {message}"


class LineageGroup(click.Group):
    """Turns every error of ours that reaches the top into one line and an exit code, and
    imports a command added with :meth:`add_lazy` only when it is named (or listed), so
    that ``lineage run`` does not start by importing the worker's command line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, str] = {}

    def add_lazy(self, name: str, target: str) -> None:
        """Add the command ``name`` that ``target`` (``"module:attribute"``) is."""
        self._lazy[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy.pop(cmd_name, None)
        if target is not None:
            module, attribute = target.split(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's own main, with its usage errors said in one line (click prints three:
        the usage, a hint and the error) and the same exit codes."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            done = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.Abort:
            click.echo("lineage: stopped", err=True)
            sys.exit(1)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a group called alone: its help is what was asked for
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(one_line(exc), err=True)
            sys.exit(exc.exit_code)
        sys.exit(done if isinstance(done, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PolicyError as exc:
            for problem in exc.problems:
                click.echo(f"lineage: policy error: {problem}", err=True)
            sys.exit(2)
        except LineageError as exc:
            _fail(str(exc), 1)


@click.group("lineage", cls=LineageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="privacy-lineage")
def main() -> None:
    """privacy-lineage: watch personal-data flows, build their lineage graph, raise alerts."""
    collect_garbage_seldom()


@main.command()
@policy_option
@click.option(
    "--source",
    required=True,
    type=click.File("rb"),
    help="Events, one JSON object per line; '-' reads standard input.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for alerts.jsonl, incidents.jsonl, dead-letter.jsonl and the graph.",
)
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITIES),
    help="Exit 3 when an alert at or above this severity was raised.",
)
@click.option(
    "--consent-lateness",
    default="24h",
    show_default=True,
    envvar="LINEAGE_CONSENT_LATENESS",
    help="How long a late consent may still retract alerts (90m, 24h, 2d).",
)
@click.option(
    "--routes",
    "routes_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="LINEAGE_ROUTES",
    show_envvar=True,
    help="Alert routing (YAML): forward alerts and incidents to webhooks, Slack, Teams, "
    "e-mail and syslog (CEF).",
)
@click.option(
    "--routes-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    envvar="LINEAGE_ROUTES_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait at the end for notifications still going out.",
)
def run(
    policy_path: Path | None,
    source: IO[bytes],
    out: Path,
    fail_on: str | None,
    consent_lateness: str,
    routes_path: Path | None,
    routes_timeout: float,
) -> None:
    """Judge a file of events with no broker and write alerts and the lineage graph."""
    # apprise and urllib3 log URLs with their tokens at DEBUG (lineage/logguard.py).
    install_log_guard()
    policy = policy_or_exit(policy_path)
    routes = _routes_or_exit(routes_path) if routes_path is not None else None
    name = getattr(source, "name", "-")
    name = "-" if name == "<stdin>" else str(name)
    size: int | None = None
    if name != "-":
        try:
            size = Path(name).stat().st_size
        except OSError:
            size = None
    try:
        lateness = parse_duration(consent_lateness)
    except ValueError as exc:
        _fail(f"--consent-lateness: {exc}", 2)
    router = None
    if routes is not None:
        from lineage.notify import Router

        router = Router(routes)
        router.start()
    try:
        summary = _run_source(
            policy, source, name, out, size, lateness, router.submit if router else None
        )
    except LineageError as exc:
        _fail(str(exc), 1)
    finally:
        # Notifications already queued go out (or are counted) even when the run stopped.
        delivered = router.close(routes_timeout) if router is not None else None
    _print_summary(summary, out)
    if delivered is not None:
        from lineage.notify import summary_line

        click.echo(summary_line(delivered))
    worst = summary.worst()
    if fail_on is not None and worst is not None and worst.rank >= Severity(fail_on).rank:
        sys.exit(3)


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("lineage-demo"),
    show_default=True,
    help="Folder for the demo's alerts and graph exports.",
)
@click.option("--events", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the synthetic fleet.")
@click.option(
    "--day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The day the fleet's traffic happens on (default 2026-11-20).",
)
@click.option(
    "--broker",
    envvar="LINEAGE_BROKER",
    show_envvar=True,
    default=None,
    help="Send the fleet's events to Kafka through the Emitter instead of judging them here.",
)
@click.option(
    "--topic-prefix", envvar="LINEAGE_TOPIC_PREFIX", default="lineage.", show_default=True
)
def demo(
    out: Path, events: int, seed: int, day: Any, broker: str | None, topic_prefix: str
) -> None:
    """Run the product on a synthetic fleet's day of traffic (embedded, no broker)."""
    from lineage.demo import DEFAULT_DAY, generate_day

    the_day: date = day.date() if day is not None else DEFAULT_DAY
    lines = generate_day(day=the_day, events=events, seed=seed)
    if broker:
        from lineage.emitter import emit_lines

        try:
            sent = emit_lines(lines, broker=broker, topic_prefix=topic_prefix)
        except LineageError as exc:
            _fail(str(exc), 1)
        click.echo(f"sent {sent} demo messages to {topic_prefix}events on {broker}")
        return
    policy_ = load_policy()
    click.echo(
        f"demo: a day ({the_day}) of the fleet's traffic, {events} events, "
        f"judged against {policy_.policy.name} ({policy_.version})"
    )
    try:
        summary = run_embedded(
            policy_, lines, out, source_name=f"demo-{the_day}", redactor=_redactor()
        )
    except LineageError as exc:
        _fail(str(exc), 1)
    _print_summary(summary, out)
    click.echo(f"open {out / 'lineage.html'} in a browser to see the lineage graph")


def _from(broker: str | None, from_dir: Path | None) -> str | None:
    """The broker to read from, or None to read ``from_dir``: one of the two, and a
    --from-dir given wins over a broker that only the environment names."""
    source = click.get_current_context().get_parameter_source("broker")
    if from_dir is not None and source is ParameterSource.ENVIRONMENT:
        broker = None
    if (broker is None) == (from_dir is None):
        _fail("say where from: --from-dir DIR (a run's --out folder) or --broker HOST:PORT", 2)
    return broker


def _kafka_settings(broker: str, topic_prefix: str | None, app_id: str | None) -> Any:
    from lineage.cli.kafka import need_worker, settings_or_exit

    need_worker("reading Kafka")
    return settings_or_exit(broker=broker, topic_prefix=topic_prefix, app_id=app_id)


_day = click.DateTime(formats=["%Y-%m-%d"])
_broker_option = click.option(
    "--broker", envvar="LINEAGE_BROKER", show_envvar=True, help="Read from Kafka (HOST:PORT)."
)
_prefix_option = click.option(
    "--topic-prefix", envvar="LINEAGE_TOPIC_PREFIX", help="Prefix of the topics [lineage.]"
)
_app_option = click.option("--app-id", envvar="LINEAGE_APP_ID", help="The workers' app id.")


@main.command()
@policy_option
@_broker_option
@click.option(
    "--from-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Read a run's --out folder.",
)
@click.option("--since", type=_day, help="First day (the policy's calendar), included.")
@click.option("--until", type=_day, help="Last day (the policy's calendar), included.")
@click.option("--recipient", help="Only records of this recipient id.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default="-", show_default=True
)
@_prefix_option
@_app_option
def records(
    policy_path: Path | None,
    broker: str | None,
    from_dir: Path | None,
    since: Any,
    until: Any,
    recipient: str | None,
    fmt: str,
    out: Path,
    topic_prefix: str | None,
    app_id: str | None,
) -> None:
    """Records of provision to third parties (APPI Art. 29), as CSV or JSONL.

    A record that cannot be read stops the command with one line naming its file and
    line (or topic, partition and offset) and what is wrong, never its contents.
    """
    from lineage import records as rec

    broker = _from(broker, from_dir)
    policy_ = policy_or_exit(policy_path)
    try:
        if from_dir is not None:
            found: list[dict[str, Any]] = list(rec.read_jsonl(from_dir / rec.RECORDS_FILE))
        else:
            import asyncio

            from streams.changelog import read_records
            from streams.preflight import check_connection

            settings = _kafka_settings(str(broker), topic_prefix, app_id)
            check_connection(settings)
            found = asyncio.run(read_records(settings))
    except LineageError as exc:
        _fail(str(exc), 1)
    chosen = rec.select(
        found,
        policy_,
        since=since.date() if since else None,
        until=until.date() if until else None,
        recipient=recipient,
    )
    try:
        if fmt == "csv":
            if str(out) == "-":
                n = rec.write_csv(chosen, sys.stdout)
            else:
                with out.open("w", encoding="utf-8-sig", newline="") as handle:
                    n = rec.write_csv(chosen, handle)
        elif str(out) == "-":
            n = rec.write_jsonl(chosen, sys.stdout.buffer)
        else:
            with out.open("wb") as handle:
                n = rec.write_jsonl(chosen, handle)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or type(exc).__name__}", 1)
    if str(out) != "-":
        click.echo(f"wrote {n} provision records as {fmt} to {out}", err=True)


@main.command()
@click.argument("subject_ref", metavar="SUBJECT")
@policy_option
@_broker_option
@click.option(
    "--from-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Read a run's --out folder.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "html"]), default="json", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default="-", show_default=True
)
@_prefix_option
@_app_option
def subject(
    subject_ref: str,
    policy_path: Path | None,
    broker: str | None,
    from_dir: Path | None,
    fmt: str,
    out: Path,
    topic_prefix: str | None,
    app_id: str | None,
) -> None:
    """Who received a data subject's personal data (policy Art. 11): JSON or a printable page.

    A subject written as raw personal data (an e-mail, say) was kept under its redaction
    token; give it as written, with the same LINEAGE_REDACTION_KEY, and it is found. The
    policy names the categories on the page (and, with --broker, gives the version).
    """
    from lineage.subjects import SUBJECTS_FILE, SubjectStore, answer, render_html

    broker = _from(broker, from_dir)
    spellings = [subject_ref]
    masked = _redactor().mask(subject_ref)
    if masked != subject_ref:
        spellings.append(masked)
    try:
        if from_dir is not None:
            found, state, version = SubjectStore(from_dir / SUBJECTS_FILE).get(spellings)
        else:
            import asyncio

            from streams.changelog import read_subject
            from streams.preflight import check_connection

            settings = _kafka_settings(str(broker), topic_prefix, app_id)
            check_connection(settings)
            found, state = asyncio.run(read_subject(settings, spellings))
            version = policy_or_exit(policy_path or settings.policy).version
    except LineageError as exc:
        _fail(str(exc), 1)
    data = answer(found, state, version)
    labels = {cid: c.label for cid, c in policy_or_exit(policy_path).categories.items()}
    text = (
        render_html(data, labels)
        if fmt == "html"
        else orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    if str(out) == "-":
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote the lineage of {found} as {fmt} to {out}", err=True)
