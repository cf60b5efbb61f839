"""Translating a Casbin RBAC / RBAC-with-domains policy into salesauthz policy documents — the
implementation behind :func:`salesauthz.casbin.import_policy` and ``salesauthz import
--from-casbin``.

How Casbin maps to salesauthz (docs/coming-from-casbin.md says it for users):

* a Casbin **domain** is a salesauthz domain (a model without domains goes into one domain,
  ``default`` unless told otherwise);
* a **role** is a name some ``g`` line assigns (its second value) in that domain; every other
  subject is an **account** (active, in no department); ``g`` between roles is inheritance;
* an **object** is a resource type and an **action** an action of it; a domain declares every
  action it uses on every object it uses, so that ``*`` means the same in both;
* every permission has the data scope **all** (plain RBAC has no data scope);
* ``*`` is salesauthz's wildcard where the matcher makes it one (``p.obj == "*"`` as an
  alternative, or ``keyMatch``'s ``*``), and a literal (untranslatable) value otherwise.

The matcher is read as an OR of ANDs. The first alternative made only of RBAC terms (``g(r.sub,
p.sub[, r.dom])`` or ``r.sub == p.sub``, ``r.dom == p.dom``, and an equality, wildcard-equality or
pattern function per object and action) is translated; every other alternative only ever adds
allows in Casbin, so leaving it out can only deny more — it is reported, never dropped silently.
The same holds for each line that cannot be translated. Where leaving something out would allow
*more* — a deny rule, a role chain deeper than Casbin's 10 levels — the accounts it concerns get
their exact Casbin decisions as direct grants instead of roles ("flattened").

Finally both engines decide every request over the policy's names (subjects × domains × objects
× actions, up to a limit): the report lists every difference with its reason.
"""

from __future__ import annotations

import ast
import itertools
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import casbin
from casbin import persist

from salesauthz import _rules as R
from salesauthz._rules import Rule
from salesauthz._wording import docs_url
from salesauthz.errors import PolicyError, PolicyIssue
from salesauthz.models.compile import compile_document
from salesauthz.models.documents import (
    AccountDocument,
    DomainDocument,
    PermissionSet,
    RoleDocument,
    TimedRole,
)

__all__ = ["ImportNote", "ImportResult", "Mismatch", "import_policy"]

NoteKind = Literal["untranslated", "differs", "info"]

# Pattern functions whose pattern-free value matches exactly that value, and those that match
# more (regexMatch matches prefixes; keyMatch5 ignores a query string).
_EXACT_PATTERN_FUNCTIONS: Final = frozenset({"keyMatch", "keyMatch2", "keyMatch3", "keyMatch4", "globMatch"})
_LOOSE_PATTERN_FUNCTIONS: Final = frozenset({"keyMatch5", "regexMatch"})
_PATTERN_META: Final = frozenset("*?[](){}.+^$|\\:!")
_RESERVED_TYPES: Final = frozenset({R.WILDCARD, "scope", "expires", *R.BUILTIN_VOCABULARY})
_ALLOW_ONLY: Final = "some(where(p_eft==allow))"
_DENY_OVERRIDE: Final = "some(where(p_eft==allow))&&!some(where(p_eft==deny))"
_CASBIN_MAX_HOPS: Final = 9  # pycasbin's role manager follows links 10 levels deep, the subject included
_PROBE: Final = "(unlisted)"  # a name no rule mentions: shows what wildcards do with unknown names

# Why a request may be decided differently (the mismatches of the comparison are sorted by these).
ROLE_AS_SUBJECT: Final = ("the subject is a role: in Casbin a role's name may act as a subject "
                          "(g(x, x) holds), salesauthz decides for accounts only")
UNLISTED_NAME: Final = ("the object or action is named by no translated rule of the domain: a Casbin "
                        "wildcard or pattern matches it, salesauthz's '*' covers declared types and "
                        "actions only")
UNTRANSLATED_DOMAIN: Final = "the domain could not be translated (see above)"
OTHER_DOMAIN: Final = ("the domain is named by no rule: Casbin applies rules without a domain (and "
                       "role assignments in '*') there too, salesauthz knows the policy's domains only")
UNTRANSLATED: Final = "what could not be translated, or was translated more narrowly (see above)"
UNEXPLAINED: Final = "unexplained (please report it)"


@dataclass(frozen=True, slots=True)
class ImportNote:
    """One thing the report says: something ``untranslated``, a way decisions ``differs``, or
    ``info``. ``where`` is the policy line (``file:line`` when known) or the model part."""

    kind: NoteKind
    message: str
    where: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A request decided differently: ``request`` as pycasbin's ``enforce`` takes it."""

    request: tuple[str, ...]
    casbin: bool
    salesauthz: bool
    reason: str


@dataclass(slots=True)
class ImportResult:
    """What :func:`import_policy` made of a Casbin policy.

    ``documents`` are the salesauthz policy documents (one per domain) and ``rules`` their
    compiled rules; ``notes`` the report; ``compared`` how many requests both engines decided
    (out of ``universe``; a sample spread over all of them when there are more than the limit,
    ``stopped_by_time`` when the time limit cut it short), and ``mismatches`` every one they
    decided differently.
    ``default_domain`` is the salesauthz domain of a Casbin model without domains (else ``None``).
    """

    documents: list[DomainDocument]
    rules: list[Rule]
    notes: list[ImportNote]
    compared: int = 0
    universe: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    default_domain: str | None = None
    source: str = ""
    stopped_by_time: bool = False

    @property
    def untranslated(self) -> list[ImportNote]:
        return [n for n in self.notes if n.kind == "untranslated"]

    @property
    def differences(self) -> list[ImportNote]:
        return [n for n in self.notes if n.kind == "differs"]

    def mismatch_counts(self) -> dict[str, int]:
        """``reason → how many compared requests it explains``."""
        counts: dict[str, int] = {}
        for mismatch in self.mismatches:
            counts[mismatch.reason] = counts.get(mismatch.reason, 0) + 1
        return counts

    def report(self) -> list[str]:
        """The report as lines of text."""
        roles = sum(len(d.roles) for d in self.documents)
        accounts = sum(len(d.accounts) for d in self.documents)
        lines = [f"translated {self.source}: {len(self.documents)} domain(s), {roles} role(s), "
                 f"{accounts} account(s), {len(self.rules)} rules"]
        for title, kind in (("not translated", "untranslated"), ("decisions that differ", "differs"),
                            ("notes", "info")):
            notes = [n for n in self.notes if n.kind == kind]
            if notes:
                lines.append(f"{title} ({len(notes)}):")
                lines.extend(f"  {note}" for note in notes)
        if self.compared:
            agree = self.compared - len(self.mismatches)
            scope = ""
            if self.compared < self.universe:
                why = "time limit" if self.stopped_by_time else "limit"
                scope = f" (a sample of {self.universe}: {why} reached)"
            lines.append(f"compared {self.compared} requests{scope} in pycasbin and salesauthz: "
                         f"{agree} agree, {len(self.mismatches)} differ")
            for reason, count in sorted(self.mismatch_counts().items(), key=lambda kv: -kv[1]):
                example = next(m for m in self.mismatches if m.reason == reason)
                lines.append(f"  {count} × {reason} — e.g. enforce{example.request!r}: Casbin "
                             f"{'allows' if example.casbin else 'denies'}, salesauthz "
                             f"{'allows' if example.salesauthz else 'denies'}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "domains": [d.domain for d in self.documents],
            "rules": len(self.rules),
            "notes": [{"kind": n.kind, "message": n.message, "where": n.where} for n in self.notes],
            "compared": self.compared,
            "universe": self.universe,
            "stopped_by_time": self.stopped_by_time,
            "mismatches": [{"request": list(m.request), "casbin": m.casbin, "salesauthz": m.salesauthz,
                            "reason": m.reason} for m in self.mismatches],
        }

    def write(self, directory: str | Path) -> list[Path]:
        """Write the policy directory (``model.conf`` and one YAML document per domain).

        ``directory`` must not exist or be empty. The files are written into a temporary
        directory beside it, which is renamed into place only when everything is written: on
        any failure nothing is left behind. Raises :class:`FileExistsError` or :class:`OSError`.
        """
        from salesauthz.models.loader import bundled_model_text
        from salesauthz.models.write import document_file_name

        target = Path(directory)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FileExistsError(f"{target} already exists and is not an empty directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            (scratch / "model.conf").write_text(bundled_model_text(), encoding="utf-8")
            names = ["model.conf"]
            for document in self.documents:
                name = document_file_name(document.domain)
                (scratch / name).write_text(_document_text(document, self.source), encoding="utf-8")
                names.append(name)
            if target.exists():
                target.rmdir()
            scratch.rename(target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return [target / name for name in names]


# -- reading the model ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shape:
    """The RBAC alternative of a matcher, as positions in the request and policy lines."""

    request: tuple[str, ...]  # r tokens, "r_" removed
    request_index: dict[str, int]  # sub, dom?, obj, act → position in the request
    policy_index: dict[str, int]  # sub, dom?, obj, act, eft? → position in a p line
    role_ptype: str | None  # "g" when the subject goes through roles
    role_domain: bool  # g(r.sub, p.sub, r.dom)
    compare: dict[str, str]  # obj/act → "eq", "eq_or_star" or a pattern function
    deny_override: bool

    @property
    def has_domain(self) -> bool:
        return "dom" in self.request_index


def _roles_of(tokens: Sequence[str]) -> dict[str, int] | None:
    """Casbin's conventional order: ``sub, obj, act`` or ``sub, dom, obj, act``."""
    if len(tokens) == 3:
        return {"sub": 0, "obj": 1, "act": 2}
    if len(tokens) == 4:
        return {"sub": 0, "dom": 1, "obj": 2, "act": 3}
    return None


def _casbin_text(node: ast.AST, source: str) -> str:
    """A matcher fragment written back in Casbin's syntax (for messages)."""
    text = " ".join((ast.get_source_segment(source, node) or ast.unparse(node)).split())
    text = re.sub(r"\b([rp])_(\w)", r"\1.\2", text)
    return text.replace(" and ", " && ").replace(" or ", " || ").replace("not ", "!")


def _split(node: ast.expr, operator: type[ast.boolop]) -> list[ast.expr]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, operator):
        return [part for value in node.values for part in _split(value, operator)]
    return [node]


def _analyse(model: Any, where: str, notes: list[ImportNote]) -> _Shape:
    def refuse(message: str) -> PolicyError:
        return PolicyError([PolicyIssue(f"cannot translate this Casbin model: {message}", where,
                                        code="SA105",
                                        hint="salesauthz imports RBAC and RBAC-with-domains models "
                                             f"(see {docs_url('coming-from-casbin')})")])

    sections = model.model
    if "r" not in sections or "p" not in sections or "m" not in sections or "e" not in sections:
        raise refuse("it lacks a request, policy, effect or matcher definition")
    request = tuple(t.strip()[2:] for t in sections["r"]["r"].tokens)
    policy = [t.strip()[2:] for t in sections["p"]["p"].tokens]
    request_index = _roles_of(request)
    policy_fields = [t for t in policy if t != "eft"]
    policy_roles = _roles_of(policy_fields)
    if request_index is None or policy_roles is None:
        raise refuse(f"r = {', '.join(request)} / p = {', '.join(policy)}: expected "
                     "sub, obj, act or sub, dom, obj, act")
    policy_index = {role: policy.index(policy_fields[position]) for role, position in policy_roles.items()}
    if "eft" in policy:
        policy_index["eft"] = policy.index("eft")
    effect = re.sub(r"\s+", "", sections["e"]["e"].value)
    if effect not in (_ALLOW_ONLY, _DENY_OVERRIDE):
        raise refuse(f"policy effect {sections['e']['e'].value!r}: only some(where (p.eft == allow)) "
                     "and its deny-override form can be expressed")
    text = sections["m"]["m"].value
    python = re.sub(r"!(?!=)", " not ", text.replace("&&", " and ").replace("||", " or "))
    try:
        python = python.strip()
        tree = ast.parse(python, mode="eval").body
    except SyntaxError as exc:
        raise refuse(f"the matcher does not parse: {exc.msg}") from None
    role_ptypes = {ptype: len(a.tokens) for ptype, a in sections.get("g", {}).items()}
    names = {"r": dict(zip(request, request_index, strict=False)),
             "p": {policy_fields[pos]: role for role, pos in policy_roles.items()}}
    shape: _Shape | None = None
    reasons: list[str] = []
    for alternative in _split(tree, ast.Or):
        found = _recognise(alternative, python, names, role_ptypes, request_index, policy_index,
                           deny_override=effect == _DENY_OVERRIDE)
        if isinstance(found, str):
            written = f"`{_casbin_text(alternative, python)}`"
            if found.startswith(written):  # the whole alternative is the term it names
                why = f"{written} {found[len(written):].strip()}"
            else:
                why = f"{written}: {found}"
            reasons.append(why)
            notes.append(ImportNote("untranslated", f"the matcher's alternative {why}; what only it "
                                    "allows, Casbin allows and salesauthz denies", "[matchers] m"))
            continue
        if shape is None:
            shape = found
        else:
            notes.append(ImportNote("untranslated", f"the matcher's further RBAC alternative "
                                    f"`{_casbin_text(alternative, python)}` (only one is translated)",
                                    "[matchers] m"))
    if shape is None:
        raise refuse("no alternative of the matcher is RBAC: " + "; ".join(reasons))
    return shape


def _recognise(node: ast.expr, source: str, names: dict[str, dict[str, str]], role_ptypes: dict[str, int],
               request_index: dict[str, int], policy_index: dict[str, int], *,
               deny_override: bool) -> _Shape | str:
    """The shape of one AND-alternative, or why it is not RBAC."""

    def role_of(expr: ast.expr, side: str) -> str | None:
        if isinstance(expr, ast.Name) and expr.id.startswith(side + "_"):
            return names[side].get(expr.id[2:])
        return None

    def pair(left: ast.expr, right: ast.expr) -> str | None:
        """The role compared when ``left``/``right`` are ``r.X`` and ``p.X`` of one role."""
        for first, second in ((left, right), (right, left)):
            request_role, policy_role = role_of(first, "r"), role_of(second, "p")
            if request_role is not None and request_role == policy_role:
                return request_role
        return None

    def equality(expr: ast.expr) -> str | None:
        if (isinstance(expr, ast.Compare) and len(expr.ops) == 1 and isinstance(expr.ops[0], ast.Eq)):
            return pair(expr.left, expr.comparators[0])
        return None

    def star_test(expr: ast.expr) -> str | None:
        """``p.X == "*"``: the role X."""
        if not (isinstance(expr, ast.Compare) and len(expr.ops) == 1 and isinstance(expr.ops[0], ast.Eq)):
            return None
        for first, second in ((expr.left, expr.comparators[0]), (expr.comparators[0], expr.left)):
            if isinstance(second, ast.Constant) and second.value == R.WILDCARD:
                return role_of(first, "p")
        return None

    subject: str | None = None
    role_ptype: str | None = None
    role_domain = False
    domain_compared = False
    compare: dict[str, str] = {}
    for term in _split(node, ast.And):
        role = equality(term)
        if role is not None:
            if role in ("sub", "dom"):
                if role == "sub":
                    if subject is not None:
                        return "the subject is compared twice"
                    subject = "direct"
                else:
                    domain_compared = True
                continue
            if role in compare:
                return f"r.{role} is compared twice"
            compare[role] = "eq"
            continue
        if isinstance(term, ast.BoolOp) and isinstance(term.op, ast.Or) and len(term.values) == 2:
            first, second = term.values
            for eq_part, star_part in ((first, second), (second, first)):
                role = equality(eq_part)
                if role in ("obj", "act") and star_test(star_part) == role:
                    if role in compare:
                        return f"r.{role} is compared twice"
                    compare[role] = "eq_or_star"
                    break
            else:
                return f"`{_casbin_text(term, source)}` is not an RBAC comparison"
            continue
        if isinstance(term, ast.Call) and isinstance(term.func, ast.Name) and not term.keywords:
            function = term.func.id
            if function in role_ptypes:
                args = term.args
                if (len(args) in (2, 3) and len(args) == role_ptypes[function]
                        and role_of(args[0], "r") == "sub" and role_of(args[1], "p") == "sub"
                        and (len(args) == 2 or role_of(args[2], "r") == "dom")):
                    if subject is not None:
                        return "the subject is compared twice"
                    subject, role_ptype, role_domain = "roles", function, len(args) == 3
                    continue
                return (f"`{_casbin_text(term, source)}`: only g(r.sub, p.sub) or "
                        "g(r.sub, p.sub, r.dom) maps to roles")
            if function in _EXACT_PATTERN_FUNCTIONS | _LOOSE_PATTERN_FUNCTIONS and len(term.args) == 2:
                role = pair(term.args[0], term.args[1])
                if role in ("obj", "act"):
                    if role in compare:
                        return f"r.{role} is compared twice"
                    compare[role] = function
                    continue
                return f"`{_casbin_text(term, source)}`: patterns are translated for objects and actions only"
        return (f"`{_casbin_text(term, source)}` is not an RBAC term "
                "(attribute conditions cannot be translated)")
    if subject is None:
        return "it never compares the subject (g(r.sub, p.sub) or r.sub == p.sub)"
    missing = [role for role in ("obj", "act") if role not in compare]
    if missing:
        return f"it never compares r.{' or r.'.join(missing)} with the policy"
    has_domain = "dom" in request_index
    if not has_domain and ("dom" in policy_index or role_domain):
        return "the policy has a domain but the request has none"
    if has_domain:
        if "dom" in policy_index and not domain_compared:
            return "it never compares r.dom with p.dom"
        if "dom" not in policy_index and not role_domain:
            return "it never uses the request's domain"
    return _Shape(tuple(names["r"]), request_index, policy_index, role_ptype, role_domain,
                  compare, deny_override)


# -- reading the policy ---------------------------------------------------------------------


def _load_model(model: str | Path) -> tuple[Any, str]:
    if isinstance(model, Path) or ("[" not in model and "\n" not in model):
        path = Path(model)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([PolicyIssue(f"cannot read the Casbin model: {exc}", str(path),
                                           code="SA105")]) from None
        where = str(path)
    else:
        text, where = model, "model.conf"
    try:
        return casbin.Enforcer.new_model(text=text), where
    except Exception as exc:  # pycasbin raises assorted errors for a bad model
        raise PolicyError([PolicyIssue(f"invalid Casbin model: {exc}", where, code="SA105")]) from None


def _load_policy(model: Any, policy: str | Path | Iterable[Iterable[str]]
                 ) -> tuple[str, dict[tuple[str, ...], str]]:
    """Load the policy into ``model`` exactly as the Casbin application reads it; returns the
    source's name and where each line came from."""
    located: dict[tuple[str, ...], str] = {}
    if isinstance(policy, str) and policy.startswith("casbin+"):
        from salesauthz.adapters import mask_url
        from salesauthz.adapters.casbin_compat import CasbinRuleAdapter

        store = CasbinRuleAdapter(policy[len("casbin+"):], create=False)
        try:
            rows = store.foreign_rows()
        finally:
            store.close()
        name = mask_url(policy)
        for number, row in enumerate(rows, 1):
            _load_line(model, ", ".join(row), f"{name} row {number}", located)
        return name, located
    if isinstance(policy, str | Path):
        path = Path(policy)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PolicyError([PolicyIssue(f"cannot read the Casbin policy: {exc}", str(path))]) from None
        # pycasbin's file adapter: one rule per line, each stripped, comments and blanks skipped.
        for number, raw in enumerate(data.split(b"\n"), 1):
            try:
                line = raw.decode().strip()
            except UnicodeDecodeError:
                raise PolicyError([PolicyIssue("not UTF-8", str(path), number)]) from None
            _load_line(model, line, f"{path}:{number}", located)
        return str(path), located
    for number, given in enumerate(policy, 1):
        values = [str(v) for v in given]
        _load_line(model, ", ".join(values), f"line {number}", located)
    return "the policy lines", located


def _load_line(model: Any, line: str, where: str, located: dict[tuple[str, ...], str]) -> None:
    if not line or line.startswith("#"):
        return
    before = {key: len(a.policy) for sec in ("p", "g") for key, a in model.model.get(sec, {}).items()}
    try:
        persist.load_policy_line(line, model)
    except IndexError:
        raise PolicyError([PolicyIssue("pycasbin cannot read this line (a closing bracket without an "
                                       f"opening one): {line!r}", where)]) from None
    for sec in ("p", "g"):
        for key, assertion in model.model.get(sec, {}).items():
            if len(assertion.policy) > before[key]:
                located.setdefault((key, *assertion.policy[-1]), where)


def _drop_malformed(model: Any, located: dict[tuple[str, ...], str], notes: list[ImportNote]) -> None:
    """Take out the lines pycasbin itself cannot use — a ``p`` line of the wrong width fails
    every ``enforce`` ("invalid policy size"), a short ``g`` line fails building the role links —
    and report them."""
    for section in ("p", "g"):
        for ptype, assertion in model.model.get(section, {}).items():
            width = len(assertion.tokens)
            kept = []
            for values in assertion.policy:
                if len(values) == width:
                    kept.append(values)
                    continue
                failure = ("invalid policy size" if section == "p"
                           else "grouping policy elements do not meet role definition")
                notes.append(ImportNote(
                    "untranslated", f"`{ptype}, {', '.join(values)}`: {len(values)} values where the model's "
                    f"{ptype} takes {width}; pycasbin fails on it too ({failure!r})",
                    located.get((ptype, *values), f"{ptype}, {', '.join(values)}")))
            assertion.policy[:] = kept


# -- translating ----------------------------------------------------------------------------


def _name_problem(value: str, what: str) -> str | None:
    if not value:
        return f"an empty {what}"
    if "\x00" in value:
        return f"the {what} contains a NUL character"
    if len(value) > 1000:
        return f"the {what} is longer than 1,000 characters"
    return None


def _value(value: str, kind: str, what: str) -> tuple[str | None, str | None]:
    """``(salesauthz value, None)`` or ``(None, why not)`` for an object or action."""
    if kind == "eq_or_star" and value == R.WILDCARD:
        return R.WILDCARD, None
    if kind == "keyMatch" and value == R.WILDCARD:
        return R.WILDCARD, None
    if kind == "eq" and value == R.WILDCARD:
        return None, (f"'*' is a literal {what} here (the matcher compares with ==), and '*' in "
                      f"salesauthz would mean every {what}")
    if kind not in ("eq", "eq_or_star") and _PATTERN_META & set(value):
        return None, f"{kind} pattern {value!r}: patterns cannot be translated"
    problem = _name_problem(value, what)
    if problem is not None:
        return None, problem
    if what == "object" and value in _RESERVED_TYPES:
        return None, f"{value!r} is reserved in salesauthz and cannot name a resource type"
    return value, None


@dataclass(slots=True)
class _Domain:
    links: list[tuple[str, str]] = field(default_factory=list)  # (subject, role)
    permissions: list[tuple[str, str, str]] = field(default_factory=list)  # (subject, object, action)
    # (subject, object, action) of deny rules; "" where the object or action is not a name
    denies: list[tuple[str, str, str]] = field(default_factory=list)
    wildcard_links: bool = False  # some links come from domain '*'
    objects: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Budget:
    requests: int
    seconds: float | None


def import_policy(model: str | Path, policy: str | Path | Iterable[Iterable[str]], *,
                  default_domain: str = "default", wildcard_domains: bool = False,
                  compare_limit: int = 10_000, compare_seconds: float | None = 60.0) -> ImportResult:
    """See :func:`salesauthz.casbin.import_policy`."""
    if _name_problem(default_domain, "domain") or default_domain == R.WILDCARD:
        raise PolicyError(f"invalid default domain {default_domain!r}")
    casbin_model, model_where = _load_model(model)
    notes: list[ImportNote] = []
    shape = _analyse(casbin_model, model_where, notes)
    source_name, located = _load_policy(casbin_model, policy)
    _drop_malformed(casbin_model, located, notes)
    enforcer = casbin.Enforcer(casbin_model)
    if shape.role_ptype is not None:
        manager = enforcer.get_named_role_manager(shape.role_ptype)
        # The domain manager's default name matcher is plain equality written as a function,
        # which makes every lookup scan all roles; without it the answers are the same, faster.
        manager.matching_func = None
        if wildcard_domains and shape.role_domain:
            from casbin.util import key_match2_func

            manager.add_domain_matching_func(key_match2_func)
    enforcer.build_role_links()

    translation = _Translation(shape, notes, located, wildcard_domains=wildcard_domains)
    for ptype, assertion in casbin_model.model.get("g", {}).items():
        if ptype == shape.role_ptype:
            for values in assertion.policy:
                translation.role_line(ptype, values)
        elif assertion.policy:
            notes.append(ImportNote("info", f"{len(assertion.policy)} `{ptype}` line(s) ignored: the "
                                    "matcher does not read them (nor does Casbin's enforce)"))
    for ptype, assertion in casbin_model.model["p"].items():
        if ptype == "p":
            for values in assertion.policy:
                translation.policy_line(ptype, values)
        elif assertion.policy:
            notes.append(ImportNote("info", f"{len(assertion.policy)} `{ptype}` line(s) ignored: "
                                    "Casbin's enforce reads only `p`"))
    domains = translation.domains_with_shared_rules(default_domain)
    documents = [document for name in sorted(domains)
                 if (document := _document(name, domains[name], shape, enforcer, notes)) is not None]
    if any(doc.roles for doc in documents):
        notes.append(ImportNote("differs", "a role's name used as the subject of a request: Casbin "
                                "decides it (a name is linked to itself), salesauthz denies it — "
                                "roles are not accounts"))
    rules = [rule for document in documents for rule in compile_document(document)]
    result = ImportResult(documents, rules, notes, source=f"{model_where} + {source_name}",
                          default_domain=None if shape.has_domain else default_domain)
    if compare_limit > 0:
        seen = translation.seen
        _compare(result, shape, enforcer, _Budget(compare_limit, compare_seconds), subjects=seen["sub"],
                 domains=seen["dom"] if shape.has_domain else {default_domain},
                 objects=seen["obj"], actions=seen["act"],
                 wildcards=translation.wildcards or any(k != "eq" for k in shape.compare.values()))
    return result


class _Translation:
    """The policy lines, sorted into domains as they are read."""

    def __init__(self, shape: _Shape, notes: list[ImportNote], located: dict[tuple[str, ...], str], *,
                 wildcard_domains: bool) -> None:
        self.shape = shape
        self.notes = notes
        self.located = located
        self.wildcard_domains = wildcard_domains
        self.domains: dict[str, _Domain] = {}
        self.shared = _Domain()  # rules of every domain: lines without one, assignments in '*'
        self.seen: dict[str, set[str]] = {"sub": set(), "dom": set(), "obj": set(), "act": set()}
        self.wildcards = False

    def domain(self, name: str | None) -> _Domain:
        return self.shared if name is None else self.domains.setdefault(name, _Domain())

    def where(self, ptype: str, values: Sequence[str]) -> str:
        return self.located.get((ptype, *values), f"{ptype}, {', '.join(values)}")

    def note(self, kind: NoteKind, ptype: str, values: Sequence[str], why: str) -> None:
        line = f"`{ptype}, {', '.join(values)}`"
        self.notes.append(ImportNote(kind, f"{line}: {why}", self.where(ptype, values)))

    def role_line(self, ptype: str, values: list[str]) -> None:
        self.seen["sub"].update(values[:2])
        user, role = values[0], values[1]
        if problem := _name_problem(user, "subject") or _name_problem(role, "role"):
            self.note("untranslated", ptype, values, problem)
            return
        if user == role:
            self.note("info", ptype, values, "links a name to itself: nothing to translate")
            return
        if not self.shape.role_domain:
            self.shared.links.append((user, role))
            return
        dom = values[2]
        self.seen["dom"].add(dom)
        if dom == R.WILDCARD and self.wildcard_domains:
            self.shared.links.append((user, role))
            self.shared.wildcard_links = True
        elif dom == R.WILDCARD:
            self.note("untranslated", ptype, values, "the domain '*' is a literal here; if your "
                      "application registers a domain matching function, import with wildcard "
                      "domains (--wildcard-domains)")
        elif self.wildcard_domains and _PATTERN_META & set(dom):
            self.note("untranslated", ptype, values, f"domain pattern {dom!r}: only '*' is translated")
        elif problem := _name_problem(dom, "domain"):
            self.note("untranslated", ptype, values, problem)
        else:
            self.domain(dom).links.append((user, role))

    def policy_line(self, ptype: str, values: list[str]) -> None:
        shape = self.shape
        field = {role: values[index] for role, index in shape.policy_index.items()}
        for role in ("sub", "dom", "obj", "act"):
            if role in field:
                self.seen[role].add(field[role])
        effect = field.get("eft", "allow")
        if effect not in ("allow", "deny") or (effect == "deny" and not shape.deny_override):
            self.note("info", ptype, values, f"effect {effect!r} never allows under this model: "
                      "nothing to translate")
            return
        dom = field.get("dom")
        if dom is not None and (problem := _name_problem(dom, "domain") or (
                "'*' is a literal domain here, which salesauthz cannot hold" if dom == R.WILDCARD else None)):
            self.note("untranslated", ptype, values, problem)
            return
        obj, obj_problem = _value(field["obj"], shape.compare["obj"], "object")
        act, act_problem = _value(field["act"], shape.compare["act"], "action")
        if effect == "deny":
            # Its object and action join the vocabulary (when they are names), so that the
            # accounts it reaches get their decisions on them recorded.
            self.domain(dom).denies.append((field["sub"], obj or "", act or ""))
            self.note("info", ptype, values, "a deny rule: the accounts it reaches get their exact "
                      "Casbin decisions as direct grants")
            return
        problem = _name_problem(field["sub"], "subject") or obj_problem or act_problem
        if problem is not None or obj is None or act is None:
            self.note("untranslated", ptype, values, problem or "untranslatable")
            return
        for role, value in (("obj", obj), ("act", act)):
            kind = shape.compare[role]
            if kind in _LOOSE_PATTERN_FUNCTIONS and value != R.WILDCARD:
                more = "also a longer value (a prefix match)" if kind == "regexMatch" else "a query string"
                self.note("differs", ptype, values, f"{kind}({value!r}) matches {more} in Casbin; "
                          "salesauthz allows exactly that value")
        self.wildcards = self.wildcards or R.WILDCARD in (obj, act)
        self.domain(dom).permissions.append((field["sub"], obj, act))

    def domains_with_shared_rules(self, default_domain: str) -> dict[str, _Domain]:
        """Every domain, with the rules of every domain copied in, and its vocabulary."""
        shared, domains = self.shared, self.domains
        if not self.shape.has_domain:
            domains = {default_domain: shared}
            self.notes.append(ImportNote("info", f"the model has no domains: everything goes into "
                                         f"domain {default_domain!r} (ask with domain={default_domain!r})"))
        else:
            if (shared.links or shared.permissions or shared.denies) and not domains:
                self.notes.append(ImportNote("untranslated", "rules for every domain, but no rule names "
                                             "a domain: there is no domain to put them in"))
            for target in domains.values():
                target.links.extend(shared.links)
                target.permissions.extend(shared.permissions)
                target.denies.extend(shared.denies)
            names = ", ".join(sorted(domains))
            if shared.permissions or shared.denies:
                self.notes.append(ImportNote("differs", "policy lines without a domain are copied into "
                                             f"every domain the policy names ({names}); Casbin also "
                                             "applies them in any other domain"))
            if shared.wildcard_links:
                self.notes.append(ImportNote("differs", "role assignments in domain '*' are copied into "
                                             f"every domain the policy names ({names}); Casbin also "
                                             "applies them in any other domain"))
        # Vocabulary: the objects and actions each domain names (all the policy names, where
        # the domain uses '*', so that '*' reaches what it reaches in Casbin).
        named = [(o, a) for d in domains.values() for _, o, a in [*d.permissions, *d.denies]]
        all_objects = {o for o, _ in named if o not in ("", R.WILDCARD)}
        all_actions = {a for _, a in named if a not in ("", R.WILDCARD)}
        for target in domains.values():
            rules = [*target.permissions, *target.denies]
            target.objects.update(o for _, o, _ in rules if o not in ("", R.WILDCARD))
            target.actions.update(a for _, _, a in rules if a not in ("", R.WILDCARD))
            if any(R.WILDCARD in (o, a) for _, o, a in rules):
                target.objects |= all_objects
                target.actions |= all_actions
        if self.wildcards:
            self.notes.append(ImportNote("differs", "'*' reaches the objects and actions the policy "
                                         "names (an object '*' is written out as those objects); in "
                                         "Casbin it also matches names no rule mentions"))
        return domains


def _document(name: str, source: _Domain, shape: _Shape, enforcer: Any,
              notes: list[ImportNote]) -> DomainDocument | None:
    roles = {role for _, role in source.links}
    subjects = {user for user, _ in source.links} | {sub for sub, _, _ in source.permissions}
    accounts = subjects - roles
    if not roles and not accounts:
        return None
    links: dict[str, list[str]] = {}
    for user, role in dict.fromkeys(source.links):
        links.setdefault(user, []).append(role)
    # Casbin's own view, cycles included: what deny rules and its depth limit reach is decided
    # on it (leaving a link of a cycle out must not hide a deny rule behind it).
    casbin_links = {user: list(targets) for user, targets in links.items()}
    for back_edge in _back_edges({r: links.get(r, []) for r in roles}):
        links[back_edge[0]].remove(back_edge[1])
        notes.append(ImportNote("untranslated", f"`g, {back_edge[0]}, {back_edge[1]}` closes a cycle of "
                                "roles, which salesauthz does not allow: left out",
                                f"domain {name!r}"))
    # A type is declared with actions; '*' for the object is written out as the declared types,
    # so that it never reaches salesauthz's built-in types (account:manage, role:escalate).
    types = sorted(source.objects) if source.actions else []
    permissions: dict[str, dict[str, set[str]]] = {}
    for sub, obj, act in source.permissions:
        for typ in types if obj == R.WILDCARD else [obj] if obj in types else []:
            permissions.setdefault(sub, {}).setdefault(typ, set()).add(act)

    flattened: dict[str, str] = {}
    for account in sorted(accounts):
        reach = _distances(account, casbin_links)
        if {sub for sub, _, _ in source.denies} & ({account} | set(reach)):
            flattened[account] = "a deny rule reaches it"
        elif reach and max(reach.values()) > _CASBIN_MAX_HOPS:
            flattened[account] = (f"its role chain is deeper than the {_CASBIN_MAX_HOPS + 1} levels "
                                  "Casbin's role manager follows")
    unflattened = {subject: dict(held) for subject, held in permissions.items()}
    for account, why in flattened.items():
        # Only what its translated roles and grants would give it can be allowed (a deny or a
        # depth limit only takes away): ask Casbin about exactly those.
        candidates = {(obj, act) for subject in [account, *_distances(account, casbin_links)]
                      for obj, acts in unflattened.get(subject, {}).items()
                      for wanted in acts for act in (source.actions if wanted == R.WILDCARD else {wanted})}
        granted: dict[str, set[str]] = {}
        for obj, act in sorted(candidates):
            if enforcer.enforce(*_casbin_request(shape, account, name, obj, act)):
                granted.setdefault(obj, set()).add(act)
        permissions[account] = granted
        links.pop(account, None)
        notes.append(ImportNote("info", f"account {account!r}: {why}, so it gets its Casbin decisions "
                                "on what its roles would give it as direct grants instead of roles",
                                f"domain {name!r}"))

    def sets(subject: str) -> list[PermissionSet]:
        held = permissions.get(subject, {})
        if not held:
            return []
        body: dict[str, Any] = {"scope": "all"}
        for obj in sorted(held):
            body[obj] = sorted(held[obj])
        return [PermissionSet.model_validate(body)]

    return DomainDocument(
        domain=name,
        resources={typ: sorted(source.actions) for typ in types},
        roles={role: RoleDocument(inherits=sorted(set(links.get(role, []))), permissions=sets(role))
               for role in sorted(roles)},
        accounts={account: AccountDocument(roles=_role_entries(links.get(account, [])),
                                            grants=sets(account))
                  for account in sorted(accounts)},
    )


def _back_edges(edges: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Edges whose removal leaves the role graph acyclic (depth-first back edges)."""
    state: dict[str, int] = {}
    found: list[tuple[str, str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        for child in list(edges[node]):  # a role's links all lead to roles
            if state.get(child) == 1:
                found.append((node, child))
            elif not state.get(child):
                visit(child)
        state[node] = 2

    for start in sorted(edges):
        if not state.get(start):
            visit(start)
    return found


def _distances(start: str, links: dict[str, list[str]]) -> dict[str, int]:
    """Shortest number of links from ``start`` to every role it reaches."""
    seen = {start: 0}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for role in links.get(node, []):
                if role not in seen:
                    seen[role] = seen[node] + 1
                    following.append(role)
        frontier = following
    del seen[start]
    return seen


def _casbin_request(shape: _Shape, sub: str, dom: str, obj: str, act: str) -> tuple[str, ...]:
    values = [""] * len(shape.request)
    for role, value in (("sub", sub), ("dom", dom), ("obj", obj), ("act", act)):
        if role in shape.request_index:
            values[shape.request_index[role]] = value
    return tuple(values)


def _compare(result: ImportResult, shape: _Shape, enforcer: Any, budget: _Budget, *, subjects: set[str],
             domains: set[str], objects: set[str], actions: set[str], wildcards: bool) -> None:
    """Decide the requests over the policy's names in both engines; record every difference."""
    from salesauthz import Authorizer, Record

    authz = Authorizer.from_rules(result.rules)
    pools = [[*sorted(v for v in pool if v), _PROBE] for pool in (subjects, objects, actions)]
    domain_pool = [*sorted(d for d in domains if d), *([_PROBE] if shape.has_domain else [])]
    result.universe = len(domain_pool) * len(pools[0]) * len(pools[1]) * len(pools[2])
    by_domain = {d.domain: d for d in result.documents}
    has_untranslated = bool(result.untranslated) or any(
        n.kind == "differs" and n.where for n in result.notes)  # lines translated more narrowly
    compared = 0
    deadline = time.monotonic() + budget.seconds if budget.seconds is not None else None
    for dom, sub, obj, act in _requests(domain_pool, *pools, limit=budget.requests):
        if deadline is not None and time.monotonic() > deadline:
            result.stopped_by_time = True
            break
        compared += 1
        request = _casbin_request(shape, sub, dom, obj, act)
        expected = bool(enforcer.enforce(*request))
        got = authz.check(sub, act, Record(obj), domain=dom)
        if expected == got:
            continue
        document = by_domain.get(dom)
        if document is None and dom not in domains:
            reason = OTHER_DOMAIN
        elif document is None:
            reason = UNTRANSLATED_DOMAIN if has_untranslated else UNEXPLAINED
        elif sub in document.roles:
            reason = ROLE_AS_SUBJECT
        elif wildcards and (obj not in document.resources or act not in document.resources[obj]):
            reason = UNLISTED_NAME
        else:
            reason = UNTRANSLATED if has_untranslated else UNEXPLAINED
        result.mismatches.append(Mismatch(request, expected, got, reason))
    result.compared = compared


def _requests(*pools: list[str], limit: int) -> Iterator[tuple[str, str, str, str]]:
    """Every (domain, subject, object, action) — or, when there are more than ``limit``, a
    sample of ``limit`` spread evenly over all of them (the same sample on every run)."""
    sizes = [len(pool) for pool in pools]
    total = sizes[0] * sizes[1] * sizes[2] * sizes[3]
    if total <= limit:
        yield from itertools.product(*pools)
        return
    for number in sorted(random.Random(0).sample(range(total), limit)):
        picked = []
        for pool, size in zip(reversed(pools), reversed(sizes), strict=True):
            number, index = divmod(number, size)
            picked.append(pool[index])
        dom, sub, obj, act = reversed(picked)
        yield dom, sub, obj, act


_HEADER = """\
# Imported from Casbin by `salesauthz import --from-casbin` ({source}).
# Casbin RBAC has no data scopes or departments: every permission has scope `all`, and no
# account belongs to a department (SA206 is acknowledged on each).
"""


def _document_text(document: DomainDocument, source: str) -> str:
    """The document as YAML, with each account's SA206 acknowledged (checked to load back
    exactly; without the acknowledgements if it would not)."""
    from salesauthz.models.loader import load_document
    from salesauthz.models.write import document_yaml

    body = document_yaml(document).split("\n", 1)[1]  # without its export header
    header = _HEADER.format(source=source.replace("\n", " "))
    lines = body.split("\n")
    in_accounts = False
    for number, line in enumerate(lines):
        if line and not line.startswith(" "):
            in_accounts = line == "accounts:"
            continue
        if in_accounts and re.match(r"  [^ -]", line):
            lines[number] = line + "  # salesauthz: ignore[SA206]"
    marked = header + "\n".join(lines)
    try:
        if load_document(marked, "<import>").document == document:
            return marked
    except PolicyError:
        pass
    return header + body


def _role_entries(names: Iterable[str]) -> list[str | TimedRole]:
    """An account's role entries (permanent assignments only: Casbin has no timed ones)."""
    return [*sorted(set(names))]
