"""The base layer: the supervisor that owns the sockets and runs the application worker."""
