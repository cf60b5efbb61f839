"""Records with shares for the differential tests: every owner × department combination of an
organisation with the record model, each record carrying drawn shares (stored in a share table)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, NamedTuple

from hypothesis import strategies as st

from salesauthz import Authorizer, Record, Share
from salesauthz.models import DomainDocument, compile_document
from tests.strategies import Organisation, organisations, record_shares

from ._records import ACTIONS, TYPES, Query

SHARED_ACTIONS = {"customer": ["read", "update", "export", "*"], "order": ["read", "approve", "*"]}


class SharedRow(NamedTuple):
    id: int
    tenant: str
    owner: str | None
    department: str | None
    shares: tuple[Share, ...]

    def record(self) -> dict[str, object]:
        return {"id": self.id, "tenant": self.tenant, "owner": self.owner,
                "department": self.department}


class ShareRow(NamedTuple):
    record_id: int
    account: str | None
    department: str | None
    level: str


@st.composite
def shared_organisations(draw: st.DrawFn) -> Organisation:
    """``organisations(record_model=True)`` where the ``shared`` scope is common: a few roles
    and accounts get an extra ``customer:…@shared`` permission, so that sub-accounts with a shared
    right capped by a parent's team (guarded terms with a base) and shared rights capped by shared
    rights (two guards in one term) come up often."""
    org = draw(organisations(record_model=True))
    documents: list[dict[str, Any]] = copy.deepcopy(org.documents)
    for document in documents:
        for role in draw(st.lists(st.sampled_from(sorted(document["roles"])), unique=True,
                                  max_size=2)):
            document["roles"][role]["permissions"].append(draw(_shared_permission()))
        for account in draw(st.lists(st.sampled_from(sorted(document["accounts"])), unique=True,
                                     max_size=2)):
            document["accounts"][account].setdefault("grants", []).append(
                draw(_shared_permission()))
        for spec in document["accounts"].values():
            parent = spec.get("parent")
            if parent is None or not draw(st.booleans()):
                continue
            # The sub-account shares a right with its parent, who holds the same actions
            # shared (two guards) or in a plain scope (a guarded term with that base).
            permission = draw(_shared_permission())
            spec.setdefault("grants", []).append(permission)
            scope = draw(st.sampled_from(["shared", "own", "team", "department_tree",
                                          "subordinates", "subordinate_tree"]))
            document["accounts"][parent].setdefault("grants", []).append(
                {**permission, "scope": scope})
    rules = [rule for document in documents
             for rule in compile_document(DomainDocument.model_validate(document))]
    return Organisation(documents, rules)


@st.composite
def _shared_permission(draw: st.DrawFn) -> dict[str, Any]:
    types = draw(st.lists(st.sampled_from(["customer", "order"]), min_size=1, unique=True))
    return {"scope": "shared",
            **{typ: draw(st.lists(st.sampled_from(SHARED_ACTIONS[typ]), min_size=1, max_size=2,
                                  unique=True)) for typ in types}}


@st.composite
def shared_queries(draw: st.DrawFn, org: Organisation) -> list[Query]:
    """One action and type for every account (and a ghost) of every domain: mostly one the
    account holds in some scope, otherwise any; plus one the account was granted ``shared``
    (where sub-accounts meet their parents' ceilings)."""
    chosen: list[Query] = []
    for domain in org.domains:
        for account, spec in org.document(domain)["accounts"].items():
            shared = [(typ, action) for grant in spec.get("grants", []) if grant["scope"] == "shared"
                      for typ, actions in grant.items() if typ in SHARED_ACTIONS
                      for action in actions]
            if shared:
                typ, action = draw(st.sampled_from(shared))
                chosen.append(Query(domain, account, "read" if action == "*" else action, typ))
        for account in [*org.accounts(domain), "ghost"]:
            held = org.held_keys(domain, account) if account != "ghost" else []
            if held and draw(st.integers(0, 3)) != 0:
                typ, action = draw(st.sampled_from(held))
            else:
                typ, action = draw(st.sampled_from(TYPES)), draw(st.sampled_from(ACTIONS))
            chosen.append(Query(domain, account, action, typ))
    return chosen


@st.composite
def shared_rows(draw: st.DrawFn, org: Organisation) -> list[SharedRow]:
    """Every (owner, department) pair of each domain, plus unknown, NULL and empty names; each
    record's shares are drawn as if for one of the domain's accounts (``record_shares`` names
    that account, its departments and those above them more often than chance would)."""
    rows: list[SharedRow] = []
    for domain in org.domains:
        accounts = org.accounts(domain)
        owners: list[str | None] = [*accounts, None, "ghost"]
        departments: list[str | None] = [*org.departments(domain), None, "", "d:nowhere"]
        for owner in owners:
            for department in departments:
                asker = draw(st.sampled_from(accounts))
                shares = draw(record_shares(org, domain, asker))
                rows.append(SharedRow(len(rows) + 1, domain, owner, department, shares))
    return rows


def share_rows(rows: Iterable[SharedRow]) -> list[ShareRow]:
    return [ShareRow(row.id, share.account, share.department, share.level)
            for row in rows for share in row.shares]


def allowed_shared_ids(authz: Authorizer, query: Query, rows: Iterable[SharedRow]) -> set[int]:
    """The rows ``check`` allows, shares included: what every rendered filter must reproduce."""
    return {
        row.id
        for row in rows
        if row.tenant == query.domain
        and authz.check(query.account, query.action,
                        Record(query.type, owner=row.owner, department=row.department,
                               shares=row.shares),
                        domain=query.domain)
    }
