"""Casbin's own enforcer, loaded with salesauthz's model and rules: the reference the compiled
decision path is tested against (and a fallback for tools that want pure Casbin).

The matcher's helper functions read only the Casbin enforcer's own policy state: department
subtrees come from Casbin's role manager for ``g2``, statuses from ``p3`` and so on. A
sub-account's ceiling is the enforcer asking itself about the parent (``capped``).

:func:`register_functions` is the one place those helpers are defined; it is public (as
:func:`salesauthz.casbin.register_functions`) so that a plain pycasbin ``Enforcer`` can evaluate
the shipped ``model.conf`` too.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import casbin

from . import _rules as R
from ._rules import Rule

__all__ = ["MATCHER_FUNCTIONS", "context_text", "reference_enforcer", "register_functions",
           "request", "shares_text"]


def shares_text(shares: Iterable[Any]) -> str:
    """A record's shares as the model's ``r.shares`` value: JSON
    ``[[level, "account" or "department", name], ...]``, or "" for none."""
    rows = [[s.level, "account", s.account] if s.account is not None
            else [s.level, "department", s.department] for s in shares
            if (s.account is None) != (s.department is None)]
    return json.dumps(rows, ensure_ascii=False) if rows else ""


def context_text(attributes: Mapping[str, Any] | None, context: Mapping[str, Any] | None) -> str:
    """A record's attributes and the request context as the model's ``r.ctx`` value: JSON
    ``{"attributes": {...}, "context": {...}}`` (``now`` in seconds since the epoch), or "" when
    there are neither."""
    if not attributes and not context:
        return ""
    request_context = dict(context or {})
    if isinstance(request_context.get("now"), datetime):
        moment = request_context["now"]
        request_context["now"] = moment.timestamp() if moment.tzinfo is not None else None
    return json.dumps({"attributes": dict(attributes or {}), "context": request_context},
                      ensure_ascii=False, sort_keys=True, default=str)


def request(account: str, domain: str, action: str, record: Any,
            context: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The ``enforce`` arguments for a check (``record`` is a :class:`salesauthz.Record`;
    ``context`` the request context, as given to ``Authorizer.check``)."""
    return (account, domain, record.type, action, record.owner or "", record.department or "",
            shares_text(record.shares), context_text(record.attributes, context))

MATCHER_FUNCTIONS = ("known", "active", "unexpired", "assigned", "covers", "capped", "departmental")
"""The functions ``model.conf``'s matcher calls besides Casbin's own ``g``."""

# Casbin's role managers stop following links after 10 levels; a department tree or a role
# hierarchy may be deeper, and salesauthz follows every level.
_UNLIMITED_HIERARCHY = 10_000


def reference_enforcer(rules: Iterable[Rule], *, clock: Callable[[], float] = time.time) -> Any:
    """A ``casbin.Enforcer`` deciding ``enforce(sub, dom, typ, act, owner, dept, shares, ctx)`` by
    the design's rules. ``owner``/``dept`` are "" when the record has none (``dept`` "" = owner's
    department); ``shares`` is :func:`shares_text` of the record's shares ("" for none); ``ctx``
    :func:`context_text` of its attributes and the request context ("" for none)."""
    from .models.loader import bundled_model_text

    model = casbin.Enforcer.new_model(text=bundled_model_text())
    enforcer = casbin.Enforcer(model)
    grouped: dict[str, dict[tuple[str, ...], None]] = {}
    for rule in rules:
        grouped.setdefault(rule[0], {})[tuple(rule[1:])] = None
    model = enforcer.get_model()
    for ptype, values in grouped.items():
        # Model.add_policies tests each rule against the whole list (quadratic); the rules are
        # already unique, so append them directly.
        section = "g" if ptype.startswith("g") else "p"
        model[section][ptype].policy.extend(list(v) for v in values)
    register_functions(enforcer, clock=clock)  # also builds the role links
    return enforcer


def _remember_within_each_enforce(enforcer: Any) -> threading.local:
    """The matcher evaluates ``capped`` and ``departmental`` once per ``p`` rule, always with
    the request's own values: their answers are remembered for the duration of one decision
    (``enforce_ex``, which ``enforce`` goes through; a stack per thread, as ``capped`` decides
    for the parent within it). Installed once per enforcer."""
    memory: threading.local | None = getattr(enforcer, "salesauthz_memos", None)
    if memory is not None:
        return memory
    memory = threading.local()
    decide = enforcer.enforce_ex

    def enforce_ex(*request: Any) -> Any:
        stack: list[dict[tuple[str, ...], bool]] | None = getattr(memory, "stack", None)
        if stack is None:
            stack = memory.stack = []
        stack.append({})
        try:
            return decide(*request)
        finally:
            stack.pop()

    enforcer.enforce_ex = enforce_ex
    enforcer.salesauthz_memos = memory
    return memory


def register_functions(enforcer: Any, *, clock: Callable[[], float] = time.time) -> None:
    """Teach a pycasbin ``Enforcer`` built on salesauthz's ``model.conf`` the matcher's helper
    functions (``known``, ``active``, ``unexpired``, ``covers``, ``capped``, ``departmental``), lift the role
    managers' 10-level limit, and rebuild the role links.

    The functions read the enforcer's current policy on every call, so they stay right after
    ``load_policy()``. ``load_filtered_policy()`` replaces the role managers: call this again
    after it. ``clock`` gives seconds since the epoch (grant expiry).
    """
    sections = enforcer.get_model().model
    missing = [ptype for ptype in R.ARITY if ptype not in sections.get(ptype[0], {})]
    if missing:
        from .errors import PolicyError

        raise PolicyError(f"the enforcer's model is not salesauthz's model.conf: it defines no "
                          f"{', '.join(missing)} (use salesauthz.casbin.model_path())")
    for ptype in ("g", "g2", "g3", "g4", "g5", "g6"):
        manager = enforcer.get_named_role_manager(ptype)
        manager.max_hierarchy_level = _UNLIMITED_HIERARCHY
        # The domain manager's default name matcher is plain equality, written as a function
        # that makes every lookup scan all roles; without it the answers are the same.
        manager.matching_func = None
    enforcer.build_role_links()
    memory = _remember_within_each_enforce(enforcer)

    def policy(ptype: str) -> list[list[str]]:
        return list(enforcer.get_model().get_policy("g" if ptype.startswith("g") else "p", ptype))

    def lookup(ptype: str, name: str, dom: str) -> str | None:
        for values in policy(ptype):
            if values[0] == name and values[-1 if ptype.startswith("g") else 1] == dom:
                return values[1] if ptype.startswith("g") else values[2]
        return None

    def known(dom: str, typ: str, act: str) -> bool:
        return [dom, typ, act] in policy(R.VOCABULARY)

    def active(sub: str, dom: str) -> bool:
        return lookup(R.ACCOUNT, sub, dom) == "active"

    def unexpired(expires: str) -> bool:
        return not expires or clock() < R.parse_expiry(expires)

    def department_exists(dept: str, dom: str) -> bool:
        return any(v[0] == dept and v[2] == dom for v in policy(R.DEPARTMENT))

    def at_or_below(dept: str, top: str, dom: str) -> bool:
        if not (department_exists(dept, dom) and department_exists(top, dom)):
            return False
        return bool(enforcer.get_named_role_manager(R.DEPARTMENT).has_link(dept, top, dom))

    def assigned(sub: str, role: str, dom: str) -> bool:
        """``sub`` holds ``role`` through a timed assignment (``p8``) that has not expired."""
        manager = enforcer.get_named_role_manager(R.ROLE_LINK)
        for values in policy(R.TIMED_ROLE):
            if values[0] == sub and values[2] == dom and unexpired(values[3]) and (
                    values[1] == role or manager.has_link(values[1], role, dom)):
                return True
        return False

    def departments(sub: str, dom: str) -> list[str]:
        """The account's main and auxiliary departments that exist."""
        found = [v[1] for v in policy(R.MEMBERSHIP) if v[0] == sub and v[2] == dom]
        found += [v[1] for v in policy(R.AUXILIARY) if v[0] == sub and v[2] == dom]
        return [d for d in found if department_exists(d, dom)]

    def shared(sub: str, dom: str, typ: str, act: str, shares: str) -> bool:
        levels = {v[2] for v in policy(R.SHARE_LEVEL) if v[0] == dom and v[1] == typ and v[3] == act}
        mine = departments(sub, dom)
        for level, kind, name in (json.loads(shares) if shares else []):
            if level not in levels:
                continue
            if kind == "account" and name == sub:
                return True
            if kind == "department" and any(at_or_below(d, name, dom) for d in mine):
                return True
        return False

    def reports(owner: str, sub: str, dom: str, transitive: bool) -> bool:
        if not transitive:
            return [owner, sub, dom] in policy(R.REPORTS_TO)
        return bool(enforcer.get_named_role_manager(R.REPORTS_TO).has_link(owner, sub, dom))

    def account_attribute(sub: str, dom: str, name: str) -> Any:
        values = [v[3] for v in policy(R.ACCOUNT_ATTRIBUTE)
                  if v[0] == sub and v[1] == dom and v[2] == name]
        return json.loads(values[0])[0] if len(values) == 1 else None

    def same_kind(a: Any, b: Any) -> bool:
        def kind(x: Any) -> str:
            return ("bool" if isinstance(x, bool) else "number" if isinstance(x, int | float)
                    else "text" if isinstance(x, str) else "other")
        return kind(a) == kind(b) and kind(a) != "other"

    def test(value: Any, op: str, operand: Any) -> bool:
        if op == "null":
            return bool(operand) == (value is None)
        if value is None or operand is None:
            return False
        if op == "eq":
            return same_kind(value, operand) and value == operand
        if op == "in":
            items = operand if isinstance(operand, list) else [operand]
            return any(same_kind(value, item) and value == item for item in items)
        if not same_kind(value, operand) or isinstance(value, bool):
            return False
        return bool({"lt": value < operand, "le": value <= operand, "gt": value > operand,
                     "ge": value >= operand}[op])

    def where_holds(sub: str, dom: str, where: dict[str, Any], owner: str,
                    attributes: dict[str, Any]) -> bool:
        for name, tests in where.items():
            value = (owner or None) if name == "owner" else attributes.get(name)
            for op, operand in tests.items():
                if isinstance(operand, str) and operand.startswith("account."):
                    operand = account_attribute(sub, dom, operand[len("account."):])
                    if operand is None:
                        return False
                if not test(value, op, operand):
                    return False
        return True

    def requirements_hold(dom: str, requires: dict[str, Any], context: dict[str, Any]) -> bool:
        for key, need in requires.items():
            have = context.get(key)
            if key == "mfa":
                level = 1 if have is True else have if isinstance(have, int | float) \
                    and not isinstance(have, bool) else 0
                if level < (1 if need is True else need):
                    return False
            elif key == "ip":
                try:
                    address = ipaddress.ip_address(str(have)) if isinstance(have, str) else None
                except ValueError:
                    address = None
                if address is None:
                    return False
                if not any(address.version == ipaddress.ip_network(n, strict=False).version
                           and address in ipaddress.ip_network(n, strict=False) for n in need):
                    return False
            elif key == "hours":
                now = context.get("now", clock())
                if not isinstance(now, int | float) or isinstance(now, bool):
                    return False
                zones = [v[2] for v in policy(R.SETTING) if v[0] == dom and v[1] == "time_zone"]
                local = datetime.fromtimestamp(now, ZoneInfo(zones[0] if len(zones) == 1
                                                             else "UTC"))
                days_text, _, times = need.strip().rpartition(" ")
                names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
                if days_text.strip():
                    first, _, last = days_text.strip().partition("-")
                    start_day, end_day = names.index(first), names.index(last or first)
                    days = {(start_day + i) % 7 for i in range((end_day - start_day) % 7 + 1)}
                else:
                    days = set(range(7))
                begin, _, end = times.partition("-")
                minute = local.hour * 60 + local.minute
                low = int(begin[:2]) * 60 + int(begin[3:])
                high = int(end[:2]) * 60 + int(end[3:])
                if local.weekday() not in days or not low <= minute < high:
                    return False
            else:
                return False
        return True

    def covers(sub: str, dom: str, typ: str, act: str, scope: str, owner: str, dept: str,
               shares: str, ctx: str = "") -> bool:
        if scope.startswith("["):  # a conditioned scope: the bare scope, then its condition
            body = json.loads(scope)[0]
            if not covers(sub, dom, typ, act, body["scope"], owner, dept, shares):
                return False
            request_data = json.loads(ctx) if ctx else {}
            if not where_holds(sub, dom, body.get("where", {}), owner,
                               request_data.get("attributes", {})):
                return False
            return requirements_hold(dom, body.get("requires", {}),
                                     request_data.get("context", {}))
        if scope == "all":
            return True
        if scope == "shared":  # only records shared with the account: not its own as such
            return shared(sub, dom, typ, act, shares)
        if owner and owner == sub:
            return True
        if scope in ("subordinates", "subordinate_tree"):
            return bool(owner) and reports(owner, sub, dom, scope == "subordinate_tree")
        record_dept = dept or (lookup(R.MEMBERSHIP, owner, dom) if owner else None) or ""
        if not record_dept:
            return False
        if scope.startswith("custom:"):
            return at_or_below(record_dept, scope[len("custom:"):], dom)
        if scope == "team":
            return record_dept in departments(sub, dom)
        if scope == "department_tree":
            return any(at_or_below(record_dept, home, dom) for home in departments(sub, dom))
        return False  # own (already handled) or unknown

    def remembered(name: str, decide: Callable[..., bool], *request: str) -> bool:
        """``decide(*request)``, once per decision (the matcher calls ``capped`` and
        ``departmental`` once per ``p`` rule, always with the request's own values:
        unremembered, a chain of sub-accounts reached by department grants costs
        rules ** depth). Outside a decision (a direct call), not remembered."""
        stack: list[dict[tuple[str, ...], bool]] | None = getattr(memory, "stack", None)
        if not stack:
            return decide(*request)
        key = (name, *request)
        found = stack[-1].get(key)
        if found is None:
            found = stack[-1][key] = decide(*request)
        return found

    def capped(sub: str, dom: str, typ: str, act: str, owner: str, dept: str, shares: str,
               ctx: str = "") -> bool:
        return remembered("capped", parent_allows, sub, dom, typ, act, owner, dept, shares, ctx)

    def parent_allows(sub: str, dom: str, typ: str, act: str, owner: str, dept: str, shares: str,
                      ctx: str) -> bool:
        parent = lookup(R.PARENT, sub, dom)
        if parent is None:
            return True
        return bool(enforcer.enforce(parent, dom, typ, act, owner, dept, shares, ctx))

    def departmental(sub: str, dom: str, typ: str, act: str, owner: str, dept: str, shares: str,
                     ctx: str = "") -> bool:
        """An unexpired grant (``p12``) to one of ``sub``'s main or auxiliary departments, or to
        a department above one, names the type and action and its scope covers the record
        (relative to ``sub``, as for its own grants)."""
        return remembered("departmental", granted_to_department, sub, dom, typ, act, owner, dept,
                          shares, ctx)

    def granted_to_department(sub: str, dom: str, typ: str, act: str, owner: str, dept: str,
                              shares: str, ctx: str) -> bool:
        grants = [v for v in policy(R.DEPARTMENT_GRANT) if v[1] == dom and v[2] in (typ, "*")
                  and v[3] in (act, "*") and unexpired(v[5])]
        if not grants:
            return False
        mine = departments(sub, dom)
        return any(any(at_or_below(d, v[0], dom) for d in mine)
                   and covers(sub, dom, typ, act, v[4], owner, dept, shares, ctx) for v in grants)

    functions: dict[str, Callable[..., bool]] = {
        "known": known, "active": active, "unexpired": unexpired, "assigned": assigned,
        "covers": covers, "capped": capped, "departmental": departmental,
    }
    for name in MATCHER_FUNCTIONS:
        enforcer.add_function(name, functions[name])
