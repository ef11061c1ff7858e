"""Load a policy file: YAML -> checked, frozen :class:`Policy`, or a refusal naming file, line and
key.

Safe by construction: a file over :data:`MAX_POLICY_BYTES` is refused before it is
read; only plain YAML is read (mappings, lists, strings, numbers, booleans, dates):
a tag that would construct an object (``!!python/object``) and any anchor or alias
(``&a``, ``*a``: an alias bomb expands to billions of nodes) are refused with
their line.

Three passes, each reporting every problem it finds:

1. YAML syntax, plain YAML only, and duplicate keys (PyYAML alone would keep the
   last duplicate silently); a scalar its tag cannot read (``!!int abc``, the date
   ``2024-13-45``) is named by line and kind, never repeated; and no string, key or
   value, holds a control or format character (:mod:`lineage.characters`: tabs and
   line breaks, C1 controls such as NEL, U+2028/2029, bidi overrides U+202A-202E
   and U+2066-2069, zero-width characters): labels and names end up in GraphML,
   DOT, Mermaid and HTML pictures and in alert texts, where such a character
   breaks the file or forges a line. The problem names the code point, not the
   text (the line feed that ends a ``|`` or ``>`` block scalar is YAML's, not text);
2. shape: unknown keys, missing keys, wrong types (the pydantic models);
3. references: every category, purpose and recipient a list names must exist, and
   an affiliate's announcement must name partner, purpose, categories and manager.
"""

from __future__ import annotations

import importlib.resources
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lineage.characters import codepoint, first_hidden
from lineage.errors import PolicyError, PolicyProblem
from lineage.policy.model import Policy
from lineage.schemas.types import RecipientKind

__all__ = ["DEFAULT_POLICY", "MAX_POLICY_BYTES", "lint_policy", "load_policy", "load_policy_text"]

#: A policy file larger than this is refused unread (the seed policy is about 10 KB).
MAX_POLICY_BYTES = 1024 * 1024

#: The tags plain YAML resolves to; any other would construct something else.
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
}

Path_ = tuple[str | int, ...]

#: libyaml's parser where PyYAML was built with it (its wheels are), else PyYAML's own:
#: the same events and nodes, marks included, at a fourteenth of the time (2 ms against
#: 28 ms for the benchmark's policy, read twice at every start).
_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _default_policy_path() -> Path:
    return Path(str(importlib.resources.files("lineage") / "data" / "default-policy.yaml"))


#: The seed policy shipped with the package (the Audiostock policy, Japan/APPI).
DEFAULT_POLICY = _default_policy_path()


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and check a policy file (the shipped seed policy when ``path`` is None)."""
    file = Path(path) if path is not None else DEFAULT_POLICY
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_POLICY_BYTES + 1)
        if len(data) > MAX_POLICY_BYTES:
            problem = PolicyProblem(
                str(file), None, "(file)", f"larger than {MAX_POLICY_BYTES} bytes: not a policy"
            )
            raise PolicyError([problem])
        text = data.decode("utf-8")
    except OSError as exc:
        problem = PolicyProblem(str(file), None, "(file)", exc.strerror or str(exc))
        raise PolicyError([problem]) from None
    except UnicodeDecodeError as exc:
        problem = PolicyProblem(str(file), None, "(file)", f"not UTF-8: {exc.reason}")
        raise PolicyError([problem]) from None
    return load_policy_text(text, str(file))


def load_policy_text(text: str, file: str = "<policy>") -> Policy:
    """Load and check policy text; ``file`` names it in problems."""
    if len(text) > MAX_POLICY_BYTES:
        problem = PolicyProblem(file, None, "(file)", f"larger than {MAX_POLICY_BYTES} bytes")
        raise PolicyError([problem])
    data, lines = _compose(text, file)
    if not isinstance(data, dict):
        raise PolicyError([PolicyProblem(file, 1, "(top)", "the policy must be a YAML mapping")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_shape_problems(exc, lines, file)) from None
    problems = _reference_problems(policy, lines, file)
    if problems:
        raise PolicyError(problems)
    return policy


def lint_policy(policy: Policy) -> list[str]:
    """Warnings that do not refuse the file but that a privacy officer should fix."""
    warnings: list[str] = []
    for rid, r in policy.recipients.items():
        if r.country is None:
            warnings.append(f"recipients.{rid}: no country; taken as JP (required from v1.1)")
        if r.equivalent_system and not policy.abroad(r):
            warnings.append(
                f"recipients.{rid}: equivalent_system applies only to recipients abroad"
            )
        if r.example:
            warnings.append(f"recipients.{rid}: an example entry; replace it with a real one")
        if r.kind is RecipientKind.OUTSOURCER:
            if not r.agreements:
                warnings.append(f"recipients.{rid}: outsourcer without a confidentiality agreement")
            if r.supervision is None:
                warnings.append(f"recipients.{rid}: outsourcer without supervision")
        if r.kind is RecipientKind.AFFILIATE and r.announcement is None:
            warnings.append(f"recipients.{rid}: affiliate without a public announcement (Art. 7)")
        if r.kind is RecipientKind.AD_PROVIDER and r.conditions is None:
            warnings.append(f"recipients.{rid}: ad provider without conditions (Art. 10 (4))")
    return warnings


# -- pass 1: YAML with line numbers ------------------------------------------------------------


#: Policies nest about six levels deep; YAML's composer recurses once per level.
MAX_POLICY_DEPTH = 32
_TOO_DEEP = f"nested more than {MAX_POLICY_DEPTH} levels deep: not a policy"
#: What libyaml's scanner says of a flow collection nested past its own limit.
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


def _plain_only(text: str, file: str) -> None:
    """Refuse the first anchor or alias, and nesting deeper than :data:`MAX_POLICY_DEPTH`,
    reading the file's events once (nothing is built)."""
    depth = 0
    for event in yaml.parse(text, Loader=_PARSER):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_POLICY_DEPTH:
                raise PolicyError([PolicyProblem(file, line, "(yaml)", _TOO_DEEP)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            continue
        what = f"alias *{anchor}" if isinstance(event, yaml.AliasEvent) else f"anchor &{anchor}"
        message = f"{what}: policy files take no anchors or aliases"
        raise PolicyError([PolicyProblem(file, line, "(yaml)", message)])


def _compose(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML into plain data plus the 1-based line of every key and list item."""
    try:
        _plain_only(text, file)
        root = yaml.compose(text, Loader=_PARSER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        message = f"not valid YAML: {problem}"
        if problem == _LIBYAML_TOO_DEEP:
            # libyaml's scanner reads a flow collection ahead of the events, and stops
            # at its own limit (1,000 levels) before _plain_only sees the 33rd.
            message = _TOO_DEEP
        raise PolicyError([PolicyProblem(file, line, "(yaml)", message)]) from None
    if root is None:
        raise PolicyError([PolicyProblem(file, 1, "(top)", "the file is empty")])
    lines: dict[Path_, int] = {}
    problems: list[PolicyProblem] = []
    constructor = yaml.SafeLoader("")

    def report(node: yaml.Node, path: Path_, message: str) -> None:
        problems.append(PolicyProblem(file, node.start_mark.line + 1, _dotted(path), message))

    def scalar(node: yaml.Node, path: Path_, what: str) -> Any:
        """The node's value, or :data:`_BAD` with a problem naming its kind (never the
        value)."""
        try:
            value = constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError):
            kind = _TAG_KINDS.get(str(node.tag).rsplit(":", 1)[-1], "value")
            report(node, path, f"not a valid {kind}{what}")
            return _BAD
        if isinstance(value, str):
            # A block scalar (| or >) ends with the line feed YAML's syntax puts there.
            text = value.rstrip("\n") if getattr(node, "style", None) in ("|", ">") else value
            hidden = first_hidden(text)
            if hidden is not None:
                report(node, path, f"{_HIDDEN_TEXT}{what} ({codepoint(hidden)}): {_HIDDEN_WHY}")
                return _BAD
        return value

    def build(node: yaml.Node, path: Path_) -> Any:
        lines.setdefault(path, node.start_mark.line + 1)
        if node.tag not in _PLAIN_TAGS:
            report(
                node,
                path,
                f"tag {node.tag!r} would construct an object; policy files are plain YAML",
            )
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag not in _PLAIN_TAGS:
                    build(key_node, path)  # refused there
                    continue
                key = scalar(key_node, path, " in a key")
                if key is _BAD:
                    continue
                if not isinstance(key, str | int):
                    key = str(key)
                sub = (*path, key)
                if key in out:
                    report(key_node, sub, "duplicate key")
                lines[sub] = key_node.start_mark.line + 1
                out[key] = build(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = scalar(node, path, "")
        return None if value is _BAD else value

    data = build(root, ())
    if problems:
        raise PolicyError(problems)
    return data, lines


#: What a plain tag reads, for a problem that must not repeat the value it could not read.
_TAG_KINDS = {
    "map": "mapping",
    "seq": "list",
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "null": "null",
    "timestamp": "date or time",
}
_HIDDEN_TEXT = "a control or format character"
#: What :func:`_compose` builds in place of a scalar it refused (and reported).
_BAD = object()
_HIDDEN_WHY = "text here must be printable (no tabs, line breaks, bidi or zero-width characters)"


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _line(lines: dict[Path_, int], path: Path_) -> int | None:
    # The deepest known prefix: a missing key is reported at its parent's line.
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


# -- pass 2: shape ------------------------------------------------------------------------------


def _shape_problems(
    exc: ValidationError, lines: dict[Path_, int], file: str, *, show_values: bool = True
) -> list[PolicyProblem]:
    """One problem per validation error. ``show_values=False`` (routes files, whose values
    may be tokens) names what was given by its kind, ``(got a string)``, never itself."""
    problems = []
    for err in exc.errors(include_url=False):
        path: Path_ = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        etype = err["type"]
        if etype == "extra_forbidden":
            message = "unknown key"
        elif etype == "missing":
            message = "required key is missing"
        else:
            got = err.get("input")
            if not show_values:
                shown = kind_of(got)
            elif isinstance(got, str | int | float | bool):
                shown = repr(got)
            else:
                shown = type(got).__name__
            if etype == "value_error":  # our own checks say what they got
                message = str(err["msg"]).removeprefix("Value error, ")
            else:
                message = f"{err['msg']} (got {shown[:60]})"
        problems.append(PolicyProblem(file, _line(lines, path), _dotted(path), message))
    problems.sort(key=lambda p: p.line or 0)
    return problems


def kind_of(value: Any) -> str:
    """What a YAML value is, in words that do not repeat it: ``a string``, ``a list``...

    >>> kind_of("hunter2"), kind_of([1]), kind_of(None)
    ('a string', 'a list', 'null')
    """
    if value is None:
        return "null"
    for kinds, word in _KINDS:
        if isinstance(value, kinds):
            return word
    return f"a {type(value).__name__}"


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (datetime, "a date and time"),
    (date, "a date"),
    (list, "a list"),
    (dict, "a mapping"),
)


# -- pass 3: references -------------------------------------------------------------------------


def _reference_problems(policy: Policy, lines: dict[Path_, int], file: str) -> list[PolicyProblem]:
    problems: list[PolicyProblem] = []

    def report(path: Path_, message: str) -> None:
        problems.append(PolicyProblem(file, _line(lines, path), _dotted(path), message))

    def categories(entries: list[str], path: Path_) -> None:
        for i, entry in enumerate(entries):
            if not policy.expand(entry):
                report((*path, i), f"unknown category or prefix {entry!r}")

    def purposes(entries: list[str], path: Path_) -> None:
        for i, entry in enumerate(entries):
            if entry not in policy.purposes:
                report((*path, i), f"unknown purpose {entry!r}")

    for pid, purpose in policy.purposes.items():
        categories(purpose.categories, ("purposes", pid, "categories"))
    for entry in policy.retention_days:
        if not policy.expand(entry):
            report(("retention_days", entry), f"unknown category or prefix {entry!r}")
    for sid in policy.systems:
        if sid in policy.recipients:
            report(("systems", sid), f"{sid!r} is also a recipient; an id is one or the other")
    for rid, r in policy.recipients.items():
        base: Path_ = ("recipients", rid)
        for i, agreement in enumerate(r.agreements):
            categories(agreement.categories, (*base, "agreements", i, "categories"))
            purposes(agreement.purposes, (*base, "agreements", i, "purposes"))
            if agreement.expires_on is not None and agreement.expires_on < agreement.signed_on:
                report((*base, "agreements", i, "expires_on"), "expires before it is signed")
        if r.announcement is not None:
            if r.kind is not RecipientKind.AFFILIATE:
                report((*base, "announcement"), f"only affiliates are announced, not {r.kind}")
            categories(r.announcement.categories, (*base, "announcement", "categories"))
            purposes(r.announcement.purposes, (*base, "announcement", "purposes"))
        if r.conditions is not None:
            purposes(r.conditions.use_limited_to, (*base, "conditions", "use_limited_to"))
        for i, onward in enumerate(r.onward):
            if onward not in policy.recipients:
                report((*base, "onward", i), f"unknown recipient {onward!r}")
            elif onward == rid:
                report((*base, "onward", i), "a recipient cannot pass data on to itself")
    problems.sort(key=lambda p: p.line or 0)
    return problems
