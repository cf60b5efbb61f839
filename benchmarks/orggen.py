"""Synthetic CRM organisations for the benchmarks, built directly as salesauthz rule tuples.

Shape (per domain, i.e. per tenant): a vocabulary of 9 resource types (~40 actions), 12 roles
with inheritance chains (junior_rep -> senior_rep -> sales_manager -> regional_vp ...), each
with 4-20 permissions at realistic scopes, a department tree four levels deep
(company -> region -> area -> team), and accounts: a status, a department, one or two roles,
now and then a sub-account (an assistant under its manager) or a direct grant. Most rules are
about accounts, as in a real CRM (about 3.3 rules per account).

The generator uses no wildcards and no expiries, so that an ordinary Casbin RBAC-with-domains
model over the same ``p``/``g`` rules decides requests about the requesting account's own
records exactly as salesauthz does (see ``baseline_requests``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

Rule = tuple[str, ...]

VOCABULARY: dict[str, tuple[str, ...]] = {
    "customer": ("read", "create", "update", "delete", "export", "assign", "share", "note"),
    "lead": ("read", "create", "update", "delete", "assign"),
    "opportunity": ("read", "create", "update", "delete", "approve"),
    "order": ("read", "create", "update", "delete", "approve"),
    "contract": ("read", "create", "approve", "export"),
    "ticket": ("read", "create", "update", "close"),
    "product": ("read", "update"),
    "report": ("read", "export"),
    "account": ("manage",),
    "role": ("escalate",),
}

# role -> (inherited roles, [(type, actions, scope)])
ROLES: dict[str, tuple[tuple[str, ...], list[tuple[str, tuple[str, ...], str]]]] = {
    "junior_rep": ((), [
        ("customer", ("read", "create", "update", "note"), "own"),
        ("lead", ("read", "create", "update"), "own"),
        ("opportunity", ("read", "create", "update"), "own"),
        ("order", ("read", "create"), "own"),
        ("product", ("read",), "all"),
    ]),
    "senior_rep": (("junior_rep",), [
        ("customer", ("read",), "team"),
        ("customer", ("share", "export"), "own"),
        ("contract", ("read", "create"), "own"),
        ("order", ("update",), "own"),
    ]),
    "sales_manager": (("senior_rep",), [
        ("customer", ("read", "update", "assign", "export"), "department_tree"),
        ("lead", ("read", "assign"), "department_tree"),
        ("opportunity", ("read", "approve"), "department_tree"),
        ("order", ("read", "approve"), "department_tree"),
        ("account", ("manage",), "department_tree"),
        ("report", ("read",), "department_tree"),
    ]),
    "regional_vp": (("sales_manager",), [
        ("contract", ("read", "approve"), "department_tree"),
        ("report", ("export",), "department_tree"),
    ]),
    "sales_director": (("regional_vp",), [
        ("customer", ("read", "export"), "all"),
        ("report", ("read", "export"), "all"),
    ]),
    "sales_assistant": ((), [
        ("customer", ("read", "note"), "team"),
        ("order", ("read", "create"), "team"),
        ("lead", ("read",), "team"),
    ]),
    "customer_service": ((), [
        ("customer", ("read", "note"), "all"),
        ("ticket", ("read", "create", "update", "close"), "all"),
        ("order", ("read",), "all"),
    ]),
    "support_lead": (("customer_service",), [
        ("ticket", ("read",), "all"),
        ("report", ("read",), "department_tree"),
    ]),
    "sales_ops": ((), [
        ("customer", ("read", "assign", "delete"), "all"),
        ("lead", ("read", "assign", "delete"), "all"),
        ("product", ("read", "update"), "all"),
    ]),
    "analyst": ((), [
        ("report", ("read", "export"), "all"),
        ("customer", ("read",), "custom:region-0"),
        ("opportunity", ("read",), "custom:region-1"),
    ]),
    "finance": ((), [
        ("order", ("read", "approve", "delete"), "all"),
        ("contract", ("read", "approve", "export"), "all"),
    ]),
    "admin": ((), [
        (typ, actions, "all") for typ, actions in VOCABULARY.items()
    ]),
}

# How often an account gets each role (reps dominate a sales organisation).
ROLE_WEIGHTS: dict[str, int] = {
    "junior_rep": 50, "senior_rep": 20, "sales_manager": 6, "regional_vp": 1, "sales_director": 1,
    "sales_assistant": 8, "customer_service": 8, "support_lead": 1, "sales_ops": 2, "analyst": 1,
    "finance": 1, "admin": 1,
}

RULES_PER_ACCOUNT = 3.35  # p3 + g3 + ~1.2 g + ~0.05 g4 + ~0.05 p (measured on generated data)


@dataclass
class Organisation:
    rules: list[Rule]
    domains: list[str]
    # domain -> accounts with status active and no parent (their own-record decisions are
    # exactly the Casbin baseline's decisions)
    top_level_active: dict[str, list[str]] = field(default_factory=dict)
    accounts: dict[str, list[str]] = field(default_factory=dict)
    departments: dict[str, list[str]] = field(default_factory=dict)
    roles_of: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def domain_count(target_rules: int) -> int:
    """Several tenants; more tenants in bigger deployments."""
    if target_rules <= 2_000:
        return 2
    if target_rules <= 20_000:
        return 4
    if target_rules <= 200_000:
        return 8
    return 16


def generate(target_rules: int, seed: int = 7) -> Organisation:
    """An organisation of about ``target_rules`` rules (within a few per cent)."""
    rng = random.Random(seed)
    domains = [f"tenant-{i:02d}" for i in range(domain_count(target_rules))]
    org = Organisation([], domains)
    per_domain = target_rules // len(domains)
    role_names = list(ROLE_WEIGHTS)
    role_weights = [ROLE_WEIGHTS[r] for r in role_names]
    for domain in domains:
        fixed: list[Rule] = []
        for typ, actions in VOCABULARY.items():
            fixed.extend(("p2", domain, typ, act) for act in actions)
        for role, (parents, permissions) in ROLES.items():
            fixed.append(("p4", role, domain))
            fixed.extend(("g", role, parent, domain) for parent in parents)
            for typ, actions, scope in permissions:
                fixed.extend(("p", role, domain, typ, act, scope, "") for act in actions)
        # Department tree: company -> regions -> areas -> teams; ~1 team per 12 accounts.
        accounts_wanted = max(4, int((per_domain - len(fixed)) / (RULES_PER_ACCOUNT + 0.1)))
        teams_wanted = max(2, accounts_wanted // 12)
        regions = max(2, min(12, round(teams_wanted ** (1 / 3))))
        areas_per_region = max(1, min(12, round((teams_wanted / regions) ** 0.5)))
        teams_per_area = max(1, teams_wanted // (regions * areas_per_region))
        departments = [("company", "")]
        teams: list[str] = []
        for r in range(regions):
            region = f"region-{r}"
            departments.append((region, "company"))
            for a in range(areas_per_region):
                area = f"{region}.area-{a}"
                departments.append((area, region))
                for t in range(teams_per_area):
                    team = f"{area}.team-{t}"
                    departments.append((team, area))
                    teams.append(team)
        fixed.extend(("g2", dept, parent, domain) for dept, parent in departments)
        org.rules.extend(fixed)
        org.departments[domain] = [d for d, _ in departments]

        budget = per_domain - len(fixed)
        accounts: list[str] = []
        top_level: list[str] = []
        count = 0
        index = 0
        while count < budget:
            name = f"u{index:07d}"
            index += 1
            roll = rng.random()
            status = "active" if roll < 0.95 else ("frozen" if roll < 0.98 else "deactivated")
            team = rng.choice(teams)
            roles = {rng.choices(role_names, role_weights)[0]}
            if rng.random() < 0.2:
                roles.add(rng.choices(role_names, role_weights)[0])
            rules: list[Rule] = [("p3", name, domain, status), ("g3", name, team, domain)]
            rules.extend(("g", name, role, domain) for role in sorted(roles))
            parent = None
            if accounts and rng.random() < 0.05:
                parent = accounts[-rng.randint(1, min(20, len(accounts)))]
                rules.append(("g4", name, parent, domain))
            if rng.random() < 0.05:
                typ = rng.choice(["customer", "lead", "order"])
                rules.append(("p", name, domain, typ, rng.choice(VOCABULARY[typ]), "own", ""))
            org.rules.extend(rules)
            count += len(rules)
            accounts.append(name)
            org.roles_of[(domain, name)] = sorted(roles)
            if status == "active" and parent is None:
                top_level.append(name)
        org.accounts[domain] = accounts
        org.top_level_active[domain] = top_level
    return org


RBAC_WITH_DOMAINS_MODEL = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act
"""
"""Casbin's documented RBAC-with-domains model: what the pycasbin baselines are asked."""


def baseline_rules(rules: list[Rule]) -> tuple[list[list[str]], list[list[str]]]:
    """The ``p`` (sub, dom, obj, act) and ``g`` (sub, role, dom) lines of the baseline model:
    the same role and permission rules, without salesauthz's scope/expiry columns."""
    p_lines = [[r[1], r[2], r[3], r[4]] for r in rules if r[0] == "p"]
    g_lines = [[r[1], r[2], r[3]] for r in rules if r[0] == "g"]
    return p_lines, g_lines
