"""Sessions: a representative's console and a Jump Client meet at the site, which relays
and records the bytes between them (see README.md)."""
