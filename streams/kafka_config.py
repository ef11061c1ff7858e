"""One connection config, rendered for each client the worker and its commands use.

:class:`KafkaConfig` reads the one :class:`~streams.settings.Settings` model and
says it in each client's words: faust's ``App`` keyword arguments, aiokafka's
producer, consumer and admin client, and kafka-python's (the Emitter, topic
creation). Every security setting lives here once, so TLS and SASL mean the same
thing for every connection a deployment opens.
"""

from __future__ import annotations

import socket
from typing import Any

import faust

from lineage.backoff import RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MS
from streams.settings import Settings

__all__ = ["KafkaConfig"]

#: Each RocksDB database's write buffer (at most two: one filling, one being written).
_ROCKSDB_WRITE_BUFFER = 8 * 1024 * 1024


class KafkaConfig:
    """The settings of every Kafka client, built from one :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- faust ---------------------------------------------------------------------------------

    def faust_app(self) -> dict[str, Any]:
        """Keyword arguments of the worker's ``faust.App``."""
        s = self.settings
        return {
            "broker": [f"kafka://{host}" for host in s.bootstrap.split(",")],
            "store": s.store,
            "datadir": str(s.state_dir),
            "topic_partitions": s.partitions,
            "topic_replication_factor": s.replication_factor,
            "table_standby_replicas": 0,
            "consumer_auto_offset_reset": "earliest",
            "producer_acks": -1,
            "producer_max_request_size": s.max_output_bytes,
            "producer_request_timeout": s.output_timeout,
            "web_enabled": s.web_port > 0,
            "web_port": s.web_port or 6066,
            "web_bind": s.web_host,
            # How other workers reach this one (to forward /subjects requests).
            "web_host": s.web_host if s.web_host not in ("0.0.0.0", "::") else socket.getfqdn(),
            # The web server has a thread and a loop of its own: probes and scrapes are
            # answered while the worker's loop judges a batch (streams/web.py).
            "web_in_thread": True,
            # faust's own pages (/table/ serves table values, /router/ the cluster, / and
            # /graph/ statistics) are off: the worker serves only its own routes.
            "web_tables_enabled": False,
            "web_router_enabled": False,
            "web_stats_enabled": False,
            "web_graph_enabled": False,
            "web_metrics_enabled": False,
            "stream_wait_empty": False,
            # Two batches a fetch: under load the second waits in the intake while the
            # first is judged, and the decoding process has it decoded by its turn
            # (streams.ahead).
            "broker_max_poll_records": 2 * s.batch_size,
            "consumer_max_fetch_size": s.fetch_bytes,
            "broker_commit_interval": s.commit_interval,
            "broker_session_timeout": s.session_timeout,
            "broker_heartbeat_interval": min(3.0, s.session_timeout / 3),
            **self._faust_credentials(),
        }

    def table_options(self) -> dict[str, Any] | None:
        """Options of each table's store (a new dict per table: faust's RocksDB store
        takes its keys out of the dict it is given).

        ``driver``: faust's ``rocksdb://`` store runs on python-rocksdb when that is
        installed, else on rocksdict; the worker's store needs rocksdict, named here.
        ``memory``: one budget for the block cache and write buffers of every RocksDB
        database of the worker (one per table and partition held); faust's defaults
        give each database a 2 GiB block cache and three 64 MiB write buffers of its
        own. ``write_buffer_size``: each database's write buffer (two at most).
        """
        if self.settings.store != "rocksdb://":
            return None
        return {
            "driver": "rocksdict",
            "memory": self.settings.rocksdb_memory,
            "write_buffer_size": _ROCKSDB_WRITE_BUFFER,
            "max_write_buffer_number": 2,
        }

    def _faust_credentials(self) -> dict[str, Any]:
        s = self.settings
        if s.security_protocol == "PLAINTEXT":
            return {}
        context = s.ssl_context()
        if s.security_protocol == "SSL":
            return {"broker_credentials": context}
        return {
            "broker_credentials": faust.SASLCredentials(
                username=s.sasl_username or "",
                password=s.sasl_password.get_secret_value() if s.sasl_password else "",
                ssl_context=context,
                mechanism=s.sasl_mechanism,
            )
        }

    # -- aiokafka ------------------------------------------------------------------------------

    def aiokafka(self) -> dict[str, Any]:
        """Connection and security arguments shared by every aiokafka client."""
        s = self.settings
        config: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap,
            "security_protocol": s.security_protocol,
        }
        if s.security_protocol.startswith("SASL"):
            config["sasl_mechanism"] = s.sasl_mechanism
            config["sasl_plain_username"] = s.sasl_username
            config["sasl_plain_password"] = (
                s.sasl_password.get_secret_value() if s.sasl_password else None
            )
        context = s.ssl_context()
        if context is not None:
            config["ssl_context"] = context
        return config

    def aiokafka_producer(self) -> dict[str, Any]:
        """The worker's output producer: idempotent, every replica acknowledges.

        ``request_timeout_ms`` is how long a batch may wait for the broker before the
        worker gives up on it and reads its events again (a broker outage shorter than
        that costs nothing but the wait).
        """
        s = self.settings
        return {
            **self.aiokafka(),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": s.output_linger_ms,
            "max_batch_size": min(s.max_output_bytes, 1024 * 1024),
            "max_request_size": s.max_output_bytes,
            "request_timeout_ms": int(s.output_timeout * 1000),
        }

    # -- kafka-python ----------------------------------------------------------------------------

    def kafka_python(self) -> dict[str, Any]:
        """Connection and security arguments in kafka-python's words (Emitter, admin)."""
        s = self.settings
        config: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap,
            "security_protocol": s.security_protocol,
            # Between attempts to reach a broker: capped, jittered, exponential (the
            # aiokafka clients get the same from streams.faust_internals.reconnect_backoff).
            "reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        }
        if s.security_protocol.startswith("SASL"):
            config.update(
                sasl_mechanism=s.sasl_mechanism,
                sasl_plain_username=s.sasl_username,
                sasl_plain_password=s.sasl_password.get_secret_value() if s.sasl_password else None,
            )
        if s.security_protocol in ("SSL", "SASL_SSL"):
            config.update(
                ssl_cafile=str(s.ssl_cafile) if s.ssl_cafile else None,
                ssl_certfile=str(s.ssl_certfile) if s.ssl_certfile else None,
                ssl_keyfile=str(s.ssl_keyfile) if s.ssl_keyfile else None,
            )
        return config
