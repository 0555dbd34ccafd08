"""Bastion: a self-hosted privileged remote access appliance."""
