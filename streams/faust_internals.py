"""Every use of a private name of faust-streaming or aiokafka, in one room.

Mirrors **faust-streaming 0.15.3** and **aiokafka 0.14.0** (pinned in
``pyproject.toml``). ``tests/test_faust_internals.py`` pins each behaviour relied
on here, without a broker, so an upgrade that changes one fails there first. The
rest of :mod:`streams` uses the libraries' public API and the named helpers below.

What the worker needs that the libraries do not offer publicly, and why:

- **Whole fetches of our own topics** (:class:`LineageConsumer`): faust delivers
  each message through two tasks, an Event and an ack (see :mod:`streams.intake`).
  The consumer takes the records of ``lineage.events`` and
  ``lineage.incident-partials`` out of each fetch whole, tagged with the consumer
  generation, and leaves every other topic (the tables' changelogs) to faust.
- **Acks by offset** (:func:`ack_offsets`): the worker marks offsets done in faust's
  own bookkeeping once their outputs are delivered and their state written; faust
  commits them at its next commit, as it does for its own acks.
- **The read offsets** (``Consumer._read_offset``, ``_committed_offset``, ``_gap``):
  our consumer keeps faust's record of where each partition was read up to, counts
  offsets that hold no record as done, as faust's drain does, and delivers nothing
  while faust's ``perform_seek`` sets them all back to the commits (its partitions
  are sought one by one, and a record delivered in between left its read offset
  behind: the commit then crept one offset at a time, ``docs/upstream.md``, section 12).
- **The fetch wait** (:class:`LineageApp`): faust fixes aiokafka's
  ``fetch_max_wait_ms`` at 1500 ms. aiokafka keeps one fetch in flight per broker;
  while it holds only quiet partitions the broker keeps it that long, and the busy
  events partitions wait behind it.
- **A last flush on a graceful stop** (:class:`LineageApp`): the worker's final
  checkpoint runs before faust stops its consumer and commits.
- **A stop that ends** (:class:`LineageConsumer`, :class:`TrackingProducer`): faust's
  last commit and aiokafka's producer stop each wait for Kafka without a bound; here
  each is given a few seconds, then given up (``docs/upstream.md``, section 19).
- **Metadata for every topic a producer sends to** (:class:`TrackingProducer`): aiokafka
  asks for the metadata of a topic only if it was unknown at its first send, and once
  it tracks one topic it asks for those alone and forgets the rest; a batch queued for
  a forgotten topic then has no leader and waits, silently, until it expires
  (``docs/upstream.md``, section 10).
- **Where table recovery stands** (:func:`recovery_stalls`), read by the
  second-line :class:`RecoveryWatch`.
- **One door to the web server** (:func:`guard_web`, :func:`web_routes`): faust's
  aiohttp driver keeps the ``aiohttp.web.Application`` it serves in ``web_app``; a
  middleware there asks for the token on every route but the open ones, including
  any route faust itself registers.
- **A backoff between reconnects** (:func:`reconnect_backoff`): aiokafka tries to
  connect to a broker that is away whenever one of its routines asks, every 100 ms
  each; every client of the worker waits a capped, jittered, growing time instead.
- **The tables' changelogs written in batches** (:class:`ChangelogWriter`): a record
  goes into the table's store (``Table.data``) and its changelog record to the
  worker's batched sender, not through faust's per-record producer path; the store
  then learns the changelog offset it holds (``set_persisted_offset``). The worker
  acks an offset only once Kafka acknowledged those records: faust's flush before its
  commit gives up when no record left its buffer for 100 ms and misses the record its
  sender task holds (``docs/upstream.md``, section 8).
- **The runner** (:func:`quiet_runner`): faust's terminal spinner turns the root
  logger to DEBUG, mode's SIGUSR1 handler prints frame locals (which can hold
  the raw events the monitor watches), and its SIGUSR2 handler stops the event loop
  in pdb.
- **The RocksDB store** (:class:`PartitionStore`, built by :class:`LineageTable`
  for ``rocksdb://``): faust's store files a key under the partition of "the current
  event", which a task that writes state for several partitions at once does not
  have (its ``_set`` asserts one); it writes to disk before Kafka acknowledged the
  changelog record, so after a crash the disk can hold state the changelog never got
  (``docs/upstream.md``, section 13); it reads a table only whole, every
  partition's database in turn; and it gives each database a cache and write buffers
  of its own (:class:`SharedMemoryOptions`: one budget for all of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

import faust
import orjson
from aiokafka import AIOKafkaProducer
from faust import stores as faust_stores
from faust.exceptions import ImproperlyConfigured
from faust.stores import rocksdb as faust_rocksdb
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from lineage.backoff import RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MS
from streams.intake import Chunk, Intake
from streams.store import reader

try:
    import rocksdict  # the RocksDB store's driver (the worker extra installs it)
except ImportError:  # pragma: no cover
    rocksdict = None  # type: ignore[assignment]

__all__ = [
    "ChangelogWriter",
    "LineageApp",
    "LineageConsumer",
    "LineageTable",
    "PartitionStore",
    "RecoveryWatch",
    "SharedMemoryOptions",
    "TrackingProducer",
    "ack_offsets",
    "guard_web",
    "partition_offsets",
    "quiet_runner",
    "reconnect_backoff",
    "recovery_stalls",
    "web_routes",
]

log = logging.getLogger("lineage.worker")


# -- acks ------------------------------------------------------------------------------------


def ack_offsets(consumer: Any, tp: TP, offsets: Iterable[int]) -> int:
    """Mark offsets as done, as :meth:`faust.transport.consumer.Consumer.ack` does.

    faust commits the highest offset up to which every offset is acked (or a known
    gap), after flushing its producer. Offsets below the committed one, or acked
    before, are not counted again. Returns how many were new.
    """
    committed = consumer._committed_offset[tp]
    acked_index = consumer._acked_index[tp]
    acked = consumer._acked[tp]
    n = 0
    for offset in offsets:
        if (committed is None or offset >= committed) and offset not in acked_index:
            acked_index.add(offset)
            acked.append(offset)
            n += 1
    consumer._n_acked += n
    return n


def partition_offsets(consumer: Any, tp: TP) -> tuple[int | None, int | None]:
    """(end offset, committed offset) of an assigned partition, as the worker's consumer
    knows them: the high-water mark of its last fetch, and the offset faust committed
    (or read from Kafka at the assignment). None for what it does not know yet."""
    try:
        end = consumer.highwater(tp)
    except Exception:  # not fetched from yet: aiokafka asserts the partition's state
        end = None
    committed = consumer._committed_offset.get(tp)
    return end, committed


# -- reconnecting ------------------------------------------------------------------------------

#: The first wait after a failed connection to a broker, and the longest (seconds); each
#: failure in a row doubles the wait, and each wait is jittered by a fifth either way.
RECONNECT_BACKOFF = RECONNECT_BACKOFF_MS / 1000
RECONNECT_BACKOFF_MAX = RECONNECT_BACKOFF_MAX_MS / 1000


def reconnect_backoff(
    client: Any,
    base: float = RECONNECT_BACKOFF,
    cap: float = RECONNECT_BACKOFF_MAX,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Any:
    """Give an aiokafka client a capped, jittered exponential backoff between attempts to
    connect to each broker; returns the client.

    aiokafka 0.14 has none: ``AIOKafkaClient._get_conn`` tries to connect whenever it is
    asked, and with a broker away its callers (the fetcher, the group coordinator, the
    producer's sender, the metadata refresh that every failed attempt forces) ask every
    ``retry_backoff_ms`` (100 ms) each, for as long as the outage lasts. Here an attempt
    to a broker that failed last time first waits out that broker's backoff, so every
    caller slows down with it; a connection that succeeds resets it. Kafka's Java
    client does the same (``reconnect.backoff.ms``, ``reconnect.backoff.max.ms``), and
    kafka-python too.

    The callers of one node take turns (a lock per node), each waiting out the backoff
    its predecessor's failure set: callers that waited side by side for the same moment
    would otherwise each make an attempt when it came, a burst of one attempt per caller
    every backoff. While the node is up nobody waits: the lock is free and taken at once.
    """
    connect = client._get_conn
    failures: dict[Any, int] = {}
    retry_at: dict[Any, float] = {}
    turns: dict[Any, asyncio.Lock] = {}

    async def _get_conn(node_id: Any, **kwargs: Any) -> Any:
        turn = turns.get(node_id)
        if turn is None:
            turn = turns[node_id] = asyncio.Lock()
        async with turn:
            wait = retry_at.get(node_id, 0.0) - clock()
            if wait > 0:
                await sleep(wait)
            conn = await connect(node_id, **kwargs)
            if conn is None:
                failures[node_id] = n = failures.get(node_id, 0) + 1
                delay = min(cap, base * 2 ** (n - 1)) * random.uniform(0.8, 1.2)
                retry_at[node_id] = clock() + delay
            elif node_id in failures:
                del failures[node_id]
                del retry_at[node_id]
            return conn

    client._get_conn = _get_conn
    return client


# -- the consumer ------------------------------------------------------------------------------

#: How long a graceful stop waits for faust's last commit (:class:`LineageConsumer`).
STOP_COMMIT_TIMEOUT = 5.0
#: How long a producer's stop waits for Kafka to take what it sent (:class:`TrackingProducer`).
STOP_SEND_TIMEOUT = 3.0


class LineageConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, with the intake's topics taken whole from each fetch,
    and a last commit that cannot hold up a stop (:meth:`commit_and_end_transactions`)."""

    intake: Intake | None = None
    #: Seeks to the committed offsets under way (:meth:`perform_seek`).
    _seeking: int = 0
    #: How long a stop waits for its last commit.
    stop_commit_timeout: float = STOP_COMMIT_TIMEOUT

    async def commit_and_end_transactions(self) -> None:
        """faust's last commit on a stop, given :attr:`stop_commit_timeout` to finish.

        aiokafka 0.14 retries a commit without end while the group coordinator cannot
        be reached (``GroupCoordinator.commit_offsets`` retries every retriable error,
        and its wait for a coordinator ends only in ``close``, which comes after this
        commit). With the broker away, or the coordinator answering
        ``COORDINATOR_NOT_AVAILABLE``, a stop waited for it forever, and so did a
        process whose supervisor was gone (``docs/upstream.md``, section 19). Giving up
        loses nothing: the offsets not committed are read again by the partition's next
        owner, whose outputs are exact whatever it reads twice.
        """
        commit = asyncio.ensure_future(super().commit_and_end_transactions())
        done, _ = await asyncio.wait({commit}, timeout=self.stop_commit_timeout)
        if commit in done:
            commit.result()
            return
        commit.cancel()
        self.log.warning(
            "the last commit did not finish in %.0f s: the next owner of these "
            "partitions reads again from the commit before it",
            self.stop_commit_timeout,
        )

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """faust's ``Consumer.getmany``, with the intake's topics queued whole.

        Every rule of faust's own getmany holds: nothing is delivered while the flow
        is stopped (faust seeks back to the commits), nothing of a partition outside
        the active set, nothing once the generation changed. Two rules are added:
        nothing is delivered while a seek to the commits runs (:meth:`perform_seek`),
        and records taken from aiokafka and not delivered are given back
        (:meth:`give_back`), so that no partition moves past records nobody read.
        """
        intake = self.intake
        if intake is None:
            async for item in super().getmany(timeout):
                yield item
            return
        records, active_partitions = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        if not self.flow_active or self._seeking:
            await self.give_back({tp: batch[0].offset for tp, batch in records.items() if batch})
            if self._seeking:
                return  # the seek under way puts each partition where it reads on from
            try:
                await self.perform_seek()
            except Exception as exc:  # as faust does: the next rebalance seeks again
                self.log.warning("exception performing seek when flow not active %r", exc)
            return
        generation = self.app.consumer_generation_id
        buffered = self._buffered_partitions
        chunks: list[Chunk] = []
        rest = {}
        skipped: dict[TP, int] = {}
        for tp, batch in records.items():
            if not batch:
                continue
            if not (active_partitions is None or tp in active_partitions or tp in buffered):
                skipped[tp] = batch[0].offset
                continue
            if tp.topic in intake.topics:
                fresh = self._fresh(tp, batch)
                if fresh:
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    chunks.append(Chunk(tp, fresh, generation))
            else:
                rest[tp] = batch
        if skipped:
            await self.give_back(skipped)
        for chunk in chunks:
            await intake.put(chunk)
        if not rest:
            return
        to_message = self._to_message
        undelivered = {tp: batch[0].offset for tp, batch in rest.items()}
        for tp, record in self.scheduler.iterate(rest):
            if (
                not self.flow_active
                or self._seeking
                or self.app.consumer_generation_id != generation
            ):
                await self.give_back(undelivered)
                return
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            batch = rest[tp]
            if record is batch[-1]:
                undelivered.pop(tp, None)
            else:
                undelivered[tp] = record.offset + 1
            yield tp, to_message(tp, record)

    async def perform_seek(self) -> None:
        """faust's seek of every assigned partition to its commit, with nothing delivered
        while it runs.

        faust asks the group coordinator for each partition's commit and seeks it there,
        one partition after another, and only at the end sets every read offset to its
        commit. Table recovery calls it after resuming the stream partitions with the
        flow still on, so fetches go on meanwhile. Records of a partition already sought
        and delivered before the end would be left behind by that last step: its read
        offset goes back to the commit while aiokafka reads on after those records, so
        the next fetch looks like offsets holding no record, and the offsets delivered
        are counted done twice (as acks, and as a gap). faust's commit then advances one
        offset per commit (``docs/upstream.md``, section 12). While a seek runs,
        :meth:`getmany` gives back what it fetches; the seek leaves each partition at its
        commit, read offset and position alike.
        """
        self._seeking += 1
        try:
            await super().perform_seek()
        finally:
            self._seeking -= 1

    async def give_back(self, offsets: dict[TP, int]) -> dict[TP, int]:
        """Put partitions back at records taken from aiokafka and not delivered.

        A partition is only ever moved back, never forward: if something else has
        already put it at or before that record (recovery's seek, a rebalance),
        it stays. Moving back costs a read again, which changes nothing (state
        records carry their offsets; recovery applies by key); moving forward
        would skip records. faust's own seek back to the commits cannot do this for a
        changelog partition, which has no commits. Returns the partitions moved.
        """
        if not offsets:
            return {}
        thread = cast(_ConsumerThread, self._thread)
        moved: dict[TP, int] = await thread.call_thread(thread.move_back, offsets)
        for tp, offset in moved.items():
            read = self._read_offset[tp]
            if read is not None and read >= offset:
                self._read_offset[tp] = offset if offset else None
        return moved

    def _fresh(self, tp: TP, batch: list[Any]) -> list[Any]:
        """The records not read before; gaps in the offsets recorded as faust's drain does."""
        read = self._read_offset[tp]
        fresh = [r for r in batch if read is None or r.offset >= read]
        if not fresh:
            return fresh
        committed = self._committed_offset[tp]
        previous = read
        for record in fresh:
            if previous is not None and record.offset - previous > 1:
                # Offsets that hold no record (compaction, transaction markers) count as
                # done, or the commit would wait for them forever.
                start = max(previous + 1, committed or 0)
                if start < record.offset:
                    self._gap[tp].addi(start, record.offset)
            previous = record.offset
        self._read_offset[tp] = fresh[-1].offset
        return fresh


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", 1500)
        reconnect_backoff(consumer._client)
        return consumer

    def close(self) -> None:
        """faust's close of the consumer when a rebalance reaches an app that is
        stopping (``App._on_rebalance_when_stopped``): here it does nothing.

        faust's own closes the thread's aiokafka client and group coordinator from the
        app's event loop, a loop they do not belong to: both fail at their first
        ``await`` of a task of the consumer's loop, after the coordinator is marked
        closing and the consumer closed. The thread's own stop then finds the consumer
        closed and skips it, so the worker never leaves its group: its partitions stay
        with it, unread, until the session timeout (``docs/upstream.md``, section 20).
        The thread's stop (``on_thread_stop``) stops the consumer on its own loop: it
        lets the rebalance under way finish (the app answers its callbacks at once
        while it stops) and leaves the group.
        """

    async def move_back(self, offsets: dict[TP, int]) -> dict[TP, int]:
        """In the consumer's thread: seek each assigned partition to its offset if it
        stands after it (see :meth:`LineageConsumer.give_back`)."""
        consumer = self._ensure_consumer()
        assigned = consumer.assignment()
        moved = {}
        for tp, offset in offsets.items():
            if tp not in assigned:
                continue  # revoked: its next assignment starts from the commits
            position = await consumer.position(tp)
            if position is not None and position > offset:
                consumer.seek(tp, offset)
                moved[tp] = offset
        return moved

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        """faust's fetch, with the partitions fixed when it is asked for.

        faust hands aiokafka its live set of active partitions, and aiokafka reads it
        when records arrive, up to ``timeout`` later; an empty set means *every*
        partition to aiokafka. A rebalance in between pauses everything (the set is
        empty) and table recovery seeks the changelogs: the fetch then returned the
        changelog records recovery had just asked for, getmany dropped them because
        the flow was still off, and faust's seek back to the committed offsets cannot
        restore a changelog's position (it has none). Recovery waited for those
        records forever. Fixing the set at call time leaves them in aiokafka's buffer
        for the next fetch, and a fetch of no partition fetches nothing.
        """
        partitions: Any = active_partitions  # None in faust's client-only mode: every one
        if partitions is not None:
            if not partitions:
                return {}
            partitions = set(partitions)  # a copy: nobody changes it while aiokafka waits
        return await super()._fetch_records(
            consumer, partitions, timeout=timeout, max_records=max_records
        )


# -- the tables' changelogs ----------------------------------------------------------------------


class ChangelogWriter:
    """Writes the worker's table records as faust's Table would, through the worker's
    batched :class:`~streams.outputs.Sender` instead of faust's producer.

    faust sends a changelog record per key set, each through its producer buffer, a
    future and a callback (a tenth of a busy worker's time). Here a record goes into
    the table's store (``Table.data``, which faust's Table reads) and its changelog
    record, keyed and partitioned as faust keys and partitions it (the JSON of the key,
    the partition the key names), is added to the sender, which sends whole batches.
    When Kafka acknowledged them (:meth:`acknowledged`, the sender's ``on_acked``),
    each store learns the offset it holds its changelog up to
    (``set_persisted_offset``), as faust's own callback tells it; :meth:`written` then
    lets a store that keeps writes until then (the RocksDB store) keep them.
    """

    def __init__(self, send: Callable[[str, bytes, bytes | None, int], object]) -> None:
        self._send = send
        self._topics: dict[int, str] = {}  # table id -> changelog topic
        self._tables: dict[str, Any] = {}  # changelog topic -> table

    def _topic(self, table: Any) -> str:
        topic = self._topics.get(id(table))
        if topic is None:
            topic = self._topics[id(table)] = table.changelog_topic.get_topic_name()
            self._tables[topic] = table
        return topic

    def set(self, table: Any, key: str, value: bytes) -> None:
        table.data[key] = value
        self._send(self._topic(table), _json_key(key), value, table.partition_for_key(key))

    def delete(self, table: Any, key: str) -> None:
        with contextlib.suppress(KeyError):
            del table.data[key]
        self._send(self._topic(table), _json_key(key), None, table.partition_for_key(key))

    def acknowledged(self, topic: str, partition: int, offset: int) -> None:
        table = self._tables.get(topic)
        if table is not None:
            table.data.set_persisted_offset(TP(topic, partition), offset)

    def written(self) -> None:
        """Every changelog record handed over so far was acknowledged."""
        for table in self._tables.values():
            keep = getattr(table.data, "write_acknowledged", None)
            if keep is not None:
                keep()

    def reader(self, table: Any) -> Callable[[str], Any]:
        """A table's reads: its store, which :meth:`set` writes at once."""
        return reader(table)


def _json_key(key: str) -> bytes:
    # faust's "json" key serializer (orjson with faust[orjson]): pinned by a test.
    return orjson.dumps(key)


# -- the producer ---------------------------------------------------------------------------------


class TrackingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """aiokafka's producer, asking for the metadata of every topic it sends to.

    aiokafka 0.14's client adds a topic to the topics whose metadata it asks for only
    when the topic was unknown at its first send (``_wait_on_metadata``); topics it
    learned at bootstrap, when it asked for all of them, are used and never tracked.
    The first send to a topic missing from the cached metadata (one created a moment
    ago, that the broker did not list yet) makes that topic the only one tracked; the
    next refresh returns it alone, and ``update_metadata`` forgets every other topic.
    A batch queued for one of them has no leader from then on: the sender asks for
    metadata again and again, logs nothing, and the batch fails only when it expires
    (``request_timeout_ms``), while every flush waits for it. Tracking each topic
    before its first record, as Kafka's Java client does, keeps every topic with a
    queued batch in every refresh.
    """

    def __init__(self, *args: Any, stop_timeout: float = STOP_SEND_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        reconnect_backoff(self.client)
        self.stop_timeout = stop_timeout

    async def stop(self) -> None:
        """aiokafka's stop, which waits until every batch sent is delivered or expires
        (``request_timeout_ms``: the worker's ``output_timeout``, five minutes by
        default), given :attr:`stop_timeout` for it; then what Kafka has not taken is
        given up. A worker stops its producers after its last flush, which waited for
        every batch already: one is left only when Kafka did not take it, and the
        events behind it were never acked. aiokafka's sender, cancelled, lets its
        requests under way end, and the stop then closes the client."""
        stopping = asyncio.ensure_future(super().stop())
        done, _ = await asyncio.wait({stopping}, timeout=self.stop_timeout)
        if not done:
            log.warning(
                "Kafka did not take the last outputs in %.0f s: given up, their events "
                "are judged again from the commit",
                self.stop_timeout,
            )
            self._sender.sender_task.cancel()
            done, _ = await asyncio.wait({stopping}, timeout=self.stop_timeout)
            if not done:  # a request under way waits on a connection: left to the loop's end
                stopping.cancel()
                return
        stopping.result()

    def _track(self, topic: str) -> None:
        client = self.client
        if topic not in client._topics:
            client.add_topic(topic)  # refreshes in the background; the send waits for it

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        self._track(topic)
        return await super().send(topic, *args, **kwargs)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self._track(topic)
        return await super().send_batch(batch, topic, partition=partition)


class _Producer(faust_aiokafka.Producer):
    @property
    def _producer_type(self) -> type[AIOKafkaProducer]:
        return TrackingProducer


class _Transport(faust_aiokafka.Transport):
    Consumer = LineageConsumer
    Producer = _Producer


# -- the app -------------------------------------------------------------------------------------


class LineageApp(faust.App):
    """A faust App whose consumer feeds ``intake``.

    ``fetch_wait_ms``: how long the broker may hold a fetch. ``before_stop``: coroutines
    run first on a graceful stop, while the consumer can still commit.
    """

    intake: Intake | None = None
    fetch_wait_ms: int = 1500

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_stop: list[Callable[[], Awaitable[None]]] = []

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_consumer(self) -> Any:
        consumer = cast(LineageConsumer, super()._new_consumer())
        consumer.intake = self.intake
        return consumer

    async def give_back(self, offsets: dict[TP, int]) -> dict[TP, int]:
        """:meth:`LineageConsumer.give_back` on this app's consumer."""
        return await cast(LineageConsumer, self.consumer).give_back(offsets)

    def on_webserver_init(self, web: Any) -> None:
        # Every route served, faust's and ours: what an operator (and the route test)
        # can hold against the door's list of open routes.
        log.info("web server routes: %s", ", ".join(web_routes(self)))

    async def on_stop(self) -> None:
        for hook in self.before_stop:
            try:
                await hook()
            except Exception:
                log.exception("final flush before stopping failed")
        await super().on_stop()


# -- the RocksDB store ---------------------------------------------------------------------------


class PartitionStore(faust_rocksdb.Store):
    """faust's RocksDB store (rocksdict driver) for a table that names each key's partition.

    faust keeps one RocksDB database per changelog partition. Three things differ here:

    - **Where a key lives.** faust's store files a key under the partition of the
      current event (its ``_set`` asserts one) and looks a key up through an index of
      the last 1,000 keys, else in every open database. The worker writes the state of
      several partitions at once, outside any event: here a key is read from and
      written to the database of the partition ``table.partition_for_key`` names.
    - **When it reaches the disk.** faust writes to RocksDB at once and records the
      changelog offset when Kafka acknowledges it. A crash in between leaves the disk
      ahead of the changelog, and recovery after a restart reads the changelog only from
      that offset: state that Kafka never got stays in this worker's tables and never
      reaches the next owner of the partition (``docs/upstream.md``, section 13). Here
      a write is kept in memory (and read from there) until the worker's
      :class:`ChangelogWriter` says Kafka acknowledged every changelog record handed
      over (:meth:`write_acknowledged`); then each partition's writes and the highest
      changelog offset acknowledged for it (:meth:`set_persisted_offset`) go to its
      database in one atomic write batch. So each database always holds its changelog
      up to the offset it records: recovery from that offset is exact after any stop,
      crash or kill.
    - **Reading one partition.** :meth:`partition_items` reads that partition's
      database alone.
    - **One memory budget** (option ``memory``): every database of the process shares
      one block cache and write buffer budget (:class:`SharedMemoryOptions`).

    Recovery's own writes (:meth:`apply_changelog_batch`) are changelog records already,
    and go to the database at once, with their offset in the same batch.
    """

    def __init__(self, *args: Any, options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if rocksdict is None:
            raise ImproperlyConfigured(
                "the rocksdb:// store needs rocksdict: pip install 'privacy-lineage[worker]'"
            )
        options = dict(options or {})
        memory = options.pop("memory", None)
        super().__init__(*args, options=options, **kwargs)
        if not self.use_rocksdict:
            raise ImproperlyConfigured("the rocksdb:// store needs the rocksdict driver")
        if memory is not None:
            self.rocksdb_options = SharedMemoryOptions(int(memory), **options)
        #: Writes not yet acknowledged by Kafka, by partition (None: a delete).
        self._staged: dict[int, dict[bytes, bytes | None]] = {}
        #: The highest changelog offset Kafka acknowledged for each partition with
        #: staged writes.
        self._staged_offsets: dict[int, int] = {}
        #: The value read by the last ``key in table`` (faust's Table then reads it again).
        self._last_read: tuple[bytes, bytes | None] | None = None

    # -- where a key lives

    def _partition(self, key: Any) -> int:
        partition = self.table.partition_for_key(key)
        if partition is None:  # pragma: no cover - LineageTable's tables name it
            raise TypeError(f"table {self.table_name} names no partition for a key")
        return int(partition)

    def _read(self, partition: int, key: bytes) -> bytes | None:
        staged = self._staged.get(partition)
        if staged is not None and key in staged:
            return staged[key]
        value: bytes | None = self._db_for_partition(partition).get(key)
        return value

    def _write(self, partition: int, key: bytes, value: bytes | None) -> None:
        self._last_read = None
        self._staged.setdefault(partition, {})[key] = value

    # The mapping faust's Table uses, with decoded keys: no key is decoded to find it.

    def __getitem__(self, key: Any) -> Any:
        raw = self._encode_key(key)
        last = self._last_read
        if last is not None and last[0] == raw:
            value = last[1]
        else:
            value = self._read(self._partition(key), raw)
        self._last_read = None
        if value is None:
            raise KeyError(key)
        return self._decode_value(value)

    def __contains__(self, key: object) -> bool:
        raw = self._encode_key(key)
        value = self._read(self._partition(key), raw)
        self._last_read = (raw, value)  # faust's Table asks `key in data`, then `data[key]`
        return value is not None

    def __setitem__(self, key: Any, value: Any) -> None:
        self._write(self._partition(key), self._encode_key(key), self._encode_value(value))

    def __delitem__(self, key: Any) -> None:
        self._write(self._partition(key), self._encode_key(key), None)

    # faust's own byte-level entry points, for any other caller: the same, key decoded.

    def _get(self, key: bytes) -> bytes | None:
        return self._read(self._partition(self._decode_key(key)), key)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._write(self._partition(self._decode_key(key)), key, value)

    def _del(self, key: bytes) -> None:
        self._write(self._partition(self._decode_key(key)), key, None)

    # -- when it reaches the disk

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Kafka acknowledged changelog records of ours up to ``offset``
        (:meth:`ChangelogWriter.acknowledged`, or faust's own callback): note it, to be
        written with the partition's staged writes. A partition with none staged was
        revoked since: its database keeps the offset it had."""
        if tp.partition in self._staged:
            known = self._staged_offsets.get(tp.partition, -1)
            self._staged_offsets[tp.partition] = max(known, offset)

    def write_acknowledged(self) -> int:
        """Write each partition's staged writes, with the highest changelog offset Kafka
        acknowledged, to its database in one batch; returns how many keys.

        Called by :meth:`ChangelogWriter.written` once Kafka acknowledged every
        changelog record handed over: every staged write is in the changelog by then.
        """
        written = 0
        for partition, writes in self._staged.items():
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            offset = self._staged_offsets.get(partition)
            if offset is not None:
                batch.put(self.offset_key, str(offset).encode())
            self._db_for_partition(partition).write(batch)
            written += len(writes)
        self._staged.clear()
        self._staged_offsets.clear()
        return written

    def apply_changelog_batch(
        self, batch: Iterable[Any], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """Recovery: changelog records to each partition's database, with the offset of
        the last one in the same write batch."""
        batches: dict[int, Any] = {}
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            partition = message.partition
            writes = batches.get(partition)
            if writes is None:
                writes = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
            if message.value is None:
                writes.delete(message.key)
            else:
                writes.put(message.key, message.value)
            offsets[partition] = max(offsets.get(partition, -1), message.offset)
        for partition, writes in batches.items():
            writes.put(self.offset_key, str(offsets[partition]).encode())
            self._db_for_partition(partition).write(writes)
        if batches:
            self._last_read = None

    def revoke_partitions(self, table: Any, tps: set[TP]) -> None:
        """A revoked partition's staged writes go with it: its database keeps the state
        and offset it had, and its next owner reads the changelog from there."""
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._staged.pop(tp.partition, None)
                self._staged_offsets.pop(tp.partition, None)
        self._last_read = None
        super().revoke_partitions(table, tps)

    # -- reading one partition

    def partition_items(self, partition: int) -> list[tuple[Any, Any]]:
        """Every (key, value) of one partition, decoded: its database (and what is
        staged for it) alone."""
        found = dict(self._visible_items(self._db_for_partition(partition)))
        for key, value in self._staged.get(partition, {}).items():
            if value is None:
                found.pop(key, None)
            else:
                found[key] = value
        return [(self._decode_key(k), self._decode_value(v)) for k, v in found.items()]


#: memory -> (the block cache, the write buffer manager) every database of that budget shares.
_SHARED_MEMORY: dict[int, tuple[Any, Any]] = {}


class SharedMemoryOptions(faust_rocksdb.RocksDBOptions):
    """faust's options of a RocksDB database (rocksdict), with one memory budget for every
    database of the process.

    faust gives each database (one per table and partition held) a block cache of its
    own, 2 GiB by default, and three write buffers of 64 MiB. Here every database shares
    one block cache of ``memory`` bytes, and their write buffers are charged to it
    (RocksDB's write buffer manager, which flushes the largest buffer once all of them
    hold a quarter of it), as are their index and filter blocks: RocksDB's memory stays
    about ``memory``, whatever the number of databases and the size of the state. The
    rest is faust's (``as_options`` mirrors faust-streaming 0.15.3's, with the rocksdict
    driver).
    """

    def __init__(self, memory: int, **options: Any) -> None:
        options.pop("use_rocksdict", None)
        super().__init__(use_rocksdict=True, **options)
        self.memory = memory

    def as_options(self) -> Any:
        shared = _SHARED_MEMORY.get(self.memory)
        if shared is None:
            cache = rocksdict.Cache(self.memory)
            buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
                self.memory // 4, False, cache
            )
            shared = _SHARED_MEMORY[self.memory] = (cache, buffers)
        cache, buffers = shared
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(-1 if self.max_open_files is None else self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_write_buffer_manager(buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class LineageTable(faust.Table):  # type: ignore[type-arg]
    """A faust Table whose ``rocksdb://`` store is a :class:`PartitionStore`."""

    def _new_store_by_url(self, url: Any) -> Any:
        if faust_stores.by_url(url) is not faust_rocksdb.Store:
            return super()._new_store_by_url(url)
        return PartitionStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )

    def partition_items(self, partition: int) -> list[tuple[Any, Any]] | None:
        """Every (key, value) of one partition read from its own database, or None when
        the store keeps every partition together (then read the whole table)."""
        store = self.data
        if isinstance(store, PartitionStore):
            return store.partition_items(partition)
        return None


# -- table recovery ------------------------------------------------------------------------------


def recovery_stalls(app: faust.App, stall_seconds: float, now: float) -> dict[TP, int]:
    """Changelog partitions table recovery still needs and has heard nothing of for
    ``stall_seconds``: the offset recovery stands at for each."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    started = recovery._recovery_started_at
    if not recovery.in_recovery or started is None:
        return {}
    received = recovery._active_events_received_at
    found = {}
    for tp in recovery.active_tps:
        have, need = recovery.active_offsets[tp], recovery.active_highwaters[tp]
        if have >= need:
            continue
        if now - received.get(tp, started) >= stall_seconds:
            found[tp] = max(have + 1, 0)
    return found


class RecoveryWatch:
    """A second line of defence: seeks a changelog partition again when table recovery
    has received nothing of it for ``stall_seconds``.

    Recovery applies changelog records by key, so reading one twice changes nothing.
    Every time it fires it is logged as a warning: it is a bug to report, not a path.
    """

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._nudged: dict[TP, float] = {}

    def stalled(self, stalls: dict[TP, int], now: float) -> dict[TP, int]:
        """Of ``stalls`` (from :func:`recovery_stalls`), those not nudged lately."""
        if not stalls:
            self._nudged.clear()
            return {}
        found = {
            tp: offset
            for tp, offset in stalls.items()
            if now - self._nudged.get(tp, float("-inf")) >= self.stall_seconds
        }
        for tp in found:
            self._nudged[tp] = now
        return found


# -- the web server ------------------------------------------------------------------------------


def guard_web(app: faust.App, open_routes: Iterable[str], allowed: Callable[[str], bool]) -> None:
    """One door for every route of the app's web server, faust's and ours.

    A request passes when the route it matched is one of ``open_routes`` (as
    registered, e.g. ``/health``), or when ``allowed(authorization_header)`` says so;
    anything else, a path that matches no route included, answers 401 before any
    handler runs. faust's aiohttp driver keeps its ``aiohttp.web.Application`` in
    ``web_app``; the middleware is added before the server starts, which freezes it.
    """
    from aiohttp import web as aiohttp_web

    open_set = frozenset(open_routes)

    @aiohttp_web.middleware
    async def door(request: Any, handler: Any) -> Any:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        if route in open_set or allowed(request.headers.get("Authorization", "")):
            return await handler(request)
        return aiohttp_web.json_response(
            {"error": "a bearer token is required"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="privacy-lineage"'},
        )

    _aiohttp_app(app).middlewares.append(door)


def web_routes(app: faust.App) -> list[str]:
    """Every route the app's web server has registered, as registered (sorted)."""
    return sorted({resource.canonical for resource in _aiohttp_app(app).router.resources()})


def _aiohttp_app(app: faust.App) -> Any:
    return cast(Any, app.web).web_app


# -- the runner ----------------------------------------------------------------------------------


def quiet_runner(app: faust.App, loglevel: str, dump_tasks: Callable[[], None]) -> faust.Worker:
    """faust's Worker without the spinner, with ``dump_tasks`` as its SIGUSR1 handler,
    and without mode's debugger on SIGUSR2.

    mode answers SIGUSR2 with ``pdb.set_trace()`` in the event loop: a worker with a
    terminal, or a stdin held open by its supervisor, stops judging, heartbeating and
    committing until someone types ``continue``, and one whose stdin is closed has
    ``BdbQuit`` raised in the middle of whatever the loop ran. A worker logs the
    signal and goes on.

    The Worker is configured, not subclassed: a subclass of faust's Worker consumed
    nothing at all (seen in the Kafka tests with faust-streaming 0.15.3).
    """
    runner = faust.Worker(app, loglevel=loglevel)
    runner.spinner = None
    # mode binds its signal handlers when the loop starts: replace them on the instance.
    runner._on_sigusr1 = dump_tasks  # type: ignore[method-assign]
    runner._on_sigusr2 = _no_debugger  # type: ignore[method-assign]
    return runner


def _no_debugger() -> None:
    log.warning(
        "SIGUSR2 ignored: a worker opens no debugger (kill -USR1 logs where its tasks wait)"
    )
