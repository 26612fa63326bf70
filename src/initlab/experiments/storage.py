"""Where studies live: a SQLite file by default, PostgreSQL for many workers and machines.

Both go through Optuna's SQLAlchemy-backed :class:`optuna.storages.RDBStorage`, with
heartbeats: a worker killed mid-trial stops beating, and the next worker to look marks its
trial failed and, through :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, enqueues
it again (at most :data:`RETRIES` times). PostgreSQL URLs are written as SQLAlchemy 2.1 reads
them: ``postgresql://`` is psycopg 3 (the ``sweep`` extra installs it).
Completed trials are committed as they finish, so an interrupted sweep loses nothing and is
resumed by running the same command again.
"""

from __future__ import annotations

import functools
import importlib
import re
import sqlite3
import warnings
from pathlib import Path
from typing import Any

from initlab.errors import ConfigError
from initlab.optional import MissingDependencyError, require

__all__ = [
    "DEFAULT_ROOT",
    "GRACE_BEATS",
    "HEARTBEAT_SECONDS",
    "RETRIES",
    "default_url",
    "open_storage",
    "redact",
]

HEARTBEAT_SECONDS = 10
GRACE_BEATS = 3  # a trial whose heartbeat is this many beats old is stale (its worker is gone)
RETRIES = 2  # how many more times the work of a killed or interrupted trial is run
CONNECT_SECONDS = 10  # a server that does not answer is an error after this, not a hang
DEFAULT_ROOT = "runs"
# SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the psycopg2 form is kept for old URLs.
_DRIVERS = {"postgresql": "psycopg", "postgresql+psycopg": "psycopg",
            "postgresql+psycopg2": "psycopg2"}  # fmt: skip
_FORMS = "sqlite:///path/to/study.db or postgresql://user:password@host:port/database"


def default_url(study: str, root: str | Path = DEFAULT_ROOT) -> str:
    """``sqlite:///runs/<study>.db`` (nothing is created: :func:`open_storage` does that)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", study).strip("-") or "study"
    return f"sqlite:///{Path(root) / safe}.db"


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


def _check_sqlite_file(url: str, path: str, create: bool) -> None:
    """A missing study file is an error when reading, and its folder must exist when creating
    one (only the default folder ``runs/`` is made), so a typo never leaves files behind."""
    if path == ":memory:":
        return
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"Storage {url!r} names a folder, not a file; give {_FORMS}.")
    if file.exists():
        return
    if not create:
        raise ConfigError(
            f"No study storage at {file}: the file does not exist. Run `initlab sweep` first, "
            "or pass --storage with the URL the sweep used."
        )
    folder = file.parent
    if folder == Path(DEFAULT_ROOT):
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise ConfigError(
            f"Storage {url!r}: folder {folder} does not exist; create it first or choose "
            "another path."
        )


def _require_driver(scheme: str) -> None:
    driver = _DRIVERS[scheme]
    try:
        importlib.import_module(driver)
    except ImportError:
        raise MissingDependencyError(
            f"Storage scheme {scheme}:// needs the driver {driver!r}, which is not installed. "
            "Install it with: pip install 'initlab[sweep]'"
        ) from None


def open_storage(
    url: str,
    *,
    create: bool = False,
    retries: int = RETRIES,
    heartbeat: int = HEARTBEAT_SECONDS,
    connect_seconds: int = CONNECT_SECONDS,
) -> Any:
    """An Optuna RDBStorage for ``url`` with heartbeats and bounded retries of killed trials.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql://user:password@host:port/database``
            (``postgresql+psycopg2://`` too).
        create: whether a missing SQLite file may be created (a sweep) or is an error (a
            report): reading never writes a file.
        retries: how many times a trial failed by heartbeat is enqueued again.
        heartbeat: seconds between a running trial's heartbeats.
        connect_seconds: how long to wait for a database server to answer.

    Raises:
        ConfigError: an unsupported URL scheme, a missing file or folder, a missing driver, or
            a database that cannot be reached (the message gives the redacted URL and the
            driver's reason).
    """
    scheme = _scheme(url)
    optuna = require("optuna", "sweep storage")
    storages = optuna.storages
    options = _engine_options(url, scheme, create=create, connect_seconds=connect_seconds)
    try:
        with warnings.catch_warnings():
            # Heartbeats are marked experimental in Optuna; they are what crash safety rests on.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return storages.RDBStorage(
                url,
                engine_kwargs=options,
                heartbeat_interval=heartbeat,
                grace_period=heartbeat * GRACE_BEATS,
                heartbeat_stale_trial_callback=storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=retries
                ),
            )
    except Exception as error:  # SQLAlchemy/driver errors come in many types
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[0] if lines else type(error).__name__
        raise ConfigError(f"Cannot open storage {redact(url)}: {reason}") from None


def _scheme(url: str) -> str:
    """The URL's scheme (``sqlite``, ``postgresql``...), checked to be one initlab supports."""
    if not isinstance(url, str) or ":" not in url:
        raise ConfigError(f"Storage URL {url!r} is not a URL; use {_FORMS}.")
    scheme = url.split(":", 1)[0]
    if scheme != "sqlite" and scheme not in _DRIVERS:
        raise ConfigError(
            f"Storage URL {redact(url)!r} has scheme {scheme!r}; supported: sqlite, "
            f"{', '.join(_DRIVERS)}. Use {_FORMS}."
        )
    return scheme


def _engine_options(
    url: str, scheme: str, *, create: bool, connect_seconds: int
) -> dict[str, Any]:
    """SQLAlchemy engine options: the study file's connection, or the server's timeouts."""
    if scheme == "sqlite":
        path = _sqlite_path(url)
        _check_sqlite_file(url, path, create)
        return {"creator": functools.partial(_sqlite_connection, path)}
    _require_driver(scheme)
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": connect_seconds}}
