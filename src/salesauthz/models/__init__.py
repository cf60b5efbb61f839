"""Pydantic models of policy documents, and their loading, validation and compilation."""

from .compile import compile_document, decompile_rules
from .documents import (
    AccountDocument,
    CustomScope,
    DepartmentDocument,
    DomainDocument,
    PermissionSet,
    RoleDocument,
)
from .loader import LoadedPolicy, load_directory

__all__ = [
    "AccountDocument",
    "CustomScope",
    "DepartmentDocument",
    "DomainDocument",
    "LoadedPolicy",
    "PermissionSet",
    "RoleDocument",
    "compile_document",
    "decompile_rules",
    "load_directory",
]
