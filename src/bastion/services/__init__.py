"""services layer of Bastion."""
