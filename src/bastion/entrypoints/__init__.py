"""entrypoints layer of Bastion."""
