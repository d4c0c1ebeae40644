"""Logging for rule entry points: everything, including a failure's traceback, in the log.

Snakemake shows the path of a failed job's log; the error message (which names the file
and field at fault) has to be in that file, not only on a scrolled-away terminal.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def rule_logging(log_file: str | Path | None) -> Iterator[logging.Logger]:
    """Send log records to ``log_file`` and stderr; log any exception before re-raising."""
    logger = logging.getLogger("neurossl")
    logger.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    try:
        yield logger
    except Exception:
        logger.exception("failed")
        raise
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
