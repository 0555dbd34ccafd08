"""adapters layer of Bastion."""
