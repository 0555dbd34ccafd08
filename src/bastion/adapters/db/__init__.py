"""adapters.db layer of Bastion."""
