"""One log set-up for every appliance process: the supervisor, its workers, the command."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging() -> None:
    """Timestamped lines on standard error, INFO and up; Alembic says only what went wrong
    (a start migrates the schema every time, and its progress lines would repeat)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
