"""The audit log's page and API (entries are recorded by `bastion.platform.audit`)."""
