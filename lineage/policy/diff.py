"""What changed between two policies: ``policy_changes`` of ``lineage policy diff`` and
``lineage replay`` (docs/contract.md).

>>> changes = policy_changes(load_policy("old.yaml"), load_policy("new.yaml"))  # doctest: +SKIP
>>> changes[0]  # doctest: +SKIP
{'path': 'recipients.ad-network.conditions', 'change': 'changed', 'before': {...}, 'after': {...}}

The policies are compared as loaded, defaults filled in, so a key written out with its
default value is no change. Paths follow the policy's keys, as deep as a reader of the
policy names things:

- ``policy.<key>``                                   name, version, timezone, countries, ...
- ``categories.<id>``, ``purposes.<id>``, ``systems.<id>``, ``retention_days.<entry>``
- ``exceptions``                                     the list, as a whole
- ``recipients.<id>``                                a recipient added or removed
- ``recipients.<id>.<key>``                          name, kind, country, supervision,
                                                     announcement, conditions, onward, ...
- ``recipients.<id>.agreements.<agreement id>``      an agreement signed, ended or changed

``before`` is null for an addition, ``after`` null for a removal. The list is sorted by
path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from lineage.policy.model import Policy, Recipient

__all__ = ["Change", "format_changes", "policy_changes"]

#: One entry of ``policy_changes``: path, change, before, after.
Change = dict[str, Any]

ChangeKind = Literal["added", "removed", "changed"]
_MARK: dict[str, str] = {"added": "+", "removed": "-", "changed": "~"}


def _entry(path: str, change: ChangeKind, before: Any, after: Any) -> Change:
    return {"path": path, "change": change, "before": before, "after": after}


def _mapping(prefix: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    """One entry per key added, removed or whose value differs."""
    for key in sorted(old.keys() | new.keys()):
        path = f"{prefix}.{key}"
        if key not in new:
            yield _entry(path, "removed", old[key], None)
        elif key not in old:
            yield _entry(path, "added", None, new[key])
        elif old[key] != new[key]:
            yield _entry(path, "changed", old[key], new[key])


def _recipient(r: Recipient) -> dict[str, Any]:
    """A recipient as JSON, its country as the rules read it (v1 files leave out JP)."""
    data: dict[str, Any] = r.model_dump(mode="json")
    data["country"] = r.country_code
    return data


def _agreements(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Agreements by their id; by position when ids repeat (no id to follow them by)."""
    ids = [str(a["id"]) for a in items]
    if len(set(ids)) == len(ids):
        return dict(zip(ids, items, strict=True))
    return {f"[{i}]": a for i, a in enumerate(items)}


def _recipients(old: Policy, new: Policy) -> Iterator[Change]:
    before = {rid: _recipient(r) for rid, r in old.recipients.items()}
    after = {rid: _recipient(r) for rid, r in new.recipients.items()}
    for rid in sorted(before.keys() | after.keys()):
        path = f"recipients.{rid}"
        if rid not in after:
            yield _entry(path, "removed", before[rid], None)
            continue
        if rid not in before:
            yield _entry(path, "added", None, after[rid])
            continue
        was, now = dict(before[rid]), dict(after[rid])
        yield from _mapping(
            f"{path}.agreements",
            _agreements(was.pop("agreements")),
            _agreements(now.pop("agreements")),
        )
        yield from _mapping(path, was, now)


def policy_changes(old: Policy, new: Policy) -> list[Change]:
    """Every difference between the data of two policies, sorted by path."""
    a: dict[str, Any] = old.model_dump(mode="json")
    b: dict[str, Any] = new.model_dump(mode="json")
    changes: list[Change] = [
        *_mapping("policy", a["policy"], b["policy"]),
        *_mapping("categories", a["categories"], b["categories"]),
        *_mapping("purposes", a["purposes"], b["purposes"]),
        *_mapping("retention_days", a["retention_days"], b["retention_days"]),
        *_mapping("systems", a["systems"], b["systems"]),
        *_recipients(old, new),
    ]
    if sorted(a["exceptions"]) != sorted(b["exceptions"]):
        changes.append(
            _entry("exceptions", "changed", sorted(a["exceptions"]), sorted(b["exceptions"]))
        )
    return sorted(changes, key=lambda c: str(c["path"]))


def format_changes(changes: list[Change]) -> str:
    """The text format: one line each, ``+``, ``-`` or ``~``, then the path."""
    return "".join(f"{_MARK[c['change']]} {c['path']}\n" for c in changes)
