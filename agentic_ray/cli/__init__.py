"""The ``agentic-ray`` command.

Each sub-command lives in its own module under ``agentic_ray.cli`` and exposes
``register(subparsers) -> None``, which adds its parser(s) with ``set_defaults(func=handler)``.
A handler takes the parsed ``argparse.Namespace`` and returns an exit code.

Exit codes: 0 success, 1 the command ran and found a failure (e.g. ``trace verify`` found tampering),
2 a usage error or invalid input (printed as one clear message per problem, never a traceback).
Heavy imports (Ray, Serve) happen inside handlers so ``agentic-ray --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agentic_ray._version import __version__
from agentic_ray.errors import AgenticRayError, ConfigValidationError

__all__ = ["UsageError", "main"]

# Sub-command modules, in the order they appear in --help.
_COMMAND_MODULES = (
    "agentic_ray.cli.policy_cmd",
    "agentic_ray.cli.sim_cmd",
    "agentic_ray.cli.demo_cmd",
    "agentic_ray.cli.status_cmd",
    "agentic_ray.cli.trace_cmd",
    "agentic_ray.cli.apikey_cmd",
)


class UsageError(AgenticRayError):
    """A mistake in how the command was called; printed without a traceback, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = _Parser(
        prog="agentic-ray",
        description="Latency budgets, deadline-aware routing and tiered admission on Ray and Ray Serve.",
    )
    parser.add_argument("--version", action="version", version=f"agentic-ray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a sub-command not built yet in this checkout
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except ConfigValidationError as exc:
        for problem in exc.problems:
            print(problem.format(), file=sys.stderr)
        return 2
    except (UsageError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"agentic-ray: error: {exc}", file=sys.stderr)
        return 2
    except AgenticRayError as exc:
        print(f"agentic-ray: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("agentic-ray: interrupted", file=sys.stderr)
        return 130
