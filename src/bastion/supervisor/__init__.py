"""The base layer, its own process: listening sockets, release slots, the install journal,
workers, crash recovery.
"""
