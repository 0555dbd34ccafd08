"""The machine: Status > Basics, factory reset, shut down, `/check_health` and `/metrics`."""
