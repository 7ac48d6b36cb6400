"""Throwaway PostgreSQL and MariaDB servers for tests, from the distribution's packages.

Each server lives in a fresh temporary folder, listens on a free localhost port and is stopped
and removed afterwards. Both refuse to run as root, so under root (CI containers) the server
runs as an unprivileged system user that owns the folder. When the binaries are missing the
caller gets :class:`ServerUnavailable` with the package to install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """The server binaries are not installed (or it would not start)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _find(names: list[str], dirs: list[str]) -> str | None:
    for n in names:
        found = shutil.which(n)
        if found:
            return found
        for d in dirs:
            p = Path(d) / n
            if p.is_file():
                return str(p)
    return None


def _pg_bin(name: str) -> str | None:
    dirs = sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True
    )  # the newest major version first
    return _find([name], dirs)


def _runner(
    candidates: tuple[str, ...],
) -> tuple[Callable[[], None] | None, int | None, int | None]:
    """A preexec function dropping root to the first existing user of ``candidates``."""
    if os.geteuid() != 0:
        return None, None, None
    for name in candidates:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        uid, gid = pw.pw_uid, pw.pw_gid

        def drop(uid: int = uid, gid: int = gid) -> None:
            os.setgid(gid)
            os.setuid(uid)

        return drop, uid, gid
    raise ServerUnavailable(f"running as root and none of the users {candidates} exists")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"server exited: {log.read_text(errors='replace')[-800:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise ServerUnavailable(f"server did not listen on {port}: {log.read_text()[-800:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL cluster; yields ``postgresql://shop@127.0.0.1:PORT/postgres``."""
    initdb, pg_ctl, postgres = _pg_bin("initdb"), _pg_bin("pg_ctl"), _pg_bin("postgres")
    if not (initdb and pg_ctl and postgres):
        raise ServerUnavailable(
            "PostgreSQL server binaries not found (apt-get install -y postgresql)"
        )
    drop, uid, gid = _runner(("postgres", "nobody"))
    root = Path(tempfile.mkdtemp(prefix="shopsight-pg-"))
    data = root / "data"
    port = _free_port()
    log = root / "server.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        if uid is not None and gid is not None:
            os.chown(root, uid, gid)
        subprocess.run(
            [initdb, "-D", str(data), "-U", "shop", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            preexec_fn=drop,
            cwd=root,
        )
        proc = subprocess.Popen(
            [
                postgres,
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={root}",
                "-c",
                "fsync=off",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=drop,
            cwd=root,
        )
        _wait_port(port, proc, log)
        url = f"postgresql://shop@127.0.0.1:{port}/postgres"
        import adbc_driver_postgresql.dbapi as pg

        for _ in range(100):  # listening is not yet accepting: retry briefly
            try:
                with pg.connect(url) as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
                break
            except Exception:
                time.sleep(0.2)
        else:
            raise ServerUnavailable(
                f"PostgreSQL did not accept connections: {log.read_text()[-800:]}"
            )
        yield url
    except subprocess.CalledProcessError as exc:
        raise ServerUnavailable(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mariadb_server() -> Iterator[str]:
    """A running MariaDB server; yields ``mysql://root@127.0.0.1:PORT/shop``."""
    mysqld = _find(["mariadbd", "mysqld"], ["/usr/sbin", "/usr/libexec"])
    install = _find(["mariadb-install-db", "mysql_install_db"], ["/usr/bin", "/usr/scripts"])
    if not (mysqld and install):
        raise ServerUnavailable(
            "MariaDB server binaries not found (apt-get install -y mariadb-server)"
        )
    drop, uid, gid = _runner(("mysql", "nobody"))
    root = Path(tempfile.mkdtemp(prefix="shopsight-my-"))
    data = root / "data"
    port = _free_port()
    log = root / "server.log"
    proc: subprocess.Popen[bytes] | None = None
    user = pwd.getpwuid(uid if uid is not None else os.geteuid()).pw_name
    try:
        if uid is not None and gid is not None:
            os.chown(root, uid, gid)
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                f"--user={user}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            preexec_fn=drop,
            cwd=root,
        )
        proc = subprocess.Popen(
            [
                mysqld,
                "--no-defaults",
                f"--datadir={data}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--socket={root}/mysqld.sock",
                f"--pid-file={root}/mysqld.pid",
                "--skip-grant-tables=0",
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-log-bin",
                f"--user={user}",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=drop,
            cwd=root,
        )
        _wait_port(port, proc, log)
        import pymysql

        for _ in range(100):
            try:
                conn = pymysql.connect(host="127.0.0.1", port=port, user="root")
                with conn.cursor() as cur:
                    cur.execute("CREATE DATABASE shop")
                conn.close()
                break
            except pymysql.err.OperationalError:
                time.sleep(0.2)
        else:
            raise ServerUnavailable(f"MariaDB did not accept connections: {log.read_text()}")
        yield f"mysql://root@127.0.0.1:{port}/shop"
    except subprocess.CalledProcessError as exc:
        raise ServerUnavailable(
            f"mariadb-install-db failed: {exc.stderr.decode(errors='replace')[-800:]}"
        ) from exc
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
