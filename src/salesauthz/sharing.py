"""Sharing is itself authorized: may this account put this share on this record?

Shares are data of the record (the CRM stores them, salesauthz decides with them), so adding one
is not an administrative change of the rules: it is a check the CRM makes before it stores the
share. A share is allowed only when

1. its level is declared for the record's type (the policy's ``sharing`` section) — an unknown
   level is a deny, never an error;
2. it names exactly one account or department, and that account or department exists in the
   domain;
3. the actor may do ``share`` on the record, **and** every action of the level on the record:
   nobody hands out through a share what they could not do themselves ("you cannot grant what
   you do not hold", on one record).

Every step asks :meth:`~salesauthz.Authorizer.check` (or, for the explanation,
:meth:`~salesauthz.Authorizer.explain`), so the engine that decides every other check decides
this one too, with the record's current shares, the parent ceiling and expiry included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .values import Decision, Record, Share

if TYPE_CHECKING:
    from ._engine import Snapshot

__all__ = ["ShareAccess"]


class _Decides(Protocol):
    def check(self, account: str, action: str, record: Record, *, domain: str) -> bool: ...

    def explain(self, account: str, action: str, record: Record, *, domain: str) -> Decision: ...

    def _snapshot(self, domain: str) -> Snapshot | None: ...


class ShareAccess:
    """The sharing methods of :class:`~salesauthz.Authorizer` (see the module documentation)."""

    def check_share(self: _Decides, actor: str, record: Record, share: Share, *, domain: str) -> bool:
        """May ``actor`` add ``share`` to ``record``? Never raises: anything unknown is a deny."""
        try:
            actions, _ = _level_actions(self._snapshot(domain), record, share)
            if actions is None:
                return False
            return all(self.check(actor, action, record, domain=domain)
                       for action in ("share", *actions))
        except Exception:  # fail closed, as check does (it logs its own failures)
            return False

    def explain_share(self: _Decides, actor: str, record: Record, share: Share, *,
                      domain: str) -> Decision:
        """The decision :meth:`check_share` makes, with why: ``action`` is ``"share"``;
        ``steps`` say which actions were asked; on a deny, ``reason`` names the first that
        failed (with the engine's explanation in ``steps``)."""
        actions, problem = _level_actions(self._snapshot(domain), record, share)
        if actions is None:
            return Decision(False, problem, actor, "share", record, domain)
        steps: list[str] = []
        for action in ("share", *actions):
            decision = self.explain(actor, action, record, domain=domain)
            if not decision.allowed:
                why = ("may not share this record" if action == "share" else
                       f"may not {action} this record, and level {share.level} includes {action}")
                return Decision(False, f"{actor} {why}: {decision.reason}", actor, "share", record,
                                domain, decision.rules, steps=(*steps, *decision.steps))
            steps.append(f"{actor} may {action} this record: {decision.reason}")
        target = (f"account {share.account}" if share.account is not None
                  else f"department {share.department}")
        return Decision(True, f"{actor} may share this {record.type} record {share.level} "
                              f"({', '.join(actions)}) with {target}", actor, "share", record, domain,
                        steps=tuple(steps))


def _level_actions(snapshot: Snapshot | None, record: Record,
                   share: Share) -> tuple[tuple[str, ...] | None, str]:
    """The actions of the share's level for the record's type (sorted), or ``None`` and why not."""
    if snapshot is None:
        return None, "unknown domain"
    if not isinstance(share, Share) or (share.account is None) == (share.department is None):
        return None, "a share names exactly one of an account and a department"
    if share.account is not None and snapshot.account(share.account).status is None:
        return None, f"the share names {share.account!r}, which is no account of this domain"
    if share.department is not None and share.department not in snapshot.department_parent:
        return None, f"the share names {share.department!r}, which is no department of this domain"
    actions = snapshot.sharing.get(record.type, {}).get(share.level)
    if not actions:
        declared = sorted(snapshot.sharing.get(record.type, {}))
        return None, (f"{share.level!r} is not a share level of {record.type!r} records"
                      + (f" (declared: {', '.join(declared)})" if declared else
                         " (the type declares no share levels)"))
    return tuple(sorted(actions)), ""
