"""A faster engine says exactly what the engine before it said.

``tests/golden-outputs.json`` holds digests of every output of ``lineage run`` on three
days (the demo day under the seed policy; a typical day and a breach storm of another
policy), recorded with the engine before the speed work (its commit is in the file).
Each is computed again here and must be equal, output by output. When an output moves
on purpose (a contract change), record them again: ``python -m tests.golden --write``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.golden import GOLDEN, _days, digests

RECORDED: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.mark.parametrize("day", sorted(RECORDED["days"]))
def test_every_output_equals_the_recorded_engines(day: str) -> None:
    policy, lines = _days()[day]
    found = json.loads(json.dumps(digests(day, policy, lines)))  # tuples as the file has them
    expected = RECORDED["days"][day]
    moved = {name: (found[name], want) for name, want in expected.items() if found[name] != want}
    assert not moved, f"{day}: outputs differ from engine {RECORDED['recorded_with']}: {moved}"


@pytest.mark.parametrize("day", sorted(RECORDED["days"]))
def test_every_output_is_the_same_when_a_process_decodes_ahead(day: str) -> None:
    # The valid events without raw personal data come validated from another process
    # (lineage.decode_process), packed and made again as models: nothing may differ.
    policy, lines = _days()[day]
    found = json.loads(json.dumps(digests(day, policy, lines, ahead=True)))
    expected = RECORDED["days"][day]
    moved = {name: (found[name], want) for name, want in expected.items() if found[name] != want}
    assert not moved, f"{day}: outputs differ when decoded ahead: {moved}"


def test_the_storm_is_a_storm_and_the_typical_day_is_not() -> None:
    # The comparison means something only if the days judge very differently.
    days = RECORDED["days"]
    storm = days["sakura-storm"]["counts"]
    typical = days["sakura-typical"]["counts"]
    assert storm[5] > 5 * typical[5]  # alerts
