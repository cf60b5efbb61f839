"""Runnable examples of salesauthz (``python -m examples.crm_api``)."""
