"""A scratch PostgreSQL server for the tests (no tests here): Debian's ``postgresql`` package, a cluster made by
``initdb`` in a temporary folder, listening on a free port of 127.0.0.1 only, removed when stopped.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user and ``initdb``/``pg_ctl``
run as that user (``runuser``); as anyone else they run as the caller. Authentication is ``trust`` on loopback: the
server is reachable from this machine only and lives as long as the test run.

``.ci/run`` starts one for the whole run and exports its URL as ``FACELEDGER_TEST_POSTGRES``::

    url=$(python tests/postgres.py start /tmp/pg)   # prints postgresql://faceledger@127.0.0.1:PORT/postgres
    python tests/postgres.py stop /tmp/pg

Without that variable the ``postgres_url`` fixture (tests/conftest.py) starts one of its own for the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

USER = "faceledger"


def binaries() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (the newest version installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the tests' servers take one each)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start(folder: Path) -> str:
    """Make a cluster in ``folder`` (which must not exist or be empty), start it, return its URL."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = free_port()
    run = {"check": True, "capture_output": True, "text": True}
    try:
        subprocess.run(
            _as_owner(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            **run,  # type: ignore[call-overload]
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(
            _as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(folder / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            **run,  # type: ignore[call-overload]
        )
    except subprocess.CalledProcessError as exc:
        log = folder / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr or exc.stdout}\n{tail}") from None
    (folder / "url").write_text(f"postgresql://{USER}@127.0.0.1:{port}/postgres\n")
    return (folder / "url").read_text().strip()


def stop(folder: Path) -> None:
    """Stop the cluster in ``folder`` and remove the folder."""
    bin_dir = binaries()
    if bin_dir is not None and (folder / "data" / "postmaster.pid").exists():
        subprocess.run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in {"start", "stop"}:
        sys.exit("usage: python tests/postgres.py start|stop FOLDER")
    if sys.argv[1] == "start":
        print(start(Path(sys.argv[2])))
    else:
        stop(Path(sys.argv[2]))
