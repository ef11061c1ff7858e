"""Hostile input: bounded work per message, safe policy loading, refusals that stop nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from lineage.cli import main
from lineage.engine import DEAD_LETTER_KEEP, Engine, dead_letter_record
from lineage.policy import Policy, load_policy
from lineage.policy.loader import MAX_POLICY_BYTES
from lineage.redact import Redactor, may_hold_raw_values
from lineage.run import read_lines
from lineage.schemas import AccessEvent, EventRejected, decode_event
from tests.conftest import DATA
from tests.helpers import access

# -- bounded work per message ------------------------------------------------------------------

SIZES = [1 << 10, 1 << 14, 1 << 17, 1 << 20]  # 1 KB to 1 MB


def per_byte(work: Callable[[str], object], make: Callable[[int], str]) -> list[float]:
    """Seconds per byte of ``work`` on inputs of each size (best of a few runs)."""
    out = []
    for size in SIZES:
        text = make(size)
        best = float("inf")
        for _ in range(3 if size < SIZES[-1] else 2):
            started = time.perf_counter()
            work(text)
            best = min(best, time.perf_counter() - started)
        out.append(best / size)
    return out


# Texts that made the old scanners backtrack, or that hold many candidates.
HOSTILE = {
    "letters": lambda n: "A" * n,
    "at signs": lambda n: ("a@" * n)[:n],
    "dotted": lambda n: ("a." * n)[:n] + "@",
    "digit pairs": lambda n: ("4 " * n)[:n],
    "near cards": lambda n: ("4111 " * n)[:n],
    "full-width": lambda n: ("０９０－" * n)[:n],
    "escapes": lambda n: ("\\u0040x" * n)[:n],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_redaction_takes_the_same_time_per_byte_at_1_kb_and_1_mb(name: str) -> None:
    redactor = Redactor(b"k" * 32)
    times = per_byte(redactor.mask, HOSTILE[name])
    # Linear: a megabyte costs per byte what a few kilobytes do (the old e-mail pattern
    # was quadratic: a thousand times more per byte at 1 MB than at 1 KB).
    assert times[-1] <= 4 * min(times), [f"{t * 1e9:.0f} ns/B" for t in times]


def test_parsing_takes_the_same_time_per_byte_at_1_kb_and_1_mb(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def event(n: int) -> str:  # refused at every size for the same reason: an unknown field
        body = orjson.dumps(access(recipient="payco", junk="")).decode()
        return body.replace('"junk":""', '"junk":"' + "x" * max(0, n - len(body)) + '"')

    # Past the size limit a message is refused unparsed; lift the limit to time the
    # parser and the rejection on a megabyte.
    monkeypatch.setattr("lineage.schemas.events.MAX_EVENT_BYTES", 1 << 30)

    def decode(text: str) -> None:
        with contextlib.suppress(EventRejected):
            decode_event(text.encode())

    times = per_byte(decode, event)
    assert times[-1] <= 4 * min(times), [f"{t * 1e9:.0f} ns/B" for t in times]
    prefilter = per_byte(lambda text: may_hold_raw_values(text.encode()), event)
    assert prefilter[-1] <= 4 * min(prefilter)


def test_a_dead_letter_of_any_size_costs_the_same_per_byte() -> None:
    redactor = Redactor(b"k" * 32)
    rejection = EventRejected("oversized", field=None, kind="oversized")
    times = per_byte(
        lambda text: dead_letter_record(text.encode(), rejection, "t", redactor),
        lambda n: ("taro@example.jp " * n)[:n],
    )
    assert times[-1] <= 4 * min(times), [f"{t * 1e9:.0f} ns/B" for t in times]


def test_a_message_over_the_limit_is_refused_unparsed(policy: Policy) -> None:
    engine = Engine(policy, redactor=Redactor(b"k" * 32))
    raw = b'{"event_id": "big", "note": "' + b"x" * (1 << 20) + b'"}'
    outcome = engine.process(raw, offset=0, origin="t:1")
    record = outcome.dead_letter
    assert record is not None and record["kind"] == "oversized"
    assert record["truncated"] and record["size"] == len(raw)
    assert record["sha256"] == hashlib.sha256(raw).hexdigest()
    assert len(record["original"]) <= DEAD_LETTER_KEEP


@pytest.mark.parametrize("depth", [50, 1_000, 30_000])
def test_deeply_nested_json_is_refused_not_recursed_into(policy: Policy, depth: int) -> None:
    raw = b'{"event_id": "deep", "attributes": ' + b"[" * depth + b"]" * depth + b"}"
    outcome = Engine(policy).process(raw, offset=0, origin="t:1")
    assert outcome.dead_letter is not None
    if depth > 200:  # the parser stops at 200 levels: no deeper recursion, no crash
        assert outcome.dead_letter["kind"] in {"not_json", "oversized"}


class EndlessLine(io.RawIOBase):
    """A stream of one line of ``size`` bytes, made up as it is read (never held whole)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.made = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        if n == 0:
            return 0
        chunk = (b'{"note": "' + b"y" * n)[:n]
        buffer[:n] = chunk
        self.made.update(chunk)
        self.left -= n
        return n


def test_a_line_of_hundreds_of_megabytes_is_never_held_whole() -> None:
    size = 300 * 1024 * 1024
    stream = EndlessLine(size)
    tracemalloc.start()
    try:
        lines = list(read_lines(io.BufferedReader(stream), keep=DEAD_LETTER_KEEP))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (line,) = lines
    assert line.size == size and line.digest == stream.made.hexdigest()
    assert len(line.raw) == DEAD_LETTER_KEEP
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_run_sets_aside_a_line_over_the_limit_and_goes_on(tmp_path: Path) -> None:
    long_line = b'{"event_id": "long", "note": "' + b"z" * (5 << 20) + b'"}'
    good = orjson.dumps(access(event_id="after", recipient="payco"))
    source = tmp_path / "events.jsonl"
    source.write_bytes(long_line + b"\n" + good + b"\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["run", "--policy", str(DATA / "policy.yaml"), "--source", str(source), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    (dead,) = [orjson.loads(x) for x in (out / "dead-letter.jsonl").read_bytes().splitlines()]
    assert dead["kind"] == "oversized" and dead["truncated"] and dead["size"] == len(long_line)
    assert dead["sha256"] == hashlib.sha256(long_line).hexdigest()
    assert dead["origin"].endswith(":1")
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["access_events"] == 1 and summary["dead_letters"] == 1


def test_lines_are_split_the_same_whatever_the_chunking() -> None:
    body = b"\n".join([b"a" * 70_000, b"short", b"", b"b" * 10, b"c" * 200_000]) + b"\n\nlast"
    lines = list(read_lines(io.BytesIO(body), limit=65_536, keep=100))
    assert [(len(x.raw), x.size, x.digest is not None) for x in lines] == [
        (100, 70_000, True),
        (5, 5, False),
        (0, 0, False),
        (10, 10, False),
        (100, 200_000, True),
        (0, 0, False),
        (4, 4, False),
    ]


# -- the policy loader ---------------------------------------------------------------------------


def refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["policy", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


SEED = (DATA / "policy.yaml").read_text()


def test_a_tag_that_would_construct_an_object_is_refused_with_its_line(tmp_path: Path) -> None:
    text = SEED.replace(
        "  identity.name: {label: Name, identifying: direct}",
        "  identity.name: !!python/object:builtins.dict {label: Name, identifying: direct}",
    )
    line = text.splitlines().index(
        "  identity.name: !!python/object:builtins.dict {label: Name, identifying: direct}"
    )
    output = refusal(tmp_path, text)
    assert f"policy.yaml:{line + 1}: categories.identity.name: tag" in output
    assert "would construct an object" in output


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghijk"):
        previous = "abcdefghijk"[i]
        bomb.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    started = time.perf_counter()
    output = refusal(tmp_path, "\n".join(bomb) + "\n")
    assert time.perf_counter() - started < 5
    assert output.count("\n") == 1 and ":1: (yaml): anchor &a" in output


def test_a_policy_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    output = refusal(tmp_path, "# padding\n" * (MAX_POLICY_BYTES // 5))
    assert f"larger than {MAX_POLICY_BYTES} bytes" in output


def test_a_policy_nested_deeper_than_any_policy_is_refused(tmp_path: Path) -> None:
    output = refusal(tmp_path, "policy: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "nested more than" in output


def test_the_seed_policy_and_the_test_policy_still_load() -> None:
    assert load_policy().categories and load_policy(DATA / "policy.yaml").recipients


def test_decoding_a_valid_event_is_unchanged() -> None:
    event = decode_event(orjson.dumps(access(recipient="payco")))
    assert isinstance(event, AccessEvent) and event.event_id == "e-1"
