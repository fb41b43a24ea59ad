"""A throwaway PostgreSQL server on 127.0.0.1 for the warehouse test (`make test-spark`): the system's
PostgreSQL binaries (Debian's postgresql package), a temporary data directory, a free port, trust
authentication for one local user; stopped, and its directory removed, however the tests end."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER = "churn"
DATABASE = "postgres"


def binaries() -> Path:
    """The newest PostgreSQL server's bin directory (`initdb`, `pg_ctl`); PG_BIN overrides it."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise RuntimeError("no PostgreSQL server binaries: apt-get install postgresql (or set PG_BIN to the "
                           "directory holding initdb and pg_ctl)")
    return Path(on_path).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, the user to run it as (`postgres`, else `nobody`)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(user).pw_name
    raise RuntimeError("running as root without a `postgres` or `nobody` user to run PostgreSQL as")


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, object]]:
    """Start a server; yield the connection keywords (host, port, user, database); stop it at exit."""
    bin_dir = binaries()
    folder = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    data, log = folder / "data", folder / "server.log"
    user = _server_user()
    as_user = [] if user is None else ["runuser", "-u", user, "--"]
    if user is not None:
        shutil.chown(folder, user=user)

    def run(*args: object) -> None:
        subprocess.run([*as_user, *map(str, args)], check=True, capture_output=True, text=True, timeout=120)

    port = free_port()
    started = False
    try:
        run(bin_dir / "initdb", "-D", data, "-U", USER, "--auth=trust", "--no-locale", "--encoding=UTF8",
            "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off -c jit=off"
        run(bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        started = True
        yield {"host": "127.0.0.1", "port": port, "user": USER, "database": DATABASE}
    except subprocess.CalledProcessError as error:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {error.cmd} exited {error.returncode}\n"
                           f"{error.stdout}{error.stderr}{tail}") from error
    finally:
        if started:
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
