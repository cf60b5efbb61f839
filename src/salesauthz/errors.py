"""One exception tree for salesauthz.

Every error carries structured fields as attributes, and a message a person can act on.
Each class subclasses the nearest built-in exception, so callers that only know Python's
own exceptions still catch them sensibly.

Web applications map them as their docstrings say (``NotAuthenticatedError`` → 401,
``ForbiddenError`` → 403, ``NotFoundError`` → 404, ``PolicyError`` → a deploy-time failure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AuditError",
    "AuditKeyError",
    "AuditVerificationError",
    "AuthorizationError",
    "ConflictError",
    "EscalationError",
    "ForbiddenError",
    "NotAuthenticatedError",
    "NotFoundError",
    "PolicyError",
    "PolicyIssue",
    "SalesAuthzError",
    "StorageError",
    "UnknownNameError",
    "UsageError",
]


class SalesAuthzError(Exception):
    """Base class of every error raised by salesauthz."""


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem found in a policy document or rule set.

    ``file``/``line``/``column`` locate it (1-based; ``None`` when the input was not a file,
    e.g. rules read from a store); ``code`` is a stable identifier (``SA…``) for tooling.
    """

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    code: str = "SA100"

    def location(self) -> str:
        """``file:line:col`` as far as known (``<rules>`` when there is no file)."""
        where = self.file or "<rules>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        text = f"{self.location()}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class PolicyError(SalesAuthzError, ValueError):
    """A policy document, model or rule set is invalid; nothing was loaded or changed.

    ``issues`` lists every problem found (each with file, line and column where known);
    ``file``/``line``/``column`` repeat those of the first one for convenience.
    """

    def __init__(self, issues: Sequence[PolicyIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [PolicyIssue(issues)]
        self.issues: tuple[PolicyIssue, ...] = tuple(issues)
        first = self.issues[0] if self.issues else PolicyIssue("invalid policy")
        self.file = first.file
        self.line = first.line
        self.column = first.column
        lines = [str(issue) for issue in self.issues]
        summary = lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n  " + "\n  ".join(lines)
        super().__init__(summary)


class UnknownNameError(SalesAuthzError, KeyError):
    """An administrative operation named a domain, account, role or department that does not exist.

    (Decisions never raise this: an unknown name in ``check`` is simply a deny.)
    """

    def __init__(self, kind: str, name: str, domain: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.domain = domain
        where = f" in domain {domain!r}" if domain is not None else ""
        self.message = f"unknown {kind} {name!r}{where}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class AuthorizationError(SalesAuthzError, PermissionError):
    """Base of the errors a web application turns into an HTTP error response."""


class NotAuthenticatedError(AuthorizationError):
    """No identity could be established for the request: answer **401** with ``WWW-Authenticate``."""


class ForbiddenError(AuthorizationError):
    """The identity is known but not allowed to do this: answer **403**."""

    def __init__(self, message: str, *, account: str | None = None, action: str | None = None,
                 type: str | None = None, domain: str | None = None) -> None:
        self.account = account
        self.action = action
        self.type = type
        self.domain = domain
        super().__init__(message)


class NotFoundError(AuthorizationError):
    """The record exists but must stay invisible to this identity: answer **404**."""


class EscalationError(ForbiddenError):
    """An administrative operation would grant more than the actor holds; nothing was changed.

    ``missing`` names the permission(s) or scope the actor lacks.
    """

    def __init__(self, message: str, *, actor: str, operation: str, target: str,
                 missing: Sequence[str] = (), domain: str | None = None) -> None:
        self.actor = actor
        self.operation = operation
        self.target = target
        self.missing = tuple(missing)
        super().__init__(message, account=actor, domain=domain)


class StorageError(SalesAuthzError, OSError):
    """The rule store could not be read or written; the operation changed nothing.

    ``url`` is the store's address with any password masked.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class ConflictError(SalesAuthzError, RuntimeError):
    """The rules of ``domain`` changed in the store after the decision behind this change was
    made on them (another process committed first), and deciding again on the fresh rules kept
    meeting newer changes; nothing was written. A web application answers **409**; retrying the
    whole request later is safe.

    ``expected`` is the version of the domain's rules the decision was made on, ``actual`` the
    store's version at the failed commit (``None`` when unknown), ``attempts`` how many times it
    was decided.
    """

    def __init__(self, domain: str, *, expected: int, actual: int | None = None, attempts: int = 1,
                 url: str | None = None) -> None:
        self.domain = domain
        self.expected = expected
        self.actual = actual
        self.attempts = attempts
        self.url = url
        found = f"version {actual}" if actual is not None else "a newer version"
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"the rules of domain {domain!r} changed while the change was being decided "
                         f"(decided on version {expected}, the store holds {found}){tries}: nothing "
                         "was written; decide again on the current rules")


class UsageError(SalesAuthzError, ValueError):
    """A command was given bad arguments or input it cannot read: the ``salesauthz`` command
    prints the message and exits with status 2."""


class AuditError(SalesAuthzError, ValueError):
    """The audit trail cannot be verified, sealed or checkpointed as asked (e.g. a malformed
    checkpoint document). Nothing was written."""


class AuditKeyError(AuditError):
    """An audit key is malformed, or the key a record, anchor or checkpoint was sealed with is not
    configured in this process (``SALESAUTHZ_AUDIT_KEY`` / ``SALESAUTHZ_AUDIT_RETIRED_KEYS``).

    ``key_id`` names the key that is needed (``None`` when the key itself is malformed). Writes to
    a trail sealed with a key this process lacks are refused: nothing was written.
    """

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        self.key_id = key_id
        super().__init__(message)


class AuditVerificationError(AuditError):
    """The audit trail of ``domain`` was changed outside salesauthz: a record, its chain, its anchor
    or its agreement with a checkpoint is broken. ``sequence`` is the first record concerned
    (``None`` when the problem is not one record's, e.g. a missing anchor); ``problem`` says what
    was found. A write refused for this reason changed nothing.
    """

    def __init__(self, domain: str, sequence: int | None, problem: str) -> None:
        self.domain = domain
        self.sequence = sequence
        self.problem = problem
        where = f" at record {sequence}" if sequence is not None else ""
        super().__init__(f"audit trail of domain {domain!r} is broken{where}: {problem}")
