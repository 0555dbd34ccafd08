"""Installing base and site releases: plan, estimate, licence, schedule and progress."""
