"""One frozen settings model for the worker and the Kafka commands (``LINEAGE_*`` variables).

Every field is also an environment variable: ``broker`` is ``LINEAGE_BROKER``,
``topic_prefix`` is ``LINEAGE_TOPIC_PREFIX`` and so on. Secrets are ``SecretStr``
and print as ``**********``.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lineage.cores import cores
from lineage.durations import parse_duration

__all__ = ["Settings", "is_loopback", "process_port"]

#: Settings that are secrets, each also readable from ``<name>_file``.
_SECRETS = ("web_token", "sasl_password", "redaction_key")


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def process_port(web_port: int, index: int) -> int:
    """The web port of process ``index`` of a worker of several processes, whose own
    port is ``web_port`` (0: no web pages, none either). The one statement of that
    layout: the worker, its settings' check, the tests and the benchmarks read it."""
    return web_port + 1 + index if web_port else 0


class Settings(BaseSettings):
    """Where the broker is, what the topics are called, and how the worker keeps state."""

    model_config = SettingsConfigDict(env_prefix="LINEAGE_", frozen=True, extra="forbid")

    broker: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]"
    )
    topic_prefix: str = Field(default="lineage.", description="prefix of every topic")
    policy: Path | None = Field(default=None, description="policy file; default: the seed")
    app_id: str = Field(
        default="privacy-lineage", description="consumer group and changelog topic prefix"
    )
    state_dir: Path = Field(default=Path("lineage-state"), description="local table state")
    store: Literal["memory://", "rocksdb://"] = Field(
        default="memory://",
        description="table store: memory:// (rebuilt from the changelogs at each start) or "
        "rocksdb:// (on disk in the state folder)",
    )
    rocksdb_memory: int = Field(
        default=256 * 1024 * 1024,
        ge=16 * 1024 * 1024,
        description="bytes RocksDB may hold in memory (block cache and write buffers), "
        "shared by all of a worker's databases (rocksdb:// only)",
    )
    partitions: int = Field(default=4, ge=1, description="partitions of the topics it creates")
    replication_factor: int = Field(default=1, ge=1, description="of the topics it creates")
    web_host: str = Field(
        default="127.0.0.1",
        description="address of the web server (graph, subjects, health, metrics); any but "
        "loopback needs a web token",
    )
    web_port: int = Field(default=6066, ge=0, le=65535, description="0 turns the web server off")
    processes: int | Literal["auto"] = Field(
        default=1,
        description="processes that judge, the partitions split between them (auto: one a "
        "core this worker may use, within its CPU quota); with more than one, the worker "
        "serves web_port and process i web_port + 1 + i",
    )
    batch_size: int = Field(default=2000, ge=1, description="most events judged per batch")
    fetch_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="most bytes fetched per partition at once"
    )
    fetch_wait_ms: int = Field(
        default=100,
        ge=0,
        description="longest the broker holds a fetch of quiet partitions (faust: 1500)",
    )
    flush_events: int = Field(
        default=10_000,
        ge=1,
        description="judged events between the starts of flushes (state, offsets), under load",
    )
    flush_linger_ms: int = Field(
        default=100,
        ge=0,
        description="how long judged events may wait for more before state and offsets are "
        "written, in milliseconds (alerts never wait)",
    )
    dedup_window: int = Field(
        default=500_000,
        ge=1,
        description="event ids kept per partition to drop a producer's duplicates, in offsets",
    )
    cached_subjects: int = Field(
        default=200_000,
        ge=1,
        description="subjects' consent records a worker keeps decoded in memory per partition",
    )
    commit_interval: float = Field(default=2.8, gt=0, description="seconds between offset commits")
    session_timeout: float = Field(
        default=30.0, gt=0, description="seconds before a silent worker's partitions move"
    )
    recovery_stall_seconds: float = Field(
        default=20.0,
        gt=0,
        description="seconds without changelog records before recovery reads a partition again",
    )
    consent_lateness: timedelta = Field(
        default=timedelta(hours=24),
        description="how long a consent that arrives late may still retract alerts "
        "(seconds, or 90m, 24h, 2d)",
    )
    incident_flush_seconds: float = Field(
        default=30.0, gt=0, description="how often changed incidents are republished"
    )
    output_timeout: float = Field(
        default=300.0,
        gt=0,
        description="seconds Kafka may take to acknowledge an output before its events are "
        "judged again",
    )
    output_linger_ms: int = Field(
        default=5, ge=0, description="how long outputs wait to fill a batch, in milliseconds"
    )
    max_output_bytes: int = Field(
        default=1_000_000,
        ge=64 * 1024,
        description="largest message the worker sends (keep it under the broker's "
        "message.max.bytes)",
    )
    web_token: SecretStr | None = Field(
        default=None,
        description="bearer token that every route but /health and /metrics requires (or "
        "web_token_file)",
    )
    web_token_file: Path | None = Field(default=None, description="file holding the web token")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how to reach the brokers"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism"
    )
    sasl_username: str | None = Field(default=None, description="SASL user")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (or sasl_password_file; never on the command line)"
    )
    sasl_password_file: Path | None = Field(
        default=None, description="file holding the SASL password"
    )
    ssl_cafile: Path | None = Field(
        default=None, description="CA certificates to trust (PEM); default: the system's"
    )
    ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM)")
    ssl_keyfile: Path | None = Field(default=None, description="client certificate's key (PEM)")
    redaction_key: SecretStr | None = Field(
        default=None,
        description="key of the tokens that replace raw personal data; share it across workers "
        "(or redaction_key_file)",
    )
    redaction_key_file: Path | None = Field(
        default=None, description="file holding the redaction key"
    )
    routes: Path | None = Field(
        default=None,
        description="alert routing: a routes file (YAML) forwarding alerts and incidents to "
        "webhooks, Slack, Teams, e-mail and syslog; default none",
    )

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """A secret may come from a file (``<name>_file``): read it, never echo it."""
        if not isinstance(data, dict):
            return data
        for name in _SECRETS:
            path = data.get(f"{name}_file")
            if path and not data.get(name):
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    why = getattr(exc, "strerror", None) or type(exc).__name__
                    raise ValueError(f"{name}_file: cannot read {path}: {why}") from None
        return data

    @field_validator(
        "policy",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "web_token_file",
        "sasl_password_file",
        "redaction_key_file",
        "routes",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_files_load(self) -> Settings:
        """The TLS files must load now: a bad path or PEM is a setting error, said once."""
        if self.security_protocol in ("SSL", "SASL_SSL"):
            try:
                self.ssl_context()
            except (OSError, ssl.SSLError) as exc:
                files = ", ".join(
                    str(f) for f in (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile) if f
                )
                why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise ValueError(f"TLS files ({files or 'none'}) do not load: {why}") from None
        return self

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        text = str(value).strip()
        if text == "auto":
            return text
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"processes is a number, 1 or more, or auto; got {value!r}")
        return int(text)

    @model_validator(mode="after")
    def _ports_for_processes(self) -> Settings:
        count = self.process_count
        last = process_port(self.web_port, count - 1) if count > 1 else self.web_port
        if self.web_port and last > 65535:
            raise ValueError(
                f"web_port {self.web_port} leaves no port for process {count - 1} "
                f"of {count} (web_port + 1 + i, at most 65535)"
            )
        return self

    @property
    def process_count(self) -> int:
        """How many processes judge: ``processes``, or the cores this one may use
        (:func:`lineage.cores.cores`: its affinity, within its CPU quota)."""
        return cores() if self.processes == "auto" else self.processes

    @field_validator("consent_lateness", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("broker")
    @classmethod
    def _hosts(cls, value: str) -> str:
        for host in value.split(","):
            name, _, port = host.strip().removeprefix("kafka://").rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"broker {host!r} is not HOST:PORT")
        return value

    def topic(self, name: str) -> str:
        """The full name of one of the contract's topics, e.g. ``topic('events')``."""
        return f"{self.topic_prefix}{name}"

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers without any ``kafka://`` scheme."""
        return ",".join(h.strip().removeprefix("kafka://") for h in self.broker.split(","))

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context
