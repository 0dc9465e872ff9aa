"""Reading a policy file: bytes -> YAML (with line numbers) -> schema -> semantic checks -> ``Policy``.

Each stage collects every problem it can find and raises one ``PolicyValidationError`` listing them,
each with its dotted field path and, where known, the YAML line. Line numbers come from composing the
YAML node graph first (``yaml.compose`` records each node's start mark) and indexing it by field path;
pydantic's error ``loc`` tuples are then walked against the data to find the path and its line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from agentic_ray.errors import PolicyValidationError, Problem
from agentic_ray.policies.schema import PolicySpec
from agentic_ray.policies.semantics import check_references_raw, check_semantics

if TYPE_CHECKING:
    from agentic_ray.policies.compiler import Policy

__all__ = ["MAX_POLICY_BYTES", "format_path", "load_policy", "parse_policy", "parse_spec"]

MAX_POLICY_BYTES = 1024 * 1024

MAX_NODES = 200_000  # YAML nodes after alias expansion

PathKey = tuple[str | int, ...]


class _TooLarge(Exception):
    def __init__(self, path: PathKey, line: int) -> None:
        self.path, self.line = path, line


def format_path(path: PathKey) -> str:
    """``("rules", 3, "id")`` -> ``"rules[3].id"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class _LineIndex:
    """Field path -> 1-based YAML line, built from the composed node graph."""

    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}
        self.duplicates: list[tuple[PathKey, int]] = []
        self.visited = 0

    def walk(self, node: yaml.Node, path: PathKey) -> None:
        self.visited += 1
        if self.visited > MAX_NODES:  # aliases can make a small file expand exponentially
            raise _TooLarge(path, node.start_mark.line + 1)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*path, key)
                if key in seen:
                    self.duplicates.append((child, key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None


def _decode(data: bytes, source: str) -> str:
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyValidationError(
            [Problem("", f"file is {len(data)} bytes; the limit is {MAX_POLICY_BYTES} (1 MiB)", None, source)],
            source,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyValidationError(
            [Problem("", f"not UTF-8: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}", line, source)],
            source,
        ) from None


def _load_yaml(text: str, source: str) -> tuple[Any, _LineIndex]:
    if not text.strip():
        raise PolicyValidationError([Problem("", "empty document: expected a Policy mapping", 1, source)], source)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except RecursionError:
        raise PolicyValidationError([Problem("", "YAML nested too deeply", None, source)], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        msg = f"malformed YAML: {reason}" + (f" ({context})" if context else "")
        raise PolicyValidationError([Problem("", msg, line, source)], source) from None
    index = _LineIndex()
    if node is None or data is None:
        raise PolicyValidationError([Problem("", "empty document: expected a Policy mapping", 1, source)], source)
    try:
        index.walk(node, ())
    except _TooLarge as exc:
        reason = f"document expands to over {MAX_NODES} YAML nodes (aliases?)"
        raise PolicyValidationError([Problem("", reason, exc.line, source)], source) from None
    except RecursionError:
        raise PolicyValidationError([Problem("", "YAML nested too deeply", None, source)], source) from None
    if not isinstance(data, Mapping):
        raise PolicyValidationError(
            [Problem("", f"expected a mapping at the top level, got {type(data).__name__}", 1, source)], source
        )
    if index.duplicates:
        raise PolicyValidationError(
            [Problem(format_path(p), "duplicate key", line, source) for p, line in index.duplicates], source
        )
    return data, index


def _locate(loc: tuple[Any, ...], data: Any) -> PathKey:
    """Walk a pydantic ``loc`` against the data; drop union/validator tags that are not data keys."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        in_mapping = isinstance(current, Mapping) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_mapping or in_list:
            path.append(part)
            current = current[part]
        elif last and isinstance(part, (str, int)) and "[" not in str(part):
            path.append(part)  # a missing field: name it
            current = None
        # else: a tag such as 'function-before[...]' or 'list[str]' -> skip
    return tuple(path)


def _action_rule_id(path: PathKey, data: Any) -> str | None:
    """The id of the ``actions`` rule a problem's ``path`` lies in (``actions.rules[i]...``), if any."""
    if len(path) < 3 or path[:2] != ("actions", "rules") or not isinstance(path[2], int):
        return None
    try:
        rule_id = data["actions"]["rules"][path[2]].get("id")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return str(rule_id) if rule_id is not None else f"actions.rules[{path[2]}]"


def _schema_problems(exc: ValidationError, data: Any, index: _LineIndex, source: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        path = _locate(tuple(err["loc"]), data)
        reason = err["msg"].replace("valid tuple", "list").replace("valid dictionary", "mapping")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] == "missing":
            reason = "required field is missing"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
            reason = f"{reason} (got {err['input']!r})"
        rule_id = _action_rule_id(path, data)
        if rule_id is not None:  # an actions rule problem names its rule (unknown alert, scope, action)
            what = {"alert": "alert", "do": "action"}.get(str(path[-1]))
            if err["type"] == "literal_error" and what is not None:
                expected = err["msg"].replace("Input should be ", "")
                reason = f"unknown {what} {err.get('input')!r}; expected {expected}"
            elif err["type"] == "extra_forbidden" and len(path) > 3 and path[3] == "when":
                reason = "unknown scope; expected class, workflow, stage, deployment or zone"
            reason = f"rule {rule_id!r}: {reason}"
        key = (format_path(path), reason)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(format_path(path), reason, index.line_of(path), source))
    return problems


def _by_line(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


def parse_spec(text: str | bytes, source: str = "<string>") -> PolicySpec:
    """Validate a policy document (shape and meaning) and return its pydantic model.

    Raises ``PolicyValidationError`` listing every problem found.
    """
    if isinstance(text, bytes):
        text = _decode(text, source)
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyValidationError([Problem("", "document is over the 1 MiB limit", None, source)], source)
    data, index = _load_yaml(text, source)
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        problems = _schema_problems(exc, data, index, source)
        reported = {p.path for p in problems}
        for path, reason in check_references_raw(data):
            if format_path(path) not in reported:
                problems.append(Problem(format_path(path), reason, index.line_of(path), source))
        raise PolicyValidationError(_by_line(problems), source) from None
    problems = [
        Problem(format_path(path), reason, index.line_of(path), source) for path, reason in check_semantics(spec)
    ]
    if problems:
        raise PolicyValidationError(_by_line(problems), source)
    return spec


def parse_policy(text: str | bytes, source: str = "<string>") -> Policy:
    """Parse, validate and compile a policy document. Raises ``PolicyValidationError`` listing every problem."""
    from agentic_ray.policies.compiler import Policy

    return Policy(parse_spec(text, source), source=source)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read, validate and compile the policy file at ``path``.

    Size (1 MiB max), UTF-8, YAML, schema and semantic checks each raise ``PolicyValidationError`` with
    every problem found (field path, reason, YAML line). A missing file raises ``FileNotFoundError``.
    """
    p = Path(path)
    source = str(path)
    size = p.stat().st_size
    if size > MAX_POLICY_BYTES:
        raise PolicyValidationError(
            [Problem("", f"file is {size} bytes; the limit is {MAX_POLICY_BYTES} (1 MiB)", None, source)], source
        )
    return parse_policy(p.read_bytes(), source)
