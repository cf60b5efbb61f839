"""salesauthz: embeddable policy-as-code authorization for sales CRMs.

```python
from salesauthz import Authorizer, Record
authz = Authorizer.from_directory("policies")
authz.check("rep_e1a", "update", Record("customer", owner="rep_e1b"), domain="acme")
```
"""

from ._version import __version__
from .audit import AuditRecord, AuditTrail
from .authorizer import Authorizer
from .delegation import Admin, OffboardPlan
from .errors import (
    AuthorizationError,
    ConflictError,
    EscalationError,
    ForbiddenError,
    NotAuthenticatedError,
    NotFoundError,
    PolicyError,
    PolicyIssue,
    SalesAuthzError,
    StorageError,
    UnknownNameError,
)
from .scopes import Coverage, Scope, ScopeKind
from .values import AccountView, CacheInfo, Decision, Record, ScopeFilter, Share

__all__ = [
    "AccountView",
    "Admin",
    "AuditRecord",
    "AuditTrail",
    "AuthorizationError",
    "Authorizer",
    "CacheInfo",
    "ConflictError",
    "Coverage",
    "Decision",
    "EscalationError",
    "ForbiddenError",
    "NotAuthenticatedError",
    "NotFoundError",
    "OffboardPlan",
    "PolicyError",
    "PolicyIssue",
    "Record",
    "SalesAuthzError",
    "Scope",
    "ScopeFilter",
    "ScopeKind",
    "Share",
    "StorageError",
    "UnknownNameError",
    "__version__",
]
