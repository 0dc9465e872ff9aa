"""Policy rollout: the versions applied, which node agents acknowledged the active one, rollback. Pure:
no Ray, no clock (``now`` comes in).

The GlobalCoordinator keeps a history of policy versions (``PolicyEntry``: canonical YAML, source,
sha256, version, revision, newest last, at most ``HISTORY_LIMIT``); the newest is active. Applying a
policy appends a version with the next revision (applying the active one again changes nothing);
rolling back drops the newest and makes the previous one active again. Either way every agent must
acknowledge the new active version: an agent acknowledges by returning the policy's sha256 from
``set_policy`` or by reporting it in its snapshot (an agent restarted since catches up that way), and
the coordinator pushes the policy again to every agent that has done neither (``needs_push``). A
version is never half-applied: ``acked``/``missing`` say which agents govern with it.

The history is the part of the GlobalCoordinator's checkpoint that lets a restarted coordinator serve
the same version (``PolicyEntry.to_dict`` is the checkpoint's JSON).

Signed changes. A version applied from a signed bundle (``policies.signing``) records the ids of the
trusted keys that signed it (``signed_by``) and the bundle's ``sequence``; ``highest_sequence`` is the
highest sequence ever applied (kept across rollbacks and restarts), below which a bundle is refused
unless it is a signed rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentic_ray.policies import Policy, parse_policy

__all__ = ["HISTORY_LIMIT", "PolicyEntry", "PolicyRollout"]

HISTORY_LIMIT = 20
"""Policy versions kept for rollback (and in the checkpoint)."""


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One applied policy version: its canonical YAML ``text`` and where it came from."""

    text: str
    source: str
    sha256: str
    version: str
    name: str
    revision: int
    applied_at: float
    signed_by: tuple[str, ...] = ()  # trusted key ids of a signed bundle (empty: applied unsigned)
    sequence: int | None = None  # the signed bundle's sequence

    @classmethod
    def of(
        cls,
        policy: Policy,
        revision: int,
        source: str | None,
        now: float,
        signed_by: tuple[str, ...] = (),
        sequence: int | None = None,
    ) -> PolicyEntry:
        """The entry of a compiled ``policy`` applied at ``now`` as ``revision``."""
        return cls(
            text=policy.to_yaml(),
            source=source or policy.source or "<policy>",
            sha256=policy.sha256,
            version=policy.version,
            name=policy.name,
            revision=revision,
            applied_at=now,
            signed_by=tuple(signed_by),
            sequence=sequence,
        )

    def compile(self) -> Policy:
        """The compiled policy of this entry."""
        return parse_policy(self.text, self.source)

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's JSON form."""
        return {
            "text": self.text,
            "source": self.source,
            "sha256": self.sha256,
            "version": self.version,
            "name": self.name,
            "revision": self.revision,
            "applied_at": self.applied_at,
            "signed_by": list(self.signed_by),
            "sequence": self.sequence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyEntry:
        """Inverse of ``to_dict``; ``KeyError`` names a missing key."""
        return cls(
            text=str(data["text"]),
            source=str(data["source"]),
            sha256=str(data["sha256"]),
            version=str(data["version"]),
            name=str(data["name"]),
            revision=int(data["revision"]),
            applied_at=float(data.get("applied_at", 0.0)),
            signed_by=tuple(str(k) for k in data.get("signed_by") or ()),
            sequence=int(data["sequence"]) if data.get("sequence") is not None else None,
        )


class PolicyRollout:
    """The policy history, the active compiled policy and the acknowledgements of it per node."""

    def __init__(
        self, history: Sequence[PolicyEntry], policy: Policy | None = None, highest_sequence: int | None = None
    ) -> None:
        """``history`` oldest first (at least one entry); ``policy`` the newest compiled, when the caller
        has it (else it is compiled from the entry's text); ``highest_sequence``: the highest signed
        sequence applied before (a checkpoint's), at least that of any entry."""
        if not history:
            raise ValueError("history: needs at least one policy version")
        self.history: list[PolicyEntry] = list(history)[-HISTORY_LIMIT:]
        self.policy: Policy = policy if policy is not None else self.history[-1].compile()
        self.acked: dict[str, str] = {}
        sequences = [e.sequence for e in self.history if e.sequence is not None]
        if highest_sequence is not None:
            sequences.append(highest_sequence)
        self.highest_sequence: int | None = max(sequences) if sequences else None

    @classmethod
    def first(cls, policy: Policy, source: str, now: float) -> PolicyRollout:
        """A rollout whose only version is ``policy`` (revision 1)."""
        return cls([PolicyEntry.of(policy, 1, source, now)], policy)

    @property
    def active(self) -> PolicyEntry:
        return self.history[-1]

    def apply(
        self,
        policy: Policy,
        source: str | None,
        now: float,
        signed_by: tuple[str, ...] = (),
        sequence: int | None = None,
    ) -> PolicyEntry | None:
        """Make ``policy`` active as the next revision; ``None`` (nothing changed) when it is already.
        ``signed_by`` / ``sequence``: of the signed bundle it came from (recorded; raises
        ``highest_sequence``)."""
        if sequence is not None and (self.highest_sequence is None or sequence > self.highest_sequence):
            self.highest_sequence = sequence
        if policy.sha256 == self.policy.sha256:
            return None
        entry = PolicyEntry.of(policy, self.active.revision + 1, source, now, signed_by, sequence)
        self.history.append(entry)
        del self.history[:-HISTORY_LIMIT]
        self.policy = policy
        self.acked = {}
        return entry

    def rollback(self) -> PolicyEntry:
        """Drop the newest version; the previous one is active again and returned. ``ValueError`` when
        there is no previous version."""
        if len(self.history) < 2:
            raise ValueError("rollback_policy: there is no previous policy version")
        self.history.pop()
        self.policy = self.active.compile()
        self.acked = {}
        return self.active

    def acknowledge(self, node_id: str, sha256: str | None) -> bool:
        """Record that ``node_id`` governs with ``sha256``; True (and recorded) when that is the active one."""
        if sha256 != self.policy.sha256:
            return False
        self.acked[node_id] = sha256
        return True

    def forget(self, node_id: str) -> None:
        """Drop the acknowledgement of an agent that left."""
        self.acked.pop(node_id, None)

    def needs_push(self, reported: Mapping[str, str | None]) -> list[str]:
        """Given the policy sha256 each agent reported last (``None`` before its first report), record
        those that report the active one as acknowledged and return the others: they get the policy (again)."""
        return [node_id for node_id, sha in reported.items() if not self.acknowledge(node_id, sha)]

    def acks(self, agents: Iterable[str]) -> tuple[list[str], list[str]]:
        """``(acked, missing)``: sorted node ids that acknowledged the active policy, and agents that did not."""
        acked = sorted(self.acked)
        return acked, sorted(set(agents) - set(self.acked))

    def info(self) -> dict[str, Any]:
        """``{name, version, sha256, revision, source}`` of the active policy (JSON-able)."""
        top = self.active
        return {
            "name": self.policy.name,
            "version": self.policy.version,
            "sha256": self.policy.sha256,
            "revision": top.revision,
            "source": top.source,
        }
