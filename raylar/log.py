"""The one logging set-up of raylar: every record carries the Ray worker rank."""

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s [%(rank)s] %(name)s: %(message)s"


def _current_rank() -> str:
    # Ray Train (V1) sets up a session only inside train_loop_per_worker. Elsewhere
    # (driver, Ray tasks, plain scripts) the record names the process kind instead.
    if "ray" not in sys.modules:
        return "driver"
    try:
        from ray.train._internal.session import get_session

        session = get_session()
        if session is not None:
            return f"rank {session.world_rank}"
    except (ImportError, AttributeError):
        pass
    import ray

    if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
        return f"task pid {os.getpid()}"
    return "driver"


class RankFilter(logging.Filter):
    """Add the ``rank`` attribute to every record that passes through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "rank"):
            record.rank = _current_rank()
        return True


def setup_logging(level: int | str | None = None) -> None:
    """Configure the ``raylar`` logger once per process; later calls only change the level."""
    level = level or os.environ.get("RAYLAR_LOG_LEVEL", "INFO")
    logger = logging.getLogger("raylar")
    logger.setLevel(level)
    if any(getattr(handler, "_raylar", False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._raylar = True
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RankFilter())
    logger.addHandler(handler)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """Return a logger under ``raylar`` with the shared set-up applied."""
    setup_logging()
    return logging.getLogger(name if name.startswith("raylar") else f"raylar.{name}")
