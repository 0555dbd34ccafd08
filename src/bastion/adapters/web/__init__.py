"""adapters.web layer of Bastion."""
