"""An embedded run's events decoded, validated and scanned ahead, in a process of its own.

Of what judging one message costs, about two fifths do not depend on anything judged
before it: decoding and strictly validating the JSON, the scan for raw personal data
and the content's digest for dedup. For a run of a large file, :class:`DecodeAhead`
starts this module in a child process (forked from the run when it can, in a few
milliseconds: :class:`~lineage.child.Child`), which reads the same file and does that
part on another core, and hands the run, in batches, what it made of each line that
is a valid event holding no raw personal data: the validated model in a compact form
(:mod:`lineage.schemas.packed`) and its digest. The run judges those
(:meth:`~lineage.engine.Engine.process_scanned`) and every other line as before
(:meth:`~lineage.engine.Engine.process`): a dead letter, a message with raw personal
data to mask (masking needs the run's key) and any line whose batch has not come yet.
The run never waits for the child, so the outputs are the same whichever of the two
decoded a line, and a child that stops (or never starts) only leaves the run to do
the work alone.

The child reads the file by position (``pread``) through a descriptor the run passes
it, from where the run's own reading starts, and numbers the lines as the run does;
each verdict carries its line's length, which the run checks against its own. When
the run finds no batch ready, it tells the child which line it is at, and the child
passes over the lines the run will have decoded alone by the time its next batch is
ready: a child that starts late, or that the other processes slow down, does not
decode again what the run did.

``lineage replay`` takes the same help: of a file as here
(:func:`lineage.replay.file_messages`), and from Kafka a fetch ahead, through the
messages mode below (:func:`lineage.replay.decoded_ahead`); its comparison judges a
message the child decoded on both sides.

The child of ``lineage run`` has one more job (the argument :data:`EXPORTS`): once its
file is decoded, it prepares to write the graph exports, and writes them at the run's
end while the run finishes its other outputs (:mod:`lineage.run_exports`).

A worker on Kafka starts the same child with the argument :data:`MESSAGES`
(:mod:`streams.ahead`): it sends the bytes of the records fetched and waiting behind
the batch it judges, and takes back one verdict a record, made as here.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import select
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage import run_exports
from lineage.child import Child, connections
from lineage.cores import cores
from lineage.errors import RunError
from lineage.garbage import collect_garbage_seldom
from lineage.lines import read_lines
from lineage.redact import Redactor
from lineage.scanning import fingerprint, plain_verdict
from lineage.schemas import decode_event
from lineage.schemas.packed import Packed, pack
from lineage.verdicts import Batch, LineVerdict, LineVerdicts

if TYPE_CHECKING:
    from lineage.policy.model import Policy
    from lineage.state import EdgeAggregate, EdgeKey

__all__ = [
    "DECODE_AHEAD_BYTES",
    "EXPORTS",
    "MESSAGES",
    "DecodeAhead",
    "Verdict",
    "answer_number",
    "answer_verdicts",
    "request",
    "verdict",
]

log = logging.getLogger("lineage.run")

#: The least a file must hold, past where the run starts reading, for a run to decode it
#: in a child: below it, the child's start where it cannot be forked (an interpreter and
#: the event models, about a third of a second) would come when the run is nearly done.
DECODE_AHEAD_BYTES = 8 << 20
#: The bytes of the request's number that open each answer of the messages mode: the
#: worker reads which part an answer is for without reading its verdicts.
_NUMBER_BYTES = 8
#: Lines the child decodes into one batch (about 160 bytes a line).
_BATCH = 1_024
#: The pipe's size the child asks for: about six batches.
_PIPE_BYTES = 1 << 20
#: Lines the run decodes alone after finding no batch ready, before it looks again.
_PATIENCE = 256
#: How far past the line the run last said it was at the child starts again: the run
#: goes on alone while the child decodes a batch.
_LEAD = 2 * _BATCH
#: Lines between the child's looks at what the run said.
_LISTEN = 64

#: The child's argument that makes it decode the messages it is sent (a worker's),
#: not a file's lines.
MESSAGES = "messages"
#: The child's argument, after its file's, that keeps it, once the file is decoded, for
#: the run's graph exports.
EXPORTS = "exports"

#: What the child made of one message: (its content's digest, the packed event), or
#: None when the judging process decodes it itself (:func:`verdict`).
Verdict = tuple[str, Packed] | None


class DecodeAhead:
    """The verdicts of a child decoding the lines of one file ahead of the run."""

    def __init__(self, fd: int, start: int, *, wait: bool = False, exports: bool = False) -> None:
        args = [str(fd), str(start), *([EXPORTS] if exports else [])]
        self._child: Child | None = Child(
            "lineage.decode_process", args, run_exports.NAME, pass_fds=(fd,), fork=True, yields=True
        )
        self._patience = 0
        self._wait = wait  # wait for each batch (tests: every line the child's)
        self._exports = exports  # the child stays, once its file is decoded, for them
        self._decoded = False  # the child sent its last batch
        self._asked = False  # the child was sent the run's exports to write
        #: The verdicts the run takes line by line, in compiled code.
        self.verdicts = LineVerdicts(self._next)

    @classmethod
    def start(
        cls,
        source: Any,
        redactor: Redactor | None,
        *,
        least: int | None = None,
        wait: bool = False,
        exports: bool = False,
    ) -> DecodeAhead | None:
        """A child for ``source`` when it is a regular file with at least
        :data:`DECODE_AHEAD_BYTES` (``least``) left to read and the run may use more
        than one core, else None. ``wait``: wait for each batch rather than decode
        alone meanwhile (for tests). ``exports``: the child will be asked for the graph
        exports (:meth:`write_exports`).

        Only with our own :class:`Redactor` (whatever its key: finding raw values does not
        depend on it), so that the child finds what the run's would.
        """
        if redactor is not None and type(redactor) is not Redactor:
            return None
        if cores() < 2:  # the child would only take the run's own core from it
            return None
        try:
            fd = source.fileno()
            start = source.tell()
            info = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size - start < (DECODE_AHEAD_BYTES if least is None else least):
            return None
        # A descriptor of the child's own: the run's may be 0, its standard input, which
        # the child's start replaces.
        fd = os.dup(fd)
        try:
            return cls(fd, start, wait=wait, exports=exports)
        except RunError as exc:
            log.warning("%s; the run decodes its events itself", exc)
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        """Stop the child, if it still runs."""
        child, self._child = self._child, None
        if child is not None:
            child.close()

    def write_exports(
        self,
        policy: Policy,
        edges: Mapping[EdgeKey, EdgeAggregate],
        generated_from: str,
        out_dir: Path,
    ) -> None:
        """Ask the child, when it was started for them and still runs, to write the graph
        exports (:func:`run_exports.write_exports`) while the run goes on;
        :meth:`exports_written` says what it wrote."""
        child = self._child
        if child is None or not self._exports:
            return
        try:
            while not self._decoded:  # batches of lines the run decoded alone meanwhile
                self._decoded = not child.recv()
            child.send(run_exports.request(policy, edges, generated_from, out_dir))
        except RunError:
            self.close()
            return
        self._asked = True

    def exports_written(self) -> dict[str, Path] | None:
        """What the child wrote when :meth:`write_exports` asked (format -> path), or
        None when it was not asked or stopped before it answered: the run writes them.
        The child's error (an output it could not write) is raised as the run's."""
        child = self._child
        if child is None or not self._asked:
            return None
        try:
            message = child.recv()
        except RunError:
            self.close()
            return None
        return run_exports.written(message)

    def _next(self, number: int) -> Batch | None:
        """The child's next batch, if one is ready; if none is, tell the child that the
        run is at line ``number`` (it goes ahead of it, not over what the run did)."""
        child = self._child
        if child is None or self._decoded:
            return None
        if self._patience:
            self._patience -= 1
            return None
        try:
            if not self._wait and not child.ready():
                self._patience = _PATIENCE
                child.send(b"%d" % number)
                return None
            message = child.recv()
        except RunError:  # the child stopped
            self.close()
            return None
        if not message:  # the child decoded its whole file
            self._decoded = True
            if not self._exports:
                self.close()
            return None
        batch: Batch = marshal.loads(message)
        return batch


def _serve(
    fd: int,
    start: int,
    send: Callable[[bytes], object],
    heard: Callable[[], int | None] | None = None,
) -> None:
    """The child: decode, validate and scan the lines of the file at ``fd`` from byte
    ``start``, numbered as the run numbers them, and send the verdicts. ``heard()``:
    the line the run last said it was at, or None; the child passes over the lines up
    to :data:`_LEAD` past it, which the run will have decoded alone by then."""
    redactor = Redactor()
    verdicts: list[LineVerdict] = []
    number = 0
    skip_to = 0
    for number, line in enumerate(read_lines(_Positioned(fd, start)), start=1):
        if heard is not None and number % _LISTEN == 0:
            at = heard()
            if at is not None:
                skip_to = max(skip_to, at + _LEAD)
        if line.digest is None and number >= skip_to:
            raw = line.raw.rstrip(b"\r\n")
            found = verdict(redactor, raw)
            if found is not None:
                verdicts.append((number, len(raw), *found))
        if number % _BATCH == 0:
            send(marshal.dumps((number, verdicts)))
            verdicts = []
    if verdicts:
        send(marshal.dumps((number, verdicts)))
    send(b"")  # the last batch


def _serve_exports(recv: Callable[[], bytes], send: Callable[[bytes], object]) -> None:
    """The child of ``lineage run``, once its file is decoded: import what the graph
    exports need while the run judges on, then write the exports it asks for."""
    run_exports.prepare()
    while True:
        try:
            message = recv()
        except EOFError:  # the run ended without asking
            return
        if message.isdigit():  # where the run was, said before it had the last batch
            continue
        send(run_exports.answer(message))
        return


def verdict(redactor: Redactor, raw: bytes) -> Verdict:
    """(its content's digest, the packed event) of a message that is a valid event
    holding no raw personal data, else None: the judging process decodes that message
    itself (it writes the dead letter of a bad event, masks raw values with its own
    key, and sets aside a message that fails here as failing there).

    The common access event takes :func:`~lineage.scanning.plain_verdict`, without
    the models; the rest takes them."""
    try:
        plain = plain_verdict(raw)
        if plain is not None:
            return plain
        event = decode_event(raw)
        event, found = redactor.scan_event(event, raw)
        if found:
            return None
        return fingerprint(event, raw, False), pack(event)
    except Exception:
        return None


def request(number: int, messages: list[bytes]) -> bytes:
    """A request of the messages mode: decode ``messages``, answering as ``number``."""
    return marshal.dumps((number, messages))


def _serve_messages(recv: Callable[[], bytes], send: Callable[[bytes], object]) -> None:
    """The child of a worker (:mod:`streams.ahead`) or of a replay from Kafka
    (:func:`lineage.replay.decoded_ahead`): each request is made by :func:`request`,
    each answer is the request's number (:func:`answer_number`) then ``[verdict or
    None]`` in ``marshal`` (:func:`answer_verdicts`), one verdict (:func:`verdict`) a
    message, in the order they came."""
    redactor = Redactor()
    while True:
        try:
            request = recv()
        except EOFError:  # the worker is done with us
            return
        number, messages = marshal.loads(request)
        verdicts = [verdict(redactor, raw) for raw in messages]
        send(number.to_bytes(_NUMBER_BYTES, "big") + marshal.dumps(verdicts))


def answer_number(answer: bytes) -> int:
    """The number of the request ``answer`` (of the messages mode) is for."""
    return int.from_bytes(answer[:_NUMBER_BYTES], "big")


def answer_verdicts(answer: bytes) -> list[Verdict]:
    """The verdicts ``answer`` (of the messages mode) carries, one a message sent."""
    verdicts: list[Verdict] = marshal.loads(memoryview(answer)[_NUMBER_BYTES:])
    return verdicts


class _Positioned:
    """A file read by position, leaving the descriptor's own offset (the run's) alone."""

    def __init__(self, fd: int, at: int) -> None:
        self.fd, self.at = fd, at

    def read(self, size: int) -> bytes:
        data = os.pread(self.fd, size, self.at)
        self.at += len(data)
        return data


def main(argv: list[str]) -> int:
    collect_garbage_seldom()
    reader, writer, args = connections(argv)
    resize = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux's
    if resize is not None:
        with contextlib.suppress(OSError):
            # Room for several batches, so that the run never reads one half written.
            fcntl.fcntl(writer.fileno(), resize, _PIPE_BYTES)

    # One poller for the child's life: Connection.poll(0) builds and registers a
    # selector on each call (4.5 us here, against 0.4 us for this poller).
    poller = select.poll()
    poller.register(reader.fileno(), select.POLLIN)

    def heard() -> int | None:
        at = None
        while poller.poll(0):
            at = int(reader.recv_bytes())
        return at

    try:
        if args == [MESSAGES]:
            _serve_messages(reader.recv_bytes, writer.send_bytes)
        else:
            fd, start, *then = args
            _serve(int(fd), int(start), writer.send_bytes, heard)
            if then == [EXPORTS]:
                _serve_exports(reader.recv_bytes, writer.send_bytes)
    except (BrokenPipeError, ConnectionResetError):  # the run is done with us
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
