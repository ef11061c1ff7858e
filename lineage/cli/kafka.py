"""``lineage worker`` and ``lineage export``: the Kafka side of the command line.

Each option is also a ``LINEAGE_*`` environment variable (shown in ``--help``);
options given on the command line win. :mod:`streams` (faust, aiokafka) is
imported only when a command runs: the base package has neither, and says what to
install (``privacy-lineage[worker]``) rather than failing on an import.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from lineage.cli.options import policy_option, policy_or_exit
from lineage.compiled import how as how_judging
from lineage.errors import LineageError
from lineage.export import FORMATS
from lineage.logguard import install_log_guard, protect

__all__ = ["export", "need_worker", "settings_or_exit", "worker"]

#: The modules the ``worker`` extra brings, by the name they are imported under.
WORKER_MODULES = ("faust", "aiokafka", "pydantic_settings", "prometheus_client")


def _installed(module: str) -> bool:
    if module in sys.modules:  # faust replaces its module object, which then has no spec
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def need_worker(doing: str) -> None:
    """Exit 2 with what to install when the ``worker`` extra is missing."""
    missing = [name for name in WORKER_MODULES if not _installed(name)]
    if missing:
        click.echo(
            f"lineage: error: {doing} needs the stream processors, which are not installed "
            f"(missing: {', '.join(missing)}): pip install 'privacy-lineage[worker]'",
            err=True,
        )
        sys.exit(2)


def settings_or_exit(**options: Any) -> Any:
    from pydantic import ValidationError

    from streams.settings import Settings

    given = {k: v for k, v in options.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        where = f"setting {field}: " if field else ""
        click.echo(f"lineage: error: {where}{message}", err=True)
        sys.exit(2)
    # Masked in every log line of the process from now on (lineage/logguard.py).
    for secret in (settings.sasl_password, settings.web_token, settings.redaction_key):
        if secret is not None:
            protect(secret.get_secret_value())
    return settings


_broker = click.option(
    "--broker", envvar="LINEAGE_BROKER", show_envvar=True, help="Kafka bootstrap HOST:PORT."
)
_prefix = click.option(
    "--topic-prefix",
    envvar="LINEAGE_TOPIC_PREFIX",
    show_envvar=True,
    help="Prefix of the topics  [default: lineage.]",
)
_app_id = click.option(
    "--app-id", envvar="LINEAGE_APP_ID", show_envvar=True, help="Consumer group and state id."
)


def _environment_only(shown: set[str]) -> str:
    """The help's list of the settings that are environment variables only."""
    if not _installed("pydantic_settings"):
        return "Needs the stream processors: pip install 'privacy-lineage[worker]'."
    from streams.settings import Settings

    lines = ["\b", "More settings, as environment variables only:"]
    for name, field in Settings.model_fields.items():
        if name in shown:
            continue
        default = field.default if field.default is not None else "unset"
        about = f"{field.description}; " if field.description else ""
        lines.append(f"  LINEAGE_{name.upper()}: {about}default {default}")
    return "\n".join(lines)


class _WorkerCommand(click.Command):
    """``lineage worker``, whose help lists the settings that are environment variables only
    (read from the settings model when the help is shown, not when the CLI loads)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The settings given as options are the command's own parameters (--policy is policy).
        shown = {"policy" if p.name == "policy_path" else str(p.name) for p in self.params}
        self.epilog = _environment_only(shown)
        super().format_epilog(ctx, formatter)


@click.command(cls=_WorkerCommand)
@_broker
@policy_option
@_prefix
@_app_id
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LINEAGE_STATE_DIR",
    show_envvar=True,
    help="Local table state.",
)
@click.option(
    "--store",
    type=click.Choice(["memory://", "rocksdb://"]),
    envvar="LINEAGE_STORE",
    show_envvar=True,
    help="Table store: memory:// (rebuilt from the changelogs at each start) or rocksdb:// "
    "(on disk in the state folder)  [default: memory://]",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    envvar="LINEAGE_PARTITIONS",
    show_envvar=True,
    help="Partitions of the topics the worker creates.",
)
@click.option(
    "--web-host",
    envvar="LINEAGE_WEB_HOST",
    show_envvar=True,
    help="Address of /graph, /subjects, /health, /metrics [default: 127.0.0.1]; any other "
    "needs LINEAGE_WEB_TOKEN or LINEAGE_WEB_TOKEN_FILE.",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    envvar="LINEAGE_WEB_PORT",
    show_envvar=True,
    help="Port of /graph, /health, /metrics (0: off).",
)
@click.option(
    "--processes",
    envvar="LINEAGE_PROCESSES",
    show_envvar=True,
    metavar="N|auto",
    help="Processes that judge, the partitions split between them (auto: one a core); "
    "the worker serves its web port for all of them, process i the web port + 1 + i  "
    "[default: 1]",
)
@click.option("--supervised-by", type=int, hidden=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    envvar="LINEAGE_BATCH_SIZE",
    show_envvar=True,
    help="Events judged per batch.",
)
@click.option(
    "--security-protocol",
    envvar="LINEAGE_SECURITY_PROTOCOL",
    show_envvar=True,
    type=click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
)
@click.option(
    "--sasl-mechanism",
    envvar="LINEAGE_SASL_MECHANISM",
    show_envvar=True,
    type=click.Choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
)
@click.option("--sasl-username", envvar="LINEAGE_SASL_USERNAME", show_envvar=True)
@click.option(
    "--sasl-password-file",
    envvar="LINEAGE_SASL_PASSWORD_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the SASL password (or LINEAGE_SASL_PASSWORD; never on the command line).",
)
@click.option(
    "--ssl-cafile",
    envvar="LINEAGE_SSL_CAFILE",
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def worker(
    policy_path: Path | None, loglevel: str, supervised_by: int | None, **options: Any
) -> None:
    """Run the stream processors on Kafka: judge lineage.events, raise alerts and incidents."""
    need_worker("lineage worker")
    settings = settings_or_exit(policy=policy_path, **options)
    from streams.settings import is_loopback

    if settings.web_port and not is_loopback(settings.web_host) and settings.web_token is None:
        click.echo(
            f"lineage: error: the web server would answer beyond this machine "
            f"(LINEAGE_WEB_HOST={settings.web_host}) and /graph shows every flow of personal "
            "data: set LINEAGE_WEB_TOKEN or LINEAGE_WEB_TOKEN_FILE (a bearer token), or "
            "bind 127.0.0.1",
            err=True,
        )
        sys.exit(2)
    policy = policy_or_exit(settings.policy)
    if settings.routes is not None:
        # Said once, with file, line and key, before the worker starts; other commands
        # that read the same settings (export, records) do not need the routes.
        from lineage.notify import RoutesError, load_routes

        try:
            load_routes(settings.routes)
        except RoutesError as exc:
            for problem in exc.problems:
                click.echo(f"lineage: routes error: {problem}", err=True)
            sys.exit(2)
    if supervised_by is None and settings.process_count > 1:
        _run_processes(settings, policy, {"policy": policy_path, **options}, loglevel)
    from streams.app import LineageWorker
    from streams.preflight import check_connection, check_web_port

    try:
        check_web_port(settings)  # a busy port said now, not after joining the group
        check_connection(settings)
        lineage_worker = LineageWorker(settings, policy)
        created = lineage_worker.ensure_topics()
    except LineageError as exc:
        click.echo(f"lineage: error: {exc}", err=True)
        sys.exit(1)
    if created:
        click.echo(f"created topics: {', '.join(created)}", err=True)
    click.echo(
        f"lineage worker: {settings.bootstrap}, topics {settings.topic_prefix}*, "
        f"policy {policy.policy.name} ({policy.version}), judging {how_judging()}",
        err=True,
    )
    from streams.runner import lineage_runner

    if supervised_by is not None:
        from streams.processes import watch_supervisor

        watch_supervisor(supervised_by)
    install_log_guard()  # again when faust has configured logging (lineage_runner)
    lineage_runner(lineage_worker.app, loglevel).execute_from_commandline()


def _run_processes(settings: Any, policy: Any, given: dict[str, Any], loglevel: str) -> NoReturn:
    """``lineage worker`` with more than one process (:mod:`streams.processes`): the
    ports, the broker and the topics checked once, then the processes run."""
    from streams.preflight import check_connection, check_web_port, hold_web_port
    from streams.processes import run_processes
    from streams.settings import process_port
    from streams.topics import ensure_topics

    count = settings.process_count
    try:
        for index in range(count if settings.web_port else 0):
            port = process_port(settings.web_port, index)
            check_web_port(settings.model_copy(update={"web_port": port}))
        web = hold_web_port(settings)  # the worker's own, served by this process
        check_connection(settings)
        retention = policy.policy.records_retention_days
        created = ensure_topics(settings, 30.0, records_retention_days=retention)
    except LineageError as exc:
        click.echo(f"lineage: error: {exc}", err=True)
        sys.exit(1)
    if created:
        click.echo(f"created topics: {', '.join(created)}", err=True)
    said = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"  # as faust says it
    logging.basicConfig(level=loglevel.upper(), format=said)
    install_log_guard()  # on the handler just made
    sys.exit(run_processes(settings, given, loglevel, web))


@click.command()
@_broker
@policy_option
@_prefix
@_app_id
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="json",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write; '-' writes to standard output.",
)
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the broker."
)
def export(policy_path: Path | None, fmt: str, out: Path, timeout: float, **options: Any) -> None:
    """Write the global lineage graph kept in Kafka (all partitions), with no worker running."""
    need_worker("lineage export")
    settings = settings_or_exit(policy=policy_path, **options)
    policy = policy_or_exit(settings.policy)
    from lineage.export import export_graph
    from lineage.graph import build_graph
    from streams.changelog import read_edges
    from streams.preflight import check_connection

    try:
        check_connection(settings, timeout)
        edges = asyncio.run(read_edges(settings, timeout=timeout))
    except LineageError as exc:
        click.echo(f"lineage: error: {exc}", err=True)
        sys.exit(1)
    text = export_graph(build_graph(policy, edges, generated_from="kafka"), fmt)
    if str(out) == "-":
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(edges)} edges as {fmt} to {out}", err=True)
