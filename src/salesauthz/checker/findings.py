"""Findings of ``salesauthz check``: loader errors and lints, with a severity and a stable code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from salesauthz.errors import PolicyIssue

__all__ = ["CODES", "LOADER_CODES", "TARGET_CODES", "Finding", "Severity", "by_code", "select", "title_of"]

Severity = Literal["error", "warning"]

# Every lint code with its default severity and a short title (docs/checker.md has examples).
# Loader codes (SA1xx) are always errors and are documented there too.
CODES: dict[str, tuple[Severity, str]] = {
    "SA201": ("warning", "sub-account holds a permission or scope its parent chain does not"),
    "SA202": ("warning", "grant or role assignment no manager of the account could have made"),
    "SA203": ("warning", "permission duplicated in a role or an account's grants"),
    "SA204": ("warning", "permission subsumed by a wider one (after inheritance)"),
    "SA205": ("warning", "role never assigned"),
    "SA206": ("warning", "account with no department"),
    "SA207": ("warning", "frozen or deactivated account still holding roles or grants"),
    "SA208": ("warning", "frozen or deactivated account with sub-accounts"),
    "SA209": ("warning", "direct grant already expired"),
    "SA211": ("warning", "permission or field rule at scope shared that can never allow anything"),
    "SA212": ("warning", "reporting line that runs against the sub-account hierarchy"),
    "SA213": ("warning", "timed role assignment already expired"),
    "SA214": ("warning", "sensitive action held without a requirement (only in a domain that "
                         "lists sensitive_actions)"),
    "SA215": ("warning", "condition (where:) that can never hold"),
}

# Lints for a storage target, run only when asked for (``salesauthz check --target casbin``).
TARGET_CODES: dict[str, tuple[Severity, str]] = {
    "SA210": ("warning", "name a Casbin store cannot hold (check --target casbin)"),
}

# The loader's codes (models/loader.py, models/validate.py, models/_yaml.py): always errors.
LOADER_CODES: dict[str, str] = {
    "SA100": "malformed rule (from a store)",
    "SA101": "unreadable file (not a regular file, a link loop, not UTF-8) or invalid YAML",
    "SA102": "schema error: wrong shape, unknown key, bad value",
    "SA103": "duplicate key, role or action",
    "SA104": "empty policy file",
    "SA105": "invalid Casbin model (model.conf)",
    "SA106": "model.conf differs from salesauthz's model",
    "SA107": "not a policy directory, or no policy documents in it",
    "SA108": "a resource limit exceeded (file size, nesting depth, number of values, aliases)",
    "SA110": "invalid document",
    "SA111": "domain defined twice",
    "SA112": "reserved or built-in name redeclared",
    "SA113": "name is both a role and an account",
    "SA114": "rule names neither an account nor a role",
    "SA115": "an account with two statuses, departments or parents (rules from a store)",
    "SA120": "unknown department (parent, membership or custom scope; also one from another domain)",
    "SA121": "cycle in the department tree",
    "SA130": "unknown role (assigned or inherited; also one from another domain)",
    "SA131": "cycle in role inheritance",
    "SA140": "unknown parent account",
    "SA141": "sub-account chain has a cycle, or an account is its own parent",
    "SA142": "reporting superior (reports_to) is an unknown account",
    "SA143": "reporting line has a cycle, or an account reports to itself",
    "SA150": "permission set names no resource type",
    "SA151": "role permission with an expiry (only grants expire)",
    "SA152": "unknown resource type",
    "SA153": "unknown action for a resource type",
    "SA160": "field rules for an unknown resource type",
    "SA161": "field rule names an undeclared field",
    "SA162": "share level of an unknown type, naming an unknown action or '*', or allowing nothing",
    "SA170": "condition (where:) tests an attribute the resource type does not declare",
    "SA171": "value of the wrong type in a condition, a requirement or an account attribute",
    "SA172": "unknown operator or malformed test in a condition (where:)",
    "SA173": "requires: ip names something that is not a network",
    "SA174": "requires: hours text that cannot be read, or an unknown time zone",
    "SA175": "requires: names an unknown context key (not mfa, ip or hours)",
}


def title_of(code: str) -> str:
    if code in CODES:
        return CODES[code][1]
    if code in TARGET_CODES:
        return TARGET_CODES[code][1]
    return LOADER_CODES.get(code, "policy problem")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: where it is, how bad, what it is and what to do about it."""

    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    @classmethod
    def from_issue(cls, issue: PolicyIssue, severity: Severity | None = None) -> Finding:
        if severity is None:
            severity = CODES[issue.code][0] if issue.code in CODES else "error"
        return cls(issue.code, severity, issue.message, issue.file, issue.line, issue.column,
                   issue.hint)

    def location(self) -> str:
        return PolicyIssue(self.message, self.file, self.line, self.column).location()

    def escalated(self) -> Finding:
        """The same finding as an error (``--strict``)."""
        return replace(self, severity="error")

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file or "", self.line or 0, self.column or 0, self.code)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
        }


def by_code(findings: Sequence[Finding]) -> list[tuple[str, Severity, int]]:
    """``(code, severity, count)`` for each code and severity found: errors first, then the most
    frequent."""
    counts = Counter((f.code, f.severity) for f in findings)
    return sorted(((code, severity, n) for (code, severity), n in counts.items()),
                  key=lambda item: (item[1] != "error", -item[2], item[0]))


def select(findings: Sequence[Finding], limit: int) -> list[Finding]:
    """At most ``limit`` findings (``0``: all), in file order. When some must be left out, each
    code gets its turn — the first finding of every code, then the second … (errors before
    warnings) — so that one frequent code cannot hide the others."""
    if limit <= 0 or len(findings) <= limit:
        return list(findings)
    queues: dict[tuple[bool, str], list[Finding]] = {}
    for finding in sorted(findings, key=Finding.sort_key):
        queues.setdefault((finding.severity != "error", finding.code), []).append(finding)
    ordered = [queues[key] for key in sorted(queues)]
    picked: list[Finding] = []
    depth = 0
    while len(picked) < limit:
        for queue in ordered:
            if depth < len(queue) and len(picked) < limit:
                picked.append(queue[depth])
        depth += 1
    return sorted(picked, key=Finding.sort_key)
