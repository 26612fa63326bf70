"""Where studies live: a SQLite file by default, PostgreSQL for many workers and machines.

Both go through Optuna's SQLAlchemy-backed :class:`optuna.storages.RDBStorage`, with
heartbeats: a worker killed mid-trial stops beating, and the next worker to look marks its
trial failed and, through :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, enqueues
it again.
Completed trials are committed as they finish, so an interrupted sweep loses nothing and is
resumed by running the same command again.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import warnings
from pathlib import Path
from typing import Any

from initlab.errors import ConfigError
from initlab.optional import require

__all__ = ["HEARTBEAT_SECONDS", "default_url", "open_storage", "redact"]

HEARTBEAT_SECONDS = 10
_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql")


def default_url(study: str, root: str | Path = "runs") -> str:
    """``sqlite:///runs/<study>.db`` (the folder is created)."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", study).strip("-") or "study"
    return f"sqlite:///{folder / safe}.db"


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and reports)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///path`` URL (``:memory:`` for ``sqlite://``)."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return path.split("?", 1)[0] or ":memory:"


def _sqlite_connection(path: str) -> sqlite3.Connection:
    """A connection to the study file, set up for several local worker processes.

    * ``timeout=60``: a writer waits for another's lock instead of failing;
    * write-ahead log: readers never block the writer (and the file stays consistent if a
      worker is killed mid-write);
    * ``synchronous=NORMAL``: a commit is durable against a killed process, not against power
      loss; it spares the two fsyncs per commit that otherwise cost ~5 ms each, of which a
      trial makes a dozen (its parameters, attributes, states);
    * ``check_same_thread=False``: Optuna's heartbeat thread shares the connection pool.
    """
    connection = sqlite3.connect(path, timeout=60, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def open_storage(url: str, *, retries: int = 2, heartbeat: int = HEARTBEAT_SECONDS) -> Any:
    """An Optuna RDBStorage for ``url`` with heartbeats and failed-trial retries.

    Raises:
        ConfigError: an unsupported URL scheme, or a database that cannot be reached (the
            message gives the redacted URL and the driver's reason).
    """
    scheme = url.split(":", 1)[0]
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"Storage URL {redact(url)!r} has scheme {scheme!r}; use sqlite:///path.db or "
            "postgresql://user:password@host:port/database."
        )
    optuna = require("optuna", "sweep storage")
    storages = optuna.storages
    options: dict[str, Any] = {"pool_pre_ping": True}
    if scheme == "sqlite":
        options = {"creator": functools.partial(_sqlite_connection, _sqlite_path(url))}
    try:
        with warnings.catch_warnings():
            # Heartbeats are marked experimental in Optuna; they are what crash safety rests on.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return storages.RDBStorage(
                url,
                engine_kwargs=options,
                heartbeat_interval=heartbeat,
                grace_period=heartbeat * 3,
                heartbeat_stale_trial_callback=storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=retries
                ),
            )
    except Exception as error:  # SQLAlchemy/driver errors come in many types
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"Cannot open storage {redact(url)}: {reason}") from None
