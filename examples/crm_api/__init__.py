"""The salesauthz example CRM: a FastAPI app on SQLite with the bundled sample organisation.

Run it with ``python -m examples.crm_api`` (from the repository root); see ``docs/web/fastapi.md``.
"""

from .app import create_app

__all__ = ["create_app"]
