"""Fixtures for the settings tests: real SQLite, PostgreSQL and MariaDB databases.

The PostgreSQL and MariaDB servers are started here, once per test session, on 127.0.0.1 on a
free port with their data in a temporary directory, and stopped and deleted at the end. They
run as an unprivileged system user when the tests run as root (both servers refuse root).
Each test gets a fresh database of its own on them.

Without the server binaries the server-backed tests are skipped locally but FAIL when the
``CI`` environment variable is set, so that CI cannot pass by silently skipping them
(``scripts/bootstrap.sh test`` installs the Debian packages).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_core.settings import SettingsStore

DB_USER = "sandbox"
STARTUP_TIMEOUT = 60.0


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user(preferred: str) -> str | None:
    """The user to run a server as: None when not root (run as ourselves), else an unprivileged one."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.fail(f"running as root but neither {preferred!r} nor 'nobody' exists to run the server")


def _private_dir(prefix: str, user: str | None) -> Path:
    # Directly under /tmp: pytest's own tmp dirs are root-only, the service user could not enter them.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _run(cmd: list[str], *, user: str | None, cwd: Path, what: str) -> None:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}", pytrace=False)


class PostgresServer:
    """A throw-away PostgreSQL cluster: ``initdb`` + ``pg_ctl start``, password authentication."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _service_user("postgres")
        self.root = _private_dir("sandbox-pg-", self.user)
        self.data = self.root / "data"
        self.port = _free_port()
        self.password = "pg-" + secrets.token_hex(8)

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        _run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            user=self.user,
            cwd=self.root,
            what="initdb",
        )
        pwfile.unlink()
        # Durability settings off: these databases live for one test session.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        _run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                str(int(STARTUP_TIMEOUT)),
                "-o",
                options,
                "start",
            ],
            user=self.user,
            cwd=self.root,
            what="pg_ctl start",
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
            if self.user is not None:
                cmd = ["runuser", "-u", self.user, "--", *cmd]
            subprocess.run(cmd, cwd=self.root, capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg2

        conn = psycopg2.connect(
            dbname="postgres", user=DB_USER, password=self.password, host="127.0.0.1", port=self.port
        )
        conn.autocommit = True
        return conn

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class MariaDBServer:
    """A throw-away MariaDB server: ``mariadb-install-db`` + ``mariadbd``, a user with a password."""

    def __init__(self, install_db: str, mariadbd: str) -> None:
        self.install_db = install_db
        self.mariadbd = mariadbd
        self.user = _service_user("mysql")
        self.root = _private_dir("sandbox-mariadb-", self.user)
        self.data = self.root / "data"
        self.socket = self.root / "mysqld.sock"
        self.port = _free_port()
        self.password = "my-" + secrets.token_hex(8)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        user_opt = [f"--user={self.user}"] if self.user is not None else []
        _run(
            [
                self.install_db,
                "--no-defaults",
                f"--datadir={self.data}",
                *user_opt,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            user=None,
            cwd=self.root,
            what="mariadb-install-db",
        )
        self.process = subprocess.Popen(
            [
                self.mariadbd,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.root / 'mariadbd.pid'}",
                f"--log-error={self.root / 'error.log'}",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=200",
                *user_opt,
            ],
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                conn = self._root_connection()
                break
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "error.log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"mariadbd did not start:\n{log}", pytrace=False)
                time.sleep(0.2)
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute(f"CREATE USER '{DB_USER}'@'%' IDENTIFIED BY '{self.password}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'%'")

    def _root_connection(self):  # type: ignore[no-untyped-def]
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"mysql://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with contextlib.closing(self._root_connection()) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.closing(self._root_connection()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def _postgres_bindir() -> Path | None:
    candidates = []
    if os.environ.get("SANDBOX_TEST_PG_BINDIR"):
        candidates.append(os.environ["SANDBOX_TEST_PG_BINDIR"])
    # Debian keeps the server binaries off PATH, one folder per major version: newest first.
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(shutil.which("pg_ctl")).resolve().parent))  # type: ignore[arg-type]
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _postgres_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("psycopg2 is not installed: uv sync (dev group) or pip install 'sandbox-core[postgres]'")
    server = PostgresServer(bindir)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    mariadbd = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    if not install_db or not mariadbd:
        _unavailable(
            "MariaDB server binaries (mariadb-install-db, mariadbd) not found: apt-get install mariadb-server"
        )
    try:
        import pymysql  # noqa: F401
    except ImportError:
        _unavailable("pymysql is not installed: uv sync (dev group) or pip install 'sandbox-core[mysql]'")
    server = MariaDBServer(install_db, mariadbd)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mariadb", marks=pytest.mark.mysql),
]
SERVER_BACKENDS = BACKENDS[1:]


def _fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'settings.db'}"
        return
    server = request.getfixturevalue("postgres_server" if backend == "postgres" else "mariadb_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty settings database on each backend in turn."""
    yield from _fresh_database(request.param, request, tmp_path)


@pytest.fixture(params=SERVER_BACKENDS)
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Like ``database_url``, for the server backends only (URLs with a password)."""
    yield from _fresh_database(request.param, request, tmp_path)


@pytest.fixture
def store(database_url: str) -> Iterator[SettingsStore]:
    """A store on a fresh database of each backend in turn, closed afterwards."""
    with SettingsStore(database_url) as opened:
        yield opened
