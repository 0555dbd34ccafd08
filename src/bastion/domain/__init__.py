"""domain layer of Bastion."""
