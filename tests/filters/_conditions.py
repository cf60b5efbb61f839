"""The records and policy of the conditions differential (``where:`` in list filters), shared by
the plain SQL, SQLAlchemy and Django renderers' tests: every record attribute NULL somewhere,
numbers on both sides of each bound, owners NULL and empty."""

from __future__ import annotations

import itertools
from typing import Any

from salesauthz import Record

DOCUMENT: dict[str, Any] = {
    "domain": "acme",
    "resources": {"customer": {"actions": ["read", "export", "claim", "update"],
                               "attributes": {"region": "str", "amount": "int", "pool": "str",
                                              "customer_id": "str", "score": "float"}}},
    "departments": {"sales": {}, "east": {"parent": "sales"}, "west": {"parent": "sales"}},
    "roles": {
        "territory_rep": {"permissions": [
            {"scope": "own", "customer": ["read", "update"]},
            {"scope": "all", "where": {"region": {"in": "account.territories"}},
             "customer": ["read"]},
            {"scope": "team", "where": {"amount": {"le": 100000, "gt": 0}, "region": "East"},
             "customer": ["export"]},
            {"scope": "all", "where": {"owner": None, "pool": "account.pool"},
             "customer": ["claim"]},
            {"scope": "all", "where": {"score": {"ge": 2.5}, "owner": {"null": False}},
             "customer": ["update"]},
            {"scope": "all", "where": {"pool": {"null": False}, "amount": {"lt": 0}},
             "customer": ["claim"]},
        ]},
        "portal": {"permissions": [
            {"scope": "all", "where": {"customer_id": "account.customer_id"},
             "customer": ["read"]},
            {"scope": "all", "where": {"customer_id": {"null": True}, "region": "West"},
             "customer": ["export"]}]},
        "manager": {"permissions": [{"scope": "department_tree", "customer": ["read", "export"]}]},
    },
    "accounts": {
        "rep_e": {"department": "east", "roles": ["territory_rep"],
                  "attributes": {"territories": ["East", "North"], "pool": "p1"}},
        "rep_w": {"department": "west", "roles": ["territory_rep"],
                  "attributes": {"territories": "West"}},
        "rep_none": {"department": "east", "roles": ["territory_rep"]},
        "guest": {"roles": ["portal"], "attributes": {"customer_id": "c-17"}},
        "boss_w": {"department": "west", "roles": ["manager", "territory_rep"],
                   "attributes": {"territories": []}},
    },
}
REGIONS = ["East", "West", "North", "east", None]
AMOUNTS = [None, -5, 0, 100, 100000, 100001, 99999.5]
OWNERS = [None, "", "rep_e", "rep_w", "x"]


def rows() -> list[tuple[Any, ...]]:
    found = []
    for n, (region, amount, owner) in enumerate(itertools.product(REGIONS, AMOUNTS, OWNERS)):
        department = [None, "east", "west", "sales"][n % 4]
        pool = [None, "p1", "p2"][n % 3]
        customer_id = [None, "c-17", "c-18"][n % 3]
        score = [None, 2.5, 1, 3][n % 4]
        found.append((n, owner, department, region, amount, pool, customer_id, score))
    return found


COLUMNS = ("id", "owner", "department", "region", "amount", "pool", "customer_id", "score")
ATTRIBUTES = {"region": "c.region", "amount": "c.amount", "pool": "c.pool",
              "customer_id": "c.customer_id", "score": "c.score"}


def record_of(row: tuple[Any, ...]) -> Record:
    values = dict(zip(COLUMNS, row, strict=True))
    attributes = {k: values[k] for k in ATTRIBUTES if values[k] is not None}
    return Record("customer", owner=values["owner"], department=values["department"],
                  attributes=attributes)
