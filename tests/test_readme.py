"""The README stays true: its policy example is valid, and it starts with the two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from agentic_ray.policies import parse_policy

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_policy_example_is_valid():
    text = README.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no YAML example"
    policy = parse_policy(blocks[0], source="README.md")
    assert set(policy.classes) == {"critical", "standard", "sheddable"}


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert "agentic-ray demo" in commands[0]
    assert "pytest" in commands[1] and ".[dev]" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pytest" in ci and ".[dev" in ci
