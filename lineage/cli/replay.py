"""``lineage replay``: a policy what-if on kept events, from a file or from Kafka.

Both policies are loaded (and refused, exit 2, as ``lineage policy check`` refuses
them) before any event is read. From Kafka the stream processors' reader
(:mod:`streams.replay_source`) is imported only then, as the other Kafka commands do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, NamedTuple, NoReturn

import click

from lineage.cli.options import policy_or_exit, redactor_or_exit
from lineage.decode_process import DecodeAhead
from lineage.durations import parse_duration, parse_instant
from lineage.errors import LineageError
from lineage.lines import read_lines
from lineage.policy import DEFAULT_POLICY, Policy
from lineage.replay import Message, ReplayReport, decoded_ahead, file_messages, replay
from lineage.schemas import Severity

__all__ = ["replay_command"]

SEVERITIES = [s.value for s in Severity]
_PROGRESS_MIN_BYTES = 4 * 1024 * 1024


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"lineage: error: {message}", err=True)
    sys.exit(code)


def _instant(option: str, text: str | None, zone: Any) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text, now=datetime.now(UTC), zone=zone)
    except ValueError as exc:
        _fail(f"{option}: {exc}", 2)


def _with_progress(
    messages: Iterable[Message], length: int, label: str, update: str
) -> Iterator[Message]:
    """The messages, with a progress bar on standard error when it is a terminal."""
    if length <= 0 or not sys.stderr.isatty():
        yield from messages
        return
    with click.progressbar(
        length=length,
        label=label,
        file=sys.stderr,
        show_pos=update == "messages",
        update_min_steps=max(length // 500, 1),
    ) as bar:
        for message in messages:
            if update == "messages":
                bar.update(1)
            else:
                bar.update(len(message.raw) + 1)
            yield message


def _summary(report: ReplayReport, out: Path) -> None:
    s = report.summary
    base, cand = s["baseline"], s["candidate"]
    scope = (
        f", {s['reported']} reported on (at or after {s['report_since']})"
        if s["report_since"]
        else ""
    )
    click.echo(
        f"{s['messages']} messages: {s['events']} events judged under both policies{scope}; "
        f"{s['duplicates']} duplicates, {s['dead_letters']} dead letters"
    )
    changes = s["policy_changes"]
    click.echo(
        f"policy {base['policy_version']} -> {cand['policy_version']}: "
        f"{len(changes)} changes (lineage policy diff shows them)"
    )
    for key, sign in (("added", "+"), ("removed", "-")):
        part = s[key]
        severities = ", ".join(f"{sev} {n}" for sev, n in part["by_severity"].items() if n)
        click.echo(
            f"alerts {key}: {sign}{part['alerts']}" + (f" ({severities})" if severities else "")
        )
    click.echo(
        f"alerts standing: {base['alerts']} under the baseline, {cand['alerts']} under the "
        f"candidate; flows that change: {s['flows_changed']}"
    )
    rec = s["records_changed"]
    click.echo(
        f"provision records: +{rec['added']} -{rec['removed']}, "
        f"{rec['lawful-changed']} judged lawful under one policy only"
    )
    click.echo(
        f"outputs in {out}/ (replay.html, replay.json, replay-alerts.jsonl, "
        "replay-records.jsonl, replay-flows.jsonl, dead-letter.jsonl)"
    )


@click.command("replay")
@click.option(
    "--policy",
    "candidate_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The candidate: the revised policy file to try.",
)
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="LINEAGE_POLICY",
    show_envvar=True,
    help="The policy to compare against. Default: the shipped seed policy.",
)
@click.option(
    "--source",
    type=click.File("rb"),
    help="Kept events, one JSON object per line; '-' reads standard input.",
)
@click.option("--broker", help="Read the events topic of Kafka (HOST:PORT) instead of a file.")
@click.option(
    "--since",
    help="With --broker: from the messages of this time (RFC 3339, a date, or back from "
    "now: 7d). Default: the earliest retained.",
)
@click.option(
    "--until",
    help="With --broker: up to this time. Default: the end of the topic when the read starts.",
)
@click.option(
    "--topic-prefix",
    envvar="LINEAGE_TOPIC_PREFIX",
    show_envvar=True,
    help="With --broker: prefix of the topics  [default: lineage.]",
)
@click.option(
    "--report-since",
    help="Report only on events that occurred at or after this time (RFC 3339, a date, or "
    "back from now: 7d); earlier ones still build consent state. Default: all.",
)
@click.option(
    "--consent-lateness",
    default="24h",
    show_default=True,
    envvar="LINEAGE_CONSENT_LATENESS",
    show_envvar=True,
    help="How long a late consent may still retract alerts (90m, 24h, 2d).",
)
@click.option(
    "--fail-on-new",
    type=click.Choice(SEVERITIES),
    help="Exit 3 when the candidate raises an alert at or above this severity that the "
    "baseline does not.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for replay.html, replay.json, replay-*.jsonl and dead-letter.jsonl.",
)
def replay_command(
    candidate_path: Path,
    baseline_path: Path | None,
    source: IO[bytes] | None,
    broker: str | None,
    since: str | None,
    until: str | None,
    topic_prefix: str | None,
    report_since: str | None,
    consent_lateness: str,
    fail_on_new: str | None,
    out: Path,
) -> None:
    """Policy what-if: judge kept events under a revised policy (--policy) and the current
    one (--baseline), each as `lineage run` would, and write what differs: alerts added and
    removed, provision records, flows, and the policy changes, as files and replay.html."""
    if (source is None) == (broker is None):
        _fail("say where the events are: --source FILE (or '-') or --broker HOST:PORT", 2)
    if source is not None and (since is not None or until is not None):
        _fail("--since and --until select Kafka messages: use them with --broker", 2)
    baseline = policy_or_exit(baseline_path)
    candidate = policy_or_exit(candidate_path)
    try:
        lateness: timedelta = parse_duration(consent_lateness)
    except ValueError as exc:
        _fail(f"--consent-lateness: {exc}", 2)
    reported_from = _instant("--report-since", report_since, candidate.zone)
    names = (str(baseline_path or DEFAULT_POLICY), str(candidate_path))
    job = _Job(baseline, candidate, out, lateness, reported_from, names)
    if source is not None:
        report = _from_file(job, source)
    else:
        report = _from_kafka(
            job,
            str(broker),
            topic_prefix,
            _instant("--since", since, candidate.zone),
            _instant("--until", until, candidate.zone),
        )
    _summary(report, out)
    if fail_on_new is not None:
        new = report.new_at_or_above(Severity(fail_on_new))
        if new:
            click.echo(
                f"lineage: {new} new alerts at or above {fail_on_new} under "
                f"{candidate_path} (--fail-on-new {fail_on_new})",
                err=True,
            )
            sys.exit(3)


class _Job(NamedTuple):
    """What a replay judges with and where it writes, wherever its events come from."""

    baseline: Policy
    candidate: Policy
    out: Path
    lateness: timedelta
    reported_from: datetime | None
    names: tuple[str, str]

    def run(self, messages: Iterable[Message], source: str) -> ReplayReport:
        try:
            return replay(
                self.baseline,
                self.candidate,
                messages,
                self.out,
                redactor=redactor_or_exit(),
                consent_lateness=self.lateness,
                report_since=self.reported_from,
                names=self.names,
                source=source,
            )
        except LineageError as exc:
            _fail(str(exc), 1)


def _from_file(job: _Job, source: IO[bytes]) -> ReplayReport:
    name = getattr(source, "name", "-")
    name = "-" if name == "<stdin>" else str(name)
    size = 0
    if name != "-":
        try:
            size = os.stat(name).st_size
        except OSError:
            size = 0
    # A large regular file is decoded ahead by a process of its own, as `lineage run`
    # decodes it: the replay then judges on both sides while the next lines are decoded.
    ahead = DecodeAhead.start(source, None)
    try:
        messages = file_messages(read_lines(source), name, ahead)
        if size >= _PROGRESS_MIN_BYTES:
            messages = _with_progress(messages, size, "judging events", "bytes")
        return job.run(messages, name)
    finally:
        if ahead is not None:
            ahead.close()


def _from_kafka(
    job: _Job,
    broker: str,
    topic_prefix: str | None,
    since: datetime | None,
    until: datetime | None,
) -> ReplayReport:
    from lineage.cli.kafka import need_worker, settings_or_exit

    need_worker("lineage replay --broker")
    settings = settings_or_exit(broker=broker, topic_prefix=topic_prefix)
    from streams.preflight import check_connection
    from streams.replay_source import EventsRange

    try:
        check_connection(settings)
        with EventsRange(settings, since=since, until=until) as events:
            # Each fetch is decoded ahead while the one before is judged.
            messages = _with_progress(
                decoded_ahead(events.batches()), events.total, "reading events", "messages"
            )
            return job.run(messages, f"{events.topic} on {settings.bootstrap}")
    except LineageError as exc:
        _fail(str(exc), 1)
