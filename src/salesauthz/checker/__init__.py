"""The ``salesauthz`` command for policy authors."""
