"""Records for the differential tests: every owner × department combination of an organisation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from hypothesis import strategies as st

from salesauthz import Authorizer, Record
from tests.strategies import Organisation

ACTIONS = ["read", "update", "export", "approve", "manage", "frob"]
TYPES = ["customer", "order", "account"]


class Row(NamedTuple):
    id: int
    tenant: str
    owner: str | None
    department: str | None


class Query(NamedTuple):
    domain: str
    account: str
    action: str
    type: str


def rows_of(org: Organisation) -> list[Row]:
    """Every (owner, department) pair of each domain, plus unknown, NULL and empty names."""
    rows: list[Row] = []
    for domain in org.domains:
        owners: list[str | None] = [*org.accounts(domain), None, "", "ghost"]
        departments: list[str | None] = [*org.departments(domain), None, "", "d:nowhere"]
        for owner in owners:
            for department in departments:
                rows.append(Row(len(rows) + 1, domain, owner, department))
    return rows


@st.composite
def queries(draw: st.DrawFn, org: Organisation) -> list[Query]:
    """One drawn action and type for every account (and a ghost) of every domain."""
    chosen: list[Query] = []
    for domain in org.domains:
        for account in [*org.accounts(domain), "ghost"]:
            chosen.append(Query(domain, account, draw(st.sampled_from(ACTIONS)),
                                draw(st.sampled_from(TYPES))))
    return chosen


def allowed_ids(authz: Authorizer, query: Query, rows: Iterable[Row]) -> set[int]:
    """The rows ``check`` allows: the answer every rendered filter must reproduce."""
    return {
        row.id
        for row in rows
        if row.tenant == query.domain
        and authz.check(query.account, query.action,
                        Record(query.type, owner=row.owner, department=row.department),
                        domain=query.domain)
    }
