"""A real PgBouncer for the tests: transaction pooling in front of a fresh database.

PgBouncer 1.18 passes no ``options`` startup parameter (so no per-test ``search_path``
schema as in tests/databases.py): each test gets its own database, created with
``CREATE DATABASE`` on the PostgreSQL server and dropped afterwards. PgBouncer refuses
to run as root; as root it is started with ``-u nobody`` and its files are made readable
for that user."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from backfill.store.db import normalize_url

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# The server of the PostgreSQL pass of `make test` (its PG_TEST_URL), whichever pass runs this.
SERVER_URL = (
    os.environ.get("BACKFILL_TEST_DATABASE_URL")
    or os.environ.get("PG_TEST_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)
# What the Database sends in the startup parameter 'options' without PgBouncer; behind it
# PgBouncer sets it on each server connection it opens (the recipe of docs/deploy.md).
CONNECT_QUERY = "SET statement_timeout = 30000; SET lock_timeout = 10000"


@dataclass(frozen=True)
class Bouncer:
    port: int
    database: str
    log: Path
    server: URL

    def url(self, *, option: bool = True) -> str:
        """The database through PgBouncer, with ``?pgbouncer=true`` unless ``option`` is False."""
        user = self.server.username or "postgres"
        url = f"postgresql://{user}@127.0.0.1:{self.port}/{self.database}"
        return url + "?pgbouncer=true" if option else url

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(server: URL, database: str, port: int, directory: Path, pool_size: int) -> str:
    host = server.host or "127.0.0.1"
    return f"""\
[databases]
{database} = host={host} port={server.port or 5432} dbname={database} connect_query='{CONNECT_QUERY}'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "users.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
server_round_robin = 0
"""


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited with {proc.returncode}: {log.read_text(errors='replace')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"pgbouncer did not listen on 127.0.0.1:{port} within 30 s: {log.read_text()}")


@contextmanager
def fresh_database(server: URL) -> Iterator[str]:
    name = f"bf_pgb_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@contextmanager
def pgbouncer(pool_size: int = 4) -> Iterator[Bouncer]:
    """PgBouncer in ``pool_mode = transaction`` on a free port, in front of a new database.

    A small server pool (``pool_size`` server connections for any number of clients)
    makes transactions of one client connection land on different server connections."""
    if not Path(PGBOUNCER).exists():
        raise AssertionError(
            f"PgBouncer is not installed ({PGBOUNCER}): `make test` installs it as root "
            "(apt-get install pgbouncer); else install it and run the tests again"
        )
    server = make_url(normalize_url(SERVER_URL)).difference_update_query(["options"])
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    directory.chmod(0o755)  # readable for the user PgBouncer switches to
    log = directory / "pgbouncer.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with fresh_database(server) as database:
            port = _free_port()
            (directory / "users.txt").write_text(f'"{server.username or "postgres"}" ""\n')
            (directory / "pgbouncer.ini").write_text(_config(server, database, port, directory, pool_size))
            for f in directory.iterdir():
                f.chmod(0o644)
            cmd = [PGBOUNCER, str(directory / "pgbouncer.ini")]
            if os.geteuid() == 0:
                cmd[1:1] = ["-u", "nobody"]
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            _wait_listening(proc, port, log)
            try:
                yield Bouncer(port=port, database=database, log=log, server=server)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
