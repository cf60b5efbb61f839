"""``salesauthz test``: policy tests in ``*.test.yaml`` files beside the policies.

```yaml
domain: acme                      # the default domain of the cases below
fixtures:                         # optional, for this file only
  accounts:                       # extra accounts, written like the policy's own
    temp_rep: {department: east-2, roles: [junior_rep]}
  records:                        # named records the cases can refer to
    east2_deal: {type: customer, owner: rep_e2}
    west_lead: {type: customer, department: west-1}
tests:
  - name: a junior rep reads its own customers
    check: {account: rep_e1a, action: read, record: {type: customer, owner: rep_e1a}}
    expect: allow                 # allow | deny
    role: junior_rep              # optional: the role that decides (`grant`: a direct grant,
                                  # `department:<name>`: the grant to that department)
    permission: customer:read@own # optional: the permission that decides
  - check: {account: rep_e1a, action: read, record: east2_deal}
    expect: deny
  - check:                        # record attributes (where:) and the request context (requires:)
      account: rep_e1a
      action: export
      record: {type: customer, owner: rep_e1a, attributes: {region: East}}
      context: {mfa: true, ip: 10.1.2.3, now: 2030-03-18T09:00:00Z}
    expect: allow
  - who-can: {action: export, type: customer}          # optional owner: / department: / record:
    expect: [alice, mgr_east]                          # exhaustive: exactly these accounts
  - what-can: {account: intern_e1}
    expect: [customer:read@team, customer:update@own]  # exhaustive: exactly these permissions
  - check: {account: ghost, action: read, record: east2_deal}
    expect: deny
    unknown: [ghost]              # names this case uses on purpose without defining them
```

Every name a case uses (domain, account, action, type, owner, department, role) must exist in
the policies or the file's fixtures: a case about a misspelt or renamed name would otherwise
pass with ``expect: deny`` while testing nothing. ``unknown:`` lists the exceptions.

``--coverage`` counts the permission (``p``) and role-link (``g``) rules of the policy that some
case exercised: a check exercises the rules its explanation names (and the role links leading to
them), a what-can every rule of the account, a who-can every rule reaching the asked permission.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from salesauthz import _engine as engine
from salesauthz import _rules as R
from salesauthz._engine import Snapshot
from salesauthz._rules import Rule
from salesauthz._wording import count, docs_url
from salesauthz.errors import PolicyError, PolicyIssue, SalesAuthzError
from salesauthz.models._yaml import Path as KeyPath
from salesauthz.models._yaml import Positions, load_yaml, position_of
from salesauthz.models.compile import compile_document
from salesauthz.models.documents import AccountDocument, DomainDocument
from salesauthz.models.loader import (
    TEST_SUFFIXES,
    LoadedPolicy,
    Progress,
    load_directory,
    not_a_directory,
    read_text_file,
    yaml_files,
)
from salesauthz.models.validate import SourcedDocument, issues_from_validation_error, validate_documents
from salesauthz.values import Record, Share

from .analysis import permission_text
from .findings import Finding
from .listings import holders, what_can_rows
from .output import Output

__all__ = ["CaseResult", "TestFileError", "TestReport", "render_report", "run_tests", "test_files",
           "unknown_names"]


class TestFileError(SalesAuthzError, ValueError):
    """The policies or a test file could not be read; ``findings`` say where."""

    __test__ = False  # not a pytest test class

    def __init__(self, findings: list[Finding], *, policy_findings: bool = False) -> None:
        self.findings = findings
        self.policy_findings = policy_findings
        super().__init__("; ".join(f"{f.location()}: {f.message}" for f in findings))


# -- the file format (pydantic) -----------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ShareSpec(_Strict):
    """A share on a record: ``{level: read_write, account: rep_w1}`` or ``{level: read_only,
    department: service}``."""

    level: str
    account: str | None = None
    department: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ShareSpec:
        if (self.account is None) == (self.department is None):
            raise ValueError("a share names exactly one of `account` and `department`")
        return self

    def share(self) -> Share:
        return Share(self.level, self.account, self.department)


class RecordSpec(_Strict):
    type: str
    owner: str | None = None
    department: str | None = None
    shares: list[ShareSpec] = Field(default_factory=list)
    attributes: dict[str, Any] | None = None  # what conditions (where:) test


class ContextSpec(_Strict):
    """The request context of a check: ``{mfa: true, ip: 10.1.2.3, now: 2030-03-18T09:00:00Z}``
    (``now`` defaults to the test run's clock; a naive time is UTC)."""

    mfa: bool | int | None = None
    ip: str | None = None
    now: datetime | None = None

    def context(self, now: float) -> dict[str, Any]:
        found: dict[str, Any] = {"now": now if self.now is None else (
            self.now if self.now.tzinfo is not None else self.now.replace(tzinfo=UTC)).timestamp()}
        if self.mfa is not None:
            found["mfa"] = self.mfa
        if self.ip is not None:
            found["ip"] = self.ip
        return found


class CheckSpec(_Strict):
    account: str
    action: str
    record: RecordSpec | str
    domain: str | None = None
    context: ContextSpec | None = None


class WhoCanSpec(_Strict):
    action: str
    type: str
    owner: str | None = None
    department: str | None = None
    shares: list[ShareSpec] = Field(default_factory=list)
    record: str | None = None
    domain: str | None = None


class WhatCanSpec(_Strict):
    account: str
    domain: str | None = None


class CaseSpec(_Strict):
    name: str | None = None
    check: CheckSpec | None = None
    who_can: WhoCanSpec | None = Field(default=None, alias="who-can")
    what_can: WhatCanSpec | None = Field(default=None, alias="what-can")
    expect: Literal["allow", "deny"] | list[str]
    role: str | None = None
    permission: str | None = None
    unknown: list[str] = Field(default_factory=list)  # names used on purpose without a definition


class FixtureSpec(_Strict):
    accounts: dict[str, AccountDocument | None] = Field(default_factory=dict)
    records: dict[str, RecordSpec] = Field(default_factory=dict)


class TestFileSpec(_Strict):
    __test__ = False

    domain: str | None = None
    description: str = ""
    fixtures: FixtureSpec = Field(default_factory=FixtureSpec)
    tests: list[CaseSpec] = Field(default_factory=list)


# -- results ------------------------------------------------------------------------------


@dataclass(slots=True)
class CaseResult:
    file: str
    line: int | None
    name: str
    passed: bool
    expected: str = ""
    got: str = ""
    explanation: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "name": self.name, "passed": self.passed,
                "expected": self.expected, "got": self.got, "explanation": list(self.explanation)}


@dataclass(slots=True)
class TestReport:
    __test__ = False

    results: list[CaseResult] = field(default_factory=list)
    universe: set[Rule] = field(default_factory=set)
    exercised: set[Rule] = field(default_factory=set)
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def coverage(self) -> float:
        if not self.universe:
            return 100.0
        return 100.0 * len(self.universe & self.exercised) / len(self.universe)

    @property
    def unexercised(self) -> list[Rule]:
        return sorted(self.universe - self.exercised)


def test_files(root: Path) -> list[Path]:
    # Every entry so named, whatever it is: reading refuses a directory, pipe or broken link.
    return [p for p in yaml_files(root)[0] if p.name.endswith(TEST_SUFFIXES)]


test_files.__test__ = False  # type: ignore[attr-defined]


def coverage_universe(rules: tuple[Rule, ...] | list[Rule]) -> set[Rule]:
    """The rules ``--coverage`` counts: permissions, grants, role assignments (timed ones too)
    and inheritance."""
    return {r for r in rules if r[0] in (R.PERMISSION, R.ROLE_LINK, R.TIMED_ROLE,
                                         R.DEPARTMENT_GRANT)}


def run_tests(path: str | os.PathLike[str], *, progress: Progress | None = None,
              now: float | None = None) -> TestReport:
    """Run every ``*.test.yaml`` under ``path`` against the policies of ``path``; ``progress``
    hears of the ``loading``, ``validating`` and ``testing`` (cases run) phases."""
    root = Path(path)
    if not root.is_dir():
        raise TestFileError([Finding.from_issue(not_a_directory(root))])
    try:
        policy = load_directory(root, progress=progress)
    except PolicyError as exc:
        raise TestFileError([Finding.from_issue(i, "error") for i in exc.issues],
                            policy_findings=True) from None
    files = test_files(root)
    if not files:
        raise TestFileError([Finding("SA300", "error", f"no policy tests (*.test.yaml) in {root}",
                                     str(root), hint=f"see {docs_url('checker', 'test')} for the test "
                                                     "file format")])
    report = TestReport(universe=coverage_universe(policy.rules), files=[str(f) for f in files])
    moment = time.time() if now is None else now
    base = engine.compile_domains(policy.rules)
    specs = [_read_spec(file) for file in files]
    unknown = [finding for file, spec, positions in specs
               for finding in unknown_names(policy, file, spec, positions)]
    if unknown:  # exit 1, as a failing case: the test is wrong, not unreadable
        raise TestFileError(unknown, policy_findings=True)
    cases = sum(len(spec.tests) for _, spec, _ in specs)
    done = 0
    if progress is not None:
        progress("testing", 0, cases)
    for file, spec, positions in specs:
        snapshots = _with_fixtures(policy, base, file, spec, positions)
        for number, case in enumerate(spec.tests):
            line = position_of(positions, ("tests", number))[0]
            report.results.append(_run_case(snapshots, file, line, spec, case, report, moment))
            done += 1
            if progress is not None:
                progress("testing", done, cases)
    return report


def _read_spec(file: Path) -> tuple[str, TestFileSpec, Positions]:
    display = str(file)
    try:
        data, positions = load_yaml(read_text_file(file, display), display)
    except PolicyError as exc:
        raise TestFileError([Finding.from_issue(i, "error") for i in exc.issues]) from None
    try:
        spec = TestFileSpec.model_validate(data if data is not None else {})
    except ValidationError as exc:
        issues = issues_from_validation_error(exc, display, positions, TestFileSpec,
                                              docs_url("checker", "test"))
        raise TestFileError([Finding.from_issue(PolicyIssue(i.message, i.file, i.line, i.column, i.hint,
                                                            "SA301"), "error") for i in issues]) from None
    problems: list[Finding] = []
    for number, case in enumerate(spec.tests):
        kinds = [k for k in (case.check, case.who_can, case.what_can) if k is not None]
        line, column = position_of(positions, ("tests", number))
        if len(kinds) != 1:
            problems.append(Finding("SA301", "error", "a test case needs exactly one of check, who-can, "
                                    "what-can", display, line, column))
        elif case.check is not None and not isinstance(case.expect, str):
            problems.append(Finding("SA301", "error", "a check case expects `allow` or `deny`",
                                    display, line, column))
        elif case.check is None and isinstance(case.expect, str):
            problems.append(Finding("SA301", "error", "a who-can or what-can case expects a list "
                                    "(the exhaustive answer)", display, line, column))
        elif (case.role or case.permission) and case.check is None:
            problems.append(Finding("SA301", "error", "`role` and `permission` belong to check cases",
                                    display, line, column))
        domain = _domain_of(case, spec)
        if domain is None:
            problems.append(Finding("SA301", "error", "no domain: set `domain:` at the top of the file "
                                    "or in the case", display, line, column))
    if spec.fixtures.accounts and spec.domain is None:
        line, column = position_of(positions, ("fixtures",))
        problems.append(Finding("SA301", "error", "fixture accounts need the file's `domain:`",
                                display, line, column))
    if problems:
        raise TestFileError(problems)
    return display, spec, positions


# -- names the cases use ------------------------------------------------------------------


def unknown_names(policy: LoadedPolicy, file: str, spec: TestFileSpec,
                  positions: Positions) -> list[Finding]:
    """SA302 for every name a case uses that neither the policies nor the file's fixtures
    define (a case about a ghost passes with ``expect: deny`` while testing nothing), unless the
    case lists it under ``unknown:``; and for a name listed there that is not an unknown name
    the case uses (a stale exception)."""
    documents = {s.document.domain: s.document for s in policy.documents}
    found: dict[tuple[int | None, int | None, str], Finding] = {}
    for number, case in enumerate(spec.tests):
        _CaseNames(documents, file, spec, positions, found, number, case).run()
    return list(found.values())


class _CaseNames:
    """The name checks of one case; findings go to ``found`` (deduplicated by place and text,
    so a file-level ``domain:`` that is wrong is reported once, not once per case)."""

    def __init__(self, documents: dict[str, DomainDocument], file: str, spec: TestFileSpec,
                 positions: Positions, found: dict[tuple[int | None, int | None, str], Finding],
                 number: int, case: CaseSpec) -> None:
        self.documents, self.file, self.spec, self.positions = documents, file, spec, positions
        self.found, self.case, self.here = found, case, ("tests", number)
        self.used: set[str] = set()  # names of `unknown:` that the case does use
        self.domain = ""

    def run(self) -> None:
        case = self.case
        key, inner = _kind_of(case)
        self.domain = (inner.domain if inner is not None else None) or self.spec.domain or ""
        document = self.documents.get(self.domain)
        if document is None:
            where = (*self.here, key, "domain") if inner is not None and inner.domain else ("domain",)
            self.check("domain", self.domain, where, set(self.documents))
        else:
            self._check_case(document, key)
        for name in case.unknown:
            if name not in self.used:
                self.report((*self.here, "unknown"), f"{name!r} is listed under unknown: but the case "
                            "uses no unknown name by that spelling", name, set(),
                            "remove it from unknown: (the name may have been defined since)")

    def _check_case(self, document: DomainDocument, key: str) -> None:
        case, here = self.case, self.here
        self.accounts = set(document.accounts)
        if self.domain == self.spec.domain:
            self.accounts |= set(self.spec.fixtures.accounts)
        self.vocabulary = {t: set(a) for t, a in R.BUILTIN_VOCABULARY.items()}
        self.vocabulary.update((t, set(a)) for t, a in document.resources.items())
        self.departments = set(document.departments)
        self.sharing = {t: set(levels) for t, levels in document.sharing.items()}
        if case.check is not None:
            self.check("account", case.check.account, (*here, key, "account"), self.accounts, "accounts")
            record = self._record(case.check.record, (*here, key, "record"))
            if record is not None:
                self._action(case.check.action, record.type, (*here, key, "action"))
            if case.role is not None and case.role.startswith("department:"):
                self.check("department", case.role[len("department:"):], (*here, "role"),
                           self.departments, "departments")
            elif case.role is not None and case.role != "grant":
                self.check("role", case.role, (*here, "role"), set(document.roles), "roles")
        elif case.who_can is not None:
            who = case.who_can
            self.check("type", who.type, (*here, key, "type"), set(self.vocabulary), "resources")
            self._action(who.action, who.type, (*here, key, "action"))
            self.check("account", who.owner, (*here, key, "owner"), self.accounts, "accounts")
            self.check("department", who.department, (*here, key, "department"), self.departments,
                       "departments")
            self._shares(who.shares, who.type, (*here, key))
            if who.record is not None:
                self._record(who.record, (*here, key, "record"))
        elif case.what_can is not None:
            self.check("account", case.what_can.account, (*here, key, "account"), self.accounts,
                       "accounts")

    def _action(self, action: str, typ: str, path: KeyPath) -> None:
        known = self.vocabulary.get(typ) or set().union(*self.vocabulary.values())
        self.check("action", action, path, known, qualifier=f" for type {typ!r}" if typ in self.vocabulary
                   else "")

    def _record(self, record: RecordSpec | str, path: KeyPath) -> RecordSpec | None:
        found: RecordSpec | None
        if isinstance(record, str):  # a named record: its fields are checked where it is defined
            path = ("fixtures", "records", record)
            found = self.spec.fixtures.records.get(record)  # an unknown one fails its case
        else:
            found = record
        if found is not None:
            self.check("type", found.type, (*path, "type"), set(self.vocabulary), "resources")
            self.check("account", found.owner, (*path, "owner"), self.accounts, "accounts")
            self.check("department", found.department, (*path, "department"), self.departments,
                       "departments")
            self._shares(found.shares, found.type, path)
        return found

    def _shares(self, shares: list[ShareSpec], typ: str, path: KeyPath) -> None:
        """A share's level must be one the type declares (a share at another level reaches no
        one: a case about it would test nothing), and its account or department must exist."""
        levels = self.sharing.get(typ, set())
        for i, share in enumerate(shares):
            here = (*path, "shares", i)
            self.check("share level", share.level, (*here, "level"), levels,
                       qualifier=f" for type {typ!r}" + ("" if levels else " (it declares no share "
                                                               "levels under `sharing:`)"))
            self.check("account", share.account, (*here, "account"), self.accounts, "accounts")
            self.check("department", share.department, (*here, "department"), self.departments,
                       "departments")

    def check(self, kind: str, name: str | None, path: KeyPath, known: set[str], section: str = "",
              qualifier: str = "") -> None:
        if name is None or name in known:
            return
        if name in self.case.unknown:
            self.used.add(name)
            return
        optional = f"if the case is about an unknown name on purpose, list it: unknown: [{name}]"
        if kind == "domain":
            self.report(path, f"unknown domain {name!r}", name, known,
                        f"the policies define {', '.join(sorted(known)) or 'no domain'}; {optional}")
            return
        elsewhere = [d for d, doc in self.documents.items() if d != self.domain and section
                     and name in getattr(doc, section)]
        hint = (f"{name!r} is in domain {elsewhere[0]!r}, but nothing crosses domains; "
                if elsewhere else "define it in the policies or this file's fixtures; ")
        self.report(path, f"unknown {kind} {name!r}{qualifier} in domain {self.domain!r}", name, known,
                    hint + optional)

    def report(self, path: KeyPath, message: str, name: str, candidates: set[str], hint: str) -> None:
        line, column = position_of(self.positions, path)
        close = difflib.get_close_matches(name, sorted(candidates), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        self.found.setdefault((line, column, message),
                              Finding("SA302", "error", message, self.file, line, column, hint))


def _kind_of(case: CaseSpec) -> tuple[str, CheckSpec | WhoCanSpec | WhatCanSpec | None]:
    if case.check is not None:
        return "check", case.check
    if case.who_can is not None:
        return "who-can", case.who_can
    return "what-can", case.what_can


def _domain_of(case: CaseSpec, spec: TestFileSpec) -> str | None:
    inner = case.check or case.who_can or case.what_can
    return (inner.domain if inner is not None else None) or spec.domain


def _with_fixtures(policy: LoadedPolicy, base: dict[str, Snapshot], file: str, spec: TestFileSpec,
                   positions: Positions) -> dict[str, Snapshot]:
    if not spec.fixtures.accounts:
        return base
    domain = spec.domain or ""
    sourced = next((s for s in policy.documents if s.document.domain == domain), None)
    if sourced is None:
        line, column = position_of(positions, ("domain",))
        raise TestFileError([Finding("SA301", "error", f"fixtures name domain {domain!r}, which the "
                                     "policies do not define", file, line, column)])
    document: DomainDocument = sourced.document
    merged = document.model_copy(update={"accounts": {**document.accounts, **spec.fixtures.accounts}})
    mapped = {("accounts", *path[2:]): where for path, where in positions.items()
              if path[:2] == ("fixtures", "accounts")}
    issues = validate_documents([SourcedDocument(merged, file, mapped)])
    clashes = sorted(set(spec.fixtures.accounts) & set(document.accounts))
    for name in clashes:
        line, column = position_of(positions, ("fixtures", "accounts", name))
        issues.append(PolicyIssue(f"fixture account {name!r} already exists in the policies", file, line,
                                  column, "pick a name the policies do not use", "SA301"))
    if issues:
        raise TestFileError([Finding.from_issue(PolicyIssue(i.message, i.file, i.line, i.column, i.hint,
                                                            "SA301"), "error") for i in issues])
    rules = [r for r in policy.rules if R.domain_of(r) != domain] + compile_document(merged)
    return engine.compile_domains(rules)


def _run_case(snapshots: dict[str, Snapshot], file: str, line: int | None, spec: TestFileSpec,
              case: CaseSpec, report: TestReport, now: float) -> CaseResult:
    domain = _domain_of(case, spec) or ""
    index = snapshots.get(domain)
    if case.check is not None:
        return _run_check(index, file, line, spec, case, case.check, domain, report, now)
    if case.who_can is not None:
        return _run_who_can(index, file, line, spec, case, case.who_can, report, now)
    assert case.what_can is not None  # _read_spec guarantees exactly one kind
    return _run_what_can(index, file, line, case, case.what_can, report, now)


def _record(spec: TestFileSpec, value: RecordSpec | str) -> Record | str:
    if isinstance(value, str):
        named = spec.fixtures.records.get(value)
        if named is None:
            return f"unknown record {value!r}: define it under fixtures.records"
        value = named
    return Record(value.type, owner=value.owner, department=value.department,
                  shares=tuple(share.share() for share in value.shares),
                  attributes=value.attributes)


def _run_check(index: Snapshot | None, file: str, line: int | None,
               spec: TestFileSpec, case: CaseSpec, check: CheckSpec, domain: str,
               report: TestReport, now: float) -> CaseResult:
    record = _record(spec, check.record)
    where = check.record if isinstance(check.record, str) else f"{check.record.type} record"
    name = case.name or f"check {check.account} {check.action} {where} → {case.expect}"
    if isinstance(record, str):
        return CaseResult(file, line, name, False, str(case.expect), record)
    context = check.context.context(now) if check.context is not None else None
    decision = engine.explain(index, check.account, check.action, record, domain, now, context)
    if index is not None:
        _exercise_decision(index, check.account, decision.rules, report)
    got = "allow" if decision.allowed else "deny"
    passed = got == str(case.expect)
    if decision.allowed:
        first = decision.rules[0] if decision.rules else ()
        granted = first[1] if first[:1] == (R.DEPARTMENT_GRANT,) else None
        decided_by = decision.role if decision.role is not None \
            else "grant" if granted is None else f"department:{granted}"
        deciding = {permission_text((r[3], r[4]), str(decision.scope)) for r in decision.rules
                    if r[0] in (R.PERMISSION, R.DEPARTMENT_GRANT)}
        got += f" by role {decided_by}" if decision.role is not None \
            else " by a direct grant" if granted is None else f" by a grant to department {granted}"
        got += " with " + ", ".join(sorted(deciding))
        if case.role is not None and decided_by != case.role:
            passed = False
        if case.permission is not None and case.permission not in deciding:
            passed = False
    if not passed:
        return CaseResult(file, line, name, False, _expectation(case), got, decision.steps)
    return CaseResult(file, line, name, True, _expectation(case), got)


def _expectation(case: CaseSpec) -> str:
    text = str(case.expect)
    if case.role == "grant":
        text += " by a direct grant"
    elif case.role is not None and case.role.startswith("department:"):
        text += f" by a grant to department {case.role[len('department:'):]}"
    elif case.role is not None:
        text += f" by role {case.role}"
    if case.permission is not None:
        text += f" with {case.permission}"
    return text


def _run_who_can(index: Snapshot | None, file: str, line: int | None, spec: TestFileSpec,
                 case: CaseSpec, who: WhoCanSpec, report: TestReport,
                 now: float) -> CaseResult:
    owner, department = who.owner, who.department
    shares = tuple(share.share() for share in who.shares)
    if who.record is not None:
        record = _record(spec, who.record)
        if isinstance(record, str):
            return CaseResult(file, line, case.name or f"who-can {who.action} {who.type}", False,
                              "", record)
        owner, department, shares = record.owner, record.department, shares + record.shares
    name = case.name or f"who-can {who.type}:{who.action}" + (f" owned by {owner}" if owner else "") \
        + (f" in {department}" if department else "") + (" shared" if shares else "")
    got = holders(index, who.action, who.type, now, owner=owner, department=department,
                  shares=shares) if index is not None else []
    if index is not None:
        for account in index.accounts:
            _exercise_key(index, account, (who.type, who.action), report)
    return _compare_sets(file, line, name, list(case.expect), got)


def _run_what_can(index: Snapshot | None, file: str, line: int | None, case: CaseSpec,
                  what: WhatCanSpec, report: TestReport, now: float) -> CaseResult:
    name = case.name or f"what-can {what.account}"
    got = [row["permission"] for row in what_can_rows(index, what.account, now)] if index is not None else []
    if index is not None:
        _exercise_account(index, what.account, report)
    return _compare_sets(file, line, name, list(case.expect), got)


def _compare_sets(file: str, line: int | None, name: str, expected: list[str], got: list[str]) -> CaseResult:
    want, have = set(expected), set(got)
    if want == have:
        return CaseResult(file, line, name, True, ", ".join(sorted(want)), ", ".join(sorted(have)))
    details = []
    if have - want:
        details.append("unexpected: " + ", ".join(sorted(have - want)))
    if want - have:
        details.append("missing: " + ", ".join(sorted(want - have)))
    return CaseResult(file, line, name, False, ", ".join(sorted(want)) or "(nothing)",
                      ", ".join(sorted(have)) or "(nothing)", tuple(details))


# -- coverage -----------------------------------------------------------------------------


def _links_to(index: Snapshot, account: str, role: str) -> Iterator[Rule]:
    """The ``g`` (and ``p8``: timed assignment) rules on every path from the account's assigned
    roles to ``role``."""
    domain = index.name
    info = index.account(account)
    assignments: list[tuple[str, Rule]] = [(assigned, (R.ROLE_LINK, account, assigned, domain))
                                           for assigned in sorted(info.roles)]
    assignments += [(assigned, (R.TIMED_ROLE, account, assigned, domain, R.format_expiry_at(until)))
                    for assigned, until in info.timed_roles]
    for assigned, link in assignments:
        if role not in index.role_closure(assigned):
            continue
        yield link
        for current in index.role_closure(assigned):
            for inherited in index.role_parents.get(current, frozenset()):
                if role in index.role_closure(inherited):
                    yield (R.ROLE_LINK, current, inherited, domain)


def _exercise_decision(index: Snapshot, account: str, rules: tuple[Rule, ...], report: TestReport) -> None:
    for rule in rules:
        report.exercised.add(rule)
        if rule[0] == R.PERMISSION and rule[1] in index.roles:
            report.exercised.update(_links_to(index, account, rule[1]))
    info = index.account(account)
    if info.status is not None and info.status != "active":
        _exercise_account(index, account, report)  # the test shows its rules are neutralised


def _exercise_account(index: Snapshot, account: str, report: TestReport) -> None:
    for held in engine.holdings(index, account):
        report.exercised.add(held.permission.rule)
        if held.role is not None:
            report.exercised.update(_links_to(index, account, held.role))


def _exercise_key(index: Snapshot, account: str, key: tuple[str, str], report: TestReport) -> None:
    for held in engine.holdings(index, account):
        if key in set(engine.expand(index, held.permission.type, held.permission.action)):
            report.exercised.add(held.permission.rule)
            if held.role is not None:
                report.exercised.update(_links_to(index, account, held.role))


# -- output -------------------------------------------------------------------------------


def rule_text(rule: Rule) -> str:
    if rule[0] == R.PERMISSION:
        who = rule[1]
        expires = f" until {rule[6]}" if rule[6] else ""
        return f"{rule[2]}: {who} holds {permission_text((rule[3], rule[4]), rule[5])}{expires}"
    if rule[0] == R.DEPARTMENT_GRANT:
        expires = f" until {rule[6]}" if rule[6] else ""
        return (f"{rule[2]}: department {rule[1]} grants "
                f"{permission_text((rule[3], rule[4]), rule[5])}{expires}")
    if rule[0] == R.TIMED_ROLE:
        return f"{rule[3]}: {rule[1]} → role {rule[2]} until {rule[4]}"
    return f"{rule[3]}: {rule[1]} → role {rule[2]}"


def render_report(report: TestReport, out: Output, *, fmt: str = "text", coverage: bool = False,
                  verbose: bool = False) -> None:
    if fmt == "json":
        payload: dict[str, Any] = {
            "ok": report.ok,
            "passed": len(report.results) - len(report.failures),
            "failed": len(report.failures),
            "files": report.files,
            "results": [r.to_json() for r in report.results],
        }
        if coverage:
            payload["coverage"] = {
                "percent": round(report.coverage, 1),
                "exercised": len(report.universe & report.exercised),
                "total": len(report.universe),
                "unexercised": [list(r) for r in report.unexercised],
            }
        out.data(payload)
        return
    for result in report.results:
        where = f"{result.file}:{result.line}" if result.line is not None else result.file
        if result.passed:
            if verbose:
                out.styled(("PASS ", "green"), (f"{where}: {result.name}", None))
            continue
        out.styled(("FAIL ", "bold red"), (f"{where}: {result.name}", "bold"))
        out.text(f"    expected: {result.expected}")
        out.text(f"    got:      {result.got}")
        for line in result.explanation:
            out.text(f"      {line}", style="dim")
    if coverage:
        missing = report.unexercised
        out.text(f"coverage: {report.coverage:.1f}% of {count(len(report.universe), 'rule')} "
                 f"({len(missing):,} never exercised)", style="bold")
        for rule in missing:
            out.text("  not exercised: " + rule_text(rule), style="yellow")
    passed = len(report.results) - len(report.failures)
    summary = f"{passed:,} passed, {len(report.failures):,} failed ({count(len(report.files), 'file')})"
    out.text(summary, style="green" if report.ok else "bold red")
