"""A throwaway PostgreSQL server on loopback for the distributed-storage tests.

Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it when missing).
The server runs from a temporary data folder, as the ``postgres`` system user when the tests run
as root (``initdb`` refuses root), listens on 127.0.0.1 only, and is stopped at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        message = "PostgreSQL binaries not found (Debian package 'postgresql')"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run should have installed them.")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="initlab-pg-"))
    root.chmod(0o777)
    data, socket_dir, log = root / "data", root / "socket", root / "server.log"
    socket_dir.mkdir()
    socket_dir.chmod(0o777)
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        shutil.chown(socket_dir, user="postgres")
    port = _free_port()
    subprocess.run(
        _as_server_user([initdb, "-D", str(data), "-U", "initlab", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        # The form the README writes: SQLAlchemy 2.1 reads it as psycopg 3.
        yield f"postgresql://initlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
