"""YAML with line numbers: parse a document and index each field path to its 1-based line.

``yaml.compose`` keeps every node's start mark; walking the node graph gives ``path -> line``, used to
point validation problems at the right line. A YAML syntax error becomes one ``Problem`` at its mark.
"""

from __future__ import annotations

from typing import Any

import yaml

from agentic_ray.errors import Problem

__all__ = ["PathKey", "format_path", "line_for", "load_yaml_with_lines"]

PathKey = tuple[str | int, ...]


def format_path(path: PathKey) -> str:
    """``("replicas", 0, "slots")`` -> ``"replicas[0].slots"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


def load_yaml_with_lines(text: str, source: str) -> tuple[Any, dict[PathKey, int], list[Problem]]:
    """Parse ``text``; return ``(data, lines, problems)``. On a syntax error data is None, one problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
        return None, {}, [Problem("", reason, line, source)]
    lines: dict[PathKey, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines, []


def line_for(path: PathKey, lines: dict[PathKey, int]) -> int | None:
    """The line of ``path`` or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None
