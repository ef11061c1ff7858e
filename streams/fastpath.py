"""A cheaper hand-off from faust's fetcher to the conductor, for the common case.

faust's ``Consumer._drain_messages`` hands every fetched message to the conductor
through ``Service.wait_first(callback(message), suspend_flow.wait())``: two tasks
and an ``asyncio.wait`` per message, so that a rebalance can abandon a callback
that is blocked. Measured on the worker, that wrapper costs more than judging the
event. A callback can block only when flow is suspended, the producer's buffer is
over its limit (the callback flushes it), or a destination queue is full. When none
of these holds, the callback cannot suspend and is awaited directly; otherwise the
original, abandonable path is taken. Everything else is faust's loop, unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

__all__ = ["install_fast_drain"]


def install_fast_drain() -> None:
    """Replace faust's consumer drain loop (process-wide) with one that skips ``wait_first``
    when the callback cannot block."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer._drain_messages, "_lineage_fast", False):
        return

    def can_block(self: Any, message: Any) -> bool:
        app = self.app
        if self.suspend_flow.is_set() or not app.flow_control.is_active():
            return True
        buffer = app.producer.buffer
        # buffer.size reads a faust setting per call; the worker's producer is not threaded.
        if buffer.pending.qsize() > buffer.max_messages:
            return True
        return any(chan.queue.full() for chan in app.topics._tp_index.get(message.tp, ()))

    async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - faust's loop
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        flag = "FETCHING"
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(flag)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if can_block(self, message):
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                await callback(message)
                            set_read_offset(tp, offset)
                    self.diag.unset_flag(flag)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(flag)

    cast(Any, _drain_messages)._lineage_fast = True
    cast(Any, Consumer)._drain_messages = _drain_messages
