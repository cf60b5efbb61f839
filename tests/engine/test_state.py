"""Incremental updates: after any sequence of changes, the cached decision path answers exactly as
an authorizer built from scratch over the same rules, and as Casbin's reference enforcer."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer, Record
from salesauthz import _engine as engine
from salesauthz._rules import Rule, format_expiry
from salesauthz.adapters.memory import MemoryAdapter
from salesauthz.reference import reference_enforcer, request
from tests.conftest import examples
from tests.strategies import (
    FIXED_NOW,
    RECORD_MODEL_SCOPES,
    RESOURCES,
    Organisation,
    organisations,
    requests,
)

STATUSES = ["active", "frozen", "deactivated"]
# Grant expiries fall between the clock's steps, so cached maps must expire on time.
MOMENTS = (FIXED_NOW + 10.0, FIXED_NOW + 20.0, FIXED_NOW + 30.0)


def _ancestors(links: dict[str, str], name: str) -> set[str]:
    seen: set[str] = set()
    while name in links and name not in seen:
        seen.add(name)
        name = links[name]
    return seen | {name}


def _role_reaches(rules: list[Rule], roles: set[str], start: str, target: str, domain: str) -> bool:
    """Whether role ``start`` inherits ``target`` (directly or not)."""
    parents: dict[str, set[str]] = {}
    for r in rules:
        if r[0] == "g" and r[3] == domain and r[1] in roles:
            parents.setdefault(r[1], set()).add(r[2])
    stack, seen = [start], {start}
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent == target:
                return True
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return start == target


@st.composite
def changes(draw: st.DrawFn, rules: list[Rule], domain: str,
            asked: tuple[list[str], list[str]] = ([], [])) -> tuple[list[Rule], list[Rule]]:
    """One valid batch of changes to ``domain``: ``(added, removed)``. ``asked`` are the accounts
    that ask and the owners asked about in the cached requests: reporting-line changes prefer
    them, so a stale superior's map would show."""
    accounts = [r[1] for r in rules if r[0] == "p3" and r[2] == domain]
    roles = {r[1] for r in rules if r[0] == "p4" and r[2] == domain}
    departments = {r[1]: r[2] for r in rules if r[0] == "g2" and r[3] == domain}
    kind = draw(st.sampled_from(["grant", "revoke", "assign", "unassign", "inherit", "status",
                                 "move", "parent", "department", "role", "vocabulary",
                                 "timed", "also_in", "reports_to", "sharing",
                                 "department_grant", "department_revoke"]))
    account = draw(st.sampled_from(accounts))
    if kind == "timed":  # assign a role until a moment (replacing a timed one), or end it
        timed: list[Rule] = [r for r in rules if r[0] == "p8" and r[1] == account and r[3] == domain]
        if len(timed) > 0 and draw(st.booleans()):
            return [], [draw(st.sampled_from(timed))]
        role = draw(st.sampled_from(sorted(roles)))
        if ("g", account, role, domain) in rules:
            return [], []
        until = format_expiry_at(draw(st.sampled_from([FIXED_NOW - 60.0, *MOMENTS])))
        return [("p8", account, role, domain, until)], [r for r in timed if r[2] == role]
    if kind == "also_in":
        current: list[Rule] = [r for r in rules if r[0] == "g5" and r[1] == account and r[3] == domain]
        if len(current) > 0 and draw(st.booleans()):
            return [], [draw(st.sampled_from(current))]
        if not departments:
            return [], []
        return [("g5", account, draw(st.sampled_from(sorted(departments))), domain)], []
    if kind == "reports_to":
        superiors = {r[1]: r[2] for r in rules if r[0] == "g6" and r[3] == domain}
        old_rules: list[Rule] = [("g6", account, superiors[account], domain)] \
            if account in superiors else []
        if draw(st.booleans()):
            return [], old_rules
        askers = [a for a in asked[0] if a in accounts]
        owners = [o for o in asked[1] if o in accounts]
        if len(owners) > 0 and draw(st.booleans()):
            account = draw(st.sampled_from(owners))
            old_rules = [("g6", account, superiors[account], domain)] if account in superiors else []
        use_askers = len(askers) > 0 and draw(st.booleans())
        candidate = draw(st.sampled_from(askers if use_askers else accounts))
        if account in _ancestors(superiors, candidate):  # would close a cycle (or self)
            return [], []
        return [("g6", account, candidate, domain)], old_rules
    if kind == "sharing":  # a share level gains or loses an action
        level: Rule = ("p7", domain, "customer", draw(st.sampled_from(["ro", "rw", "full"])),
                       draw(st.sampled_from(RESOURCES["customer"])))
        return ([], [level]) if level in rules else ([level], [])
    if kind == "grant":
        subject = draw(st.sampled_from([account, *sorted(roles)]))
        typ = draw(st.sampled_from([*RESOURCES, "*"]))
        pool = ["*", *sorted({a for acts in RESOURCES.values() for a in acts})] if typ == "*" \
            else ["*", *RESOURCES[typ]]
        scope = draw(st.sampled_from(RECORD_MODEL_SCOPES + [f"custom:{d}" for d in sorted(departments)]))
        expires = ""
        if subject not in roles and draw(st.booleans()):
            expires = format_expiry_at(draw(st.sampled_from([FIXED_NOW - 60.0, *MOMENTS])))
        return [("p", subject, domain, typ, draw(st.sampled_from(pool)), scope, expires)], []
    if kind == "department_grant" and departments:  # a grant to a department (its subtree)
        typ = draw(st.sampled_from([*RESOURCES, "*"]))
        scope = draw(st.sampled_from(RECORD_MODEL_SCOPES + [f"custom:{d}" for d in sorted(departments)]))
        expires = format_expiry_at(draw(st.sampled_from([FIXED_NOW - 60.0, *MOMENTS]))) \
            if draw(st.booleans()) else ""
        return [("p12", draw(st.sampled_from(sorted(departments))), domain, typ,
                 draw(st.sampled_from(["*", *RESOURCES.get(typ, ["read"])])), scope, expires)], []
    if kind == "department_revoke":
        granted = [r for r in rules if r[0] == "p12" and r[2] == domain]
        return ([], [draw(st.sampled_from(granted))]) if granted else ([], [])
    if kind == "revoke":
        held = [r for r in rules if r[0] == "p" and r[2] == domain]
        return ([], [draw(st.sampled_from(held))]) if held else ([], [])
    if kind == "assign":  # permanently (a timed assignment of the role ends)
        role = draw(st.sampled_from(sorted(roles)))
        ended: list[Rule] = [r for r in rules if r[0] == "p8" and r[1] == account and r[2] == role
                             and r[3] == domain]
        return [("g", account, role, domain)], ended
    if kind == "unassign":
        links = [r for r in rules if r[0] == "g" and r[3] == domain]
        return ([], [draw(st.sampled_from(links))]) if links else ([], [])
    if kind == "inherit":
        child, parent = draw(st.sampled_from(sorted(roles))), draw(st.sampled_from(sorted(roles)))
        if _role_reaches(rules, roles, parent, child, domain):  # would close a cycle
            return [], []
        return [("g", child, parent, domain)], []
    if kind == "status":
        old = next(r for r in rules if r[0] == "p3" and r[1] == account and r[2] == domain)
        return [("p3", account, domain, draw(st.sampled_from(STATUSES)))], [old]
    if kind == "move":
        old_rules = [r for r in rules if r[0] == "g3" and r[1] == account and r[3] == domain]
        new: list[Rule] = []
        if departments and draw(st.integers(0, 4)) > 0:  # now and then: no department at all
            new.append(("g3", account, draw(st.sampled_from(sorted(departments))), domain))
        return new, old_rules
    if kind == "parent":
        parents = {r[1]: r[2] for r in rules if r[0] == "g4" and r[3] == domain}
        old_rules = [("g4", account, parents[account], domain)] if account in parents else []
        if draw(st.booleans()):
            return [], old_rules
        candidate = draw(st.sampled_from(accounts))
        if account in _ancestors(parents, candidate):  # would close a cycle (or self-parent)
            return [], []
        return [("g4", account, candidate, domain)], old_rules
    if kind == "role":  # a new (empty) role, or drop a role nothing refers to
        # any rule naming the role (permissions, links, field rules ...) keeps it in use
        used = {r[1] for r in rules if r[0] != "p4" and domain in r} | {
            r[2] for r in rules if r[0] in ("g", "p8") and r[3] == domain}  # p8: timed assignment
        unused_roles = sorted(roles - used)
        if len(unused_roles) > 0 and draw(st.booleans()):
            return [], [("p4", draw(st.sampled_from(unused_roles)), domain)]
        name = f"r:new{len(roles)}"
        return ([("p4", name, domain)], []) if name not in roles else ([], [])
    if kind == "vocabulary":  # a new action on customers, or drop it again once unused
        frob: Rule = ("p2", domain, "customer", "frob")
        if frob not in rules:
            return [frob], []
        if any(r[0] in ("p", "p12") and r[2] == domain and r[4] == "frob" for r in rules):
            return [], []
        return [], [frob]
    # department: add a new one under an existing one, or drop an unused leaf
    unused = [d for d in departments
              if d not in departments.values()
              and not any(r[0] in ("g3", "g5") and r[2] == d and r[3] == domain for r in rules)
              and not any(r[0] in ("p", "p12") and r[2] == domain and r[5] == f"custom:{d}"
                          for r in rules)
              and not any(r[0] == "p12" and r[1] == d and r[2] == domain for r in rules)]
    if len(unused) > 0 and draw(st.booleans()):
        leaf = draw(st.sampled_from(sorted(unused)))
        return [], [("g2", leaf, departments[leaf], domain)]
    name = f"d:new{len(departments)}"
    if name in departments:
        return [], []
    parent = draw(st.sampled_from(["", *sorted(departments)]))
    return [("g2", name, parent, domain)], []


def format_expiry_at(moment: float) -> str:
    from datetime import UTC, datetime

    return format_expiry(datetime.fromtimestamp(moment, UTC))


def _decisions(authz: Authorizer, batch: list[tuple[str, str, Record, str]]) -> list[bool]:
    return [authz.check(a, act, rec, domain=d) for a, act, rec, d in batch]


@settings(max_examples=examples(60))
@given(data=st.data(), org=organisations(expiries=MOMENTS, record_model=True))
def test_cached_decisions_equal_rebuilt_and_reference(data: st.DataObject, org: Organisation) -> None:
    clock = [FIXED_NOW]
    authz = Authorizer.from_rules(org.rules, clock=lambda: clock[0])
    batch = data.draw(st.lists(requests(org), min_size=8, max_size=16), label="requests")
    _decisions(authz, batch)  # fill the cache, so that changes must invalidate it
    steps = data.draw(st.integers(1, 6), label="steps")
    for _ in range(steps):
        rules = authz.rules()
        domain = data.draw(st.sampled_from(org.domains), label="domain")
        asked = ([a for a, _, _, d in batch if d == domain],
                 [r.owner for _, _, r, d in batch if d == domain and r.owner])
        added, removed = data.draw(changes(rules, domain, asked), label="change")
        unchanged = set(added) & set(removed)  # e.g. a status "changed" to the same status
        added = [r for r in added if r not in rules and r not in unchanged]
        removed = [r for r in removed if r not in unchanged]
        authz.apply_changes(added=added, removed=removed)
        current = authz.rules()
        assert set(current) == (set(rules) - set(removed)) | set(added)
        # Time moves on (past some expiries, or not at all) between a change and the checks.
        clock[0] += data.draw(st.sampled_from([0.0, 5.0, 12.0]), label="seconds")
        rebuilt = Authorizer.from_rules(current, clock=lambda: clock[0])  # also validates
        cached = _decisions(authz, batch)
        assert cached == _decisions(rebuilt, batch)
        for name in org.domains:  # the member indexes kept through the change = rebuilt ones
            kept, fresh = authz._snapshots.get(name), rebuilt._snapshots.get(name)
            assert (kept is None) == (fresh is None)
            if kept is not None and fresh is not None:
                assert dict(kept.members) == dict(fresh.members)
                assert dict(kept.homes) == dict(fresh.homes)
                assert dict(kept.children) == dict(fresh.children)
                assert dict(kept.auxiliary_members) == dict(fresh.auxiliary_members)
        assert cached == _decisions(authz, batch)  # the same answers again, from the cache
    enforcer = reference_enforcer(authz.rules(), clock=lambda: clock[0])
    for (account, action, record, domain), got in zip(batch, _decisions(authz, batch), strict=True):
        expected = bool(enforcer.enforce(*request(account, domain, action, record)))
        assert got == expected, (account, action, record, domain)


def _small_org() -> Authorizer:
    rules: list[Rule] = [
        ("p2", "acme", "customer", "read"), ("p4", "rep", "acme"),
        ("p", "rep", "acme", "customer", "read", "team", ""),
        ("g2", "east", "", "acme"), ("g2", "west", "", "acme"),
    ]
    for name in ("boss", "helper", "sub_helper", "other"):
        rules += [("p3", name, "acme", "active"), ("g3", name, "east", "acme"),
                  ("g", name, "rep", "acme")]
    rules += [("g4", "helper", "boss", "acme"), ("g4", "sub_helper", "helper", "acme")]
    return Authorizer.from_rules(rules)


def test_account_change_refreshes_only_that_account_and_its_sub_accounts() -> None:
    authz = _small_org()
    record = Record("customer", owner="someone", department="east")
    names = ("boss", "helper", "sub_helper", "other")
    assert all(authz.check(n, "read", record, domain="acme") for n in names)
    misses = authz.cache_info().misses
    authz.apply_changes(added=[("g3", "boss", "west", "acme")],
                        removed=[("g3", "boss", "east", "acme")])
    # boss now sees west, not east; its sub-accounts are capped by it; "other" keeps its map.
    assert [authz.check(n, "read", record, domain="acme") for n in names] == [
        False, False, False, True]
    assert authz.cache_info().misses == misses + 3
    west = Record("customer", owner="someone", department="west")
    assert authz.check("boss", "read", west, domain="acme")
    assert not authz.check("helper", "read", west, domain="acme")  # its own team is still east


def test_structural_change_refreshes_every_account_of_the_domain() -> None:
    authz = _small_org()
    record = Record("customer", owner="someone", department="east")
    assert authz.check("other", "read", record, domain="acme")
    misses = authz.cache_info().misses
    authz.apply_changes(removed=[("p", "rep", "acme", "customer", "read", "team", "")])
    assert not authz.check("other", "read", record, domain="acme")
    assert not authz.check("boss", "read", record, domain="acme")
    assert authz.cache_info().misses == misses + 2


def test_removing_the_last_rule_of_a_domain_drops_it() -> None:
    authz = _small_org()
    authz.apply_changes(removed=authz.rules("acme"))
    assert authz.domains() == []
    assert not authz.check("boss", "read", Record("customer", owner="boss"), domain="acme")


def _many_accounts(count: int) -> list[Rule]:
    rules: list[Rule] = [("p2", "big", "customer", "read"), ("p4", "rep", "big"),
                         ("p", "rep", "big", "customer", "read", "own", ""), ("g2", "hq", "", "big")]
    for i in range(count):
        rules += [("p3", f"u{i}", "big", "active"), ("g3", f"u{i}", "hq", "big"),
                  ("g", f"u{i}", "rep", "big")]
    return rules


@pytest.mark.parametrize("collector_enabled", [True, False])
def test_bulk_load_restores_the_garbage_collector_state(collector_enabled: bool) -> None:
    rules = _many_accounts(3_400)  # above the bulk threshold (10,000 rules)
    was_enabled = gc.isenabled()
    try:
        if not collector_enabled:
            gc.disable()
        authz = Authorizer(MemoryAdapter(rules))
        assert gc.isenabled() == collector_enabled
    finally:
        if was_enabled:
            gc.enable()
    assert authz.check("u3399", "read", Record("customer", owner="u3399"), domain="big")
    assert not authz.check("u3399", "read", Record("customer", owner="u0"), domain="big")
    assert len(authz.rules("big")) == len(rules)


def _many(accounts: int) -> list[Rule]:
    rules: list[Rule] = [("p2", "acme", "customer", "read"), ("p2", "acme", "customer", "delete"),
                         ("p4", "rep", "acme"), ("p", "rep", "acme", "customer", "read", "own", ""),
                         ("g2", "hq", "", "acme")]
    for i in range(accounts):
        rules += [("p3", f"u{i}", "acme", "active"), ("g3", f"u{i}", "hq", "acme"),
                  ("g", f"u{i}", "rep", "acme")]
    return rules


def test_a_change_shares_the_tenants_accounts_map_instead_of_copying_it() -> None:
    authz = Authorizer.from_rules(_many(400))
    before = authz._snapshots["acme"]
    authz.apply_changes(added=[("p", "u7", "acme", "customer", "delete", "own", "")])
    after = authz._snapshots["acme"]
    assert isinstance(after.accounts, engine.Layered)
    assert after.accounts._base is before.accounts  # the 400 accounts are not copied
    assert len(after.accounts._top) == 1
    assert after.accounts["u7"].grants
    assert not before.accounts["u7"].grants
    assert after.stamps == {"u7": after.version}  # only the touched account is stamped
    assert after.base == before.base == before.version < after.version


def test_an_old_snapshot_never_uses_a_map_computed_after_it() -> None:
    authz = Authorizer.from_rules(_many(3))
    record = Record("customer", owner="someone", department="hq")
    old = authz._snapshots["acme"]
    assert not authz.check("u1", "read", record, domain="acme")
    authz.apply_changes(added=[("p", "u1", "acme", "customer", "read", "team", "")])
    new = authz._snapshots["acme"]
    assert authz.check("u1", "read", record, domain="acme")  # the new map is cached now
    entry = authz._cache.peek("acme", "u1")
    assert entry is not None
    assert entry[0] == new.version
    assert new.fresh("u1", entry[0])
    # A reader still holding the old snapshot: the newer entry is not its (the shared stamps
    # say so), and the map it computes is the old one.
    assert not old.fresh("u1", entry[0])
    assert not old.fresh("u1", old.version)  # u1 changed after it: its own maps look stale
    assert old.fresh("u2", old.version)  # u2 did not change
    held = authz._cache.get(old, "u1", authz.now())[1]
    assert not held[("customer", "read")].covers("someone", "hq")
    assert authz._cache.peek("acme", "u1") is entry  # not replaced by the old snapshot's


def test_the_layered_map_behaves_as_a_dict_through_changes_and_compaction() -> None:
    model = {f"k{i}": i for i in range(100)}
    layered: engine.Layered[str, int] = engine.Layered(dict(model))
    versions = [(layered, dict(model))]
    for step in range(400):
        key = f"k{(step * 37) % 130}"
        value = None if step % 5 == 0 else step
        layered = layered.changed({key: value})
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
        versions.append((layered, dict(model)))
    assert len(layered._top) < 100  # folded into a new base now and then
    for mapping, expected in versions:  # every version is still what it was
        assert dict(mapping) == expected
        assert len(mapping) == len(expected)
        assert [k in mapping for k in ("k3", "k120", "nope")] == [
            k in expected for k in ("k3", "k120", "nope")]
        assert mapping.get("nope", -1) == -1


def test_check_many_never_uses_a_stale_or_expired_entry() -> None:
    clock = [1_000.0]
    authz = Authorizer(MemoryAdapter(_many(3)), clock=lambda: clock[0])
    record = Record("customer", owner="someone", department="hq")
    page = [("u1", "read", record), ("u2", "read", record), ("u1", "read", record)]
    assert authz.check_many(page, domain="acme") == [False, False, False]  # entries cached
    authz.apply_changes(added=[("p", "u1", "acme", "customer", "read", "team", "")])
    assert authz.check_many(page, domain="acme") == [True, False, True]
    authz.apply_changes(added=[("p", "u2", "acme", "customer", "read", "team",
                                format_expiry(datetime.fromtimestamp(1_500.0, UTC)))])
    assert authz.check_many(page, domain="acme") == [True, True, True]
    clock[0] = 1_500.0  # u2's grant expires: its cached entry is no longer valid
    assert authz.check_many(page, domain="acme") == [True, False, True]
    assert authz.check_many(page, domain="nowhere") == [False, False, False]


def test_a_department_grant_restamps_only_the_accounts_of_its_subtree() -> None:
    rules = [*_many(50), ("g2", "east", "hq", "acme"), ("g2", "east-1", "east", "acme"),
                         ("g2", "west", "hq", "acme"),
                         ("p3", "e1", "acme", "active"), ("g3", "e1", "east-1", "acme"),
                         ("p3", "aux", "acme", "active"), ("g3", "aux", "west", "acme"),
                         ("g5", "aux", "east", "acme"),
                         ("p3", "sub", "acme", "active"), ("g3", "sub", "west", "acme"),
                         ("g4", "sub", "e1", "acme")]
    authz = Authorizer.from_rules(rules)
    record = Record("customer", owner="someone", department="hq")
    assert not any(authz.check(n, "delete", record, domain="acme") for n in ("e1", "aux", "u3"))
    before = authz._snapshots["acme"]
    grant: Rule = ("p12", "east", "acme", "customer", "delete", "all", "")
    authz.apply_changes(added=[grant])
    after = authz._snapshots["acme"]
    assert after.base == before.base  # not a structural change: the tenant's maps stay fresh
    # e1 (main department below east), aux (auxiliary department east) and e1's sub-account
    assert set(after.stamps) == {"e1", "aux", "sub"}
    assert authz.check("e1", "delete", record, domain="acme")
    assert authz.check("aux", "delete", record, domain="acme")
    assert not authz.check("sub", "delete", record, domain="acme")  # west: not in the subtree
    assert not authz.check("u3", "delete", record, domain="acme")
    authz.apply_changes(added=[("g3", "u3", "east-1", "acme")], removed=[("g3", "u3", "hq", "acme")])
    assert authz.check("u3", "delete", record, domain="acme")  # moved in: holds it now
    authz.apply_changes(removed=[grant])
    assert not any(authz.check(n, "delete", record, domain="acme") for n in ("e1", "aux", "u3"))
    assert set(authz._snapshots["acme"].stamps) >= {"e1", "aux", "sub", "u3"}
    assert len(authz._snapshots["acme"].stamps) == 4  # the member index followed u3's move


def test_an_account_named_only_by_its_grants_is_known_but_never_registered() -> None:
    """An account the rules name only in a direct grant is an account (``account()`` shows it,
    without a status: never registered, so it may do nothing); one never named is not."""
    rules: list[Rule] = [("p2", "t", "customer", "read"), ("p3", "rep", "t", "active"),
                         ("p", "ghost", "t", "customer", "read", "own", "")]
    authz = Authorizer(MemoryAdapter(rules))
    ghost = authz.account("ghost", domain="t")
    assert ghost is not None
    assert ghost.status is None
    assert authz.account("nobody", domain="t") is None
    assert not authz.check("ghost", "read", Record("customer", owner="ghost"), domain="t")
