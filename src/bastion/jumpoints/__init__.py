"""Jumpoints' site side: the credential vault and the SSH Jump Items reached through a
Jumpoint (R44)."""
