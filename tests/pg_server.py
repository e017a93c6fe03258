"""A throw-away PostgreSQL server for the ase.db tests (``initdb`` + ``pg_ctl`` in a temporary folder).

:func:`postgres_server` starts a private server on a free 127.0.0.1 port with password authentication and
stops it (and removes its folder) when the ``with`` block ends, whatever happens inside. ``initdb`` refuses to
run as root: then the server binaries run as the ``postgres`` account when it exists, else as ``nobody``
(through ``subprocess``'s ``user=``, no ``sudo`` needed). The binaries are looked up on ``PATH``, then in
Debian's ``/usr/lib/postgresql/<version>/bin``.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

ENABLE_HINT = ("install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`) and the client "
               "extra (`pip install 'miniff[postgresql]'`)")
USER = "miniff"
PASSWORD = "s3cret-pw"


def find_binaries():
    """Folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[-2].split(".")], reverse=True)
    candidates.extend(versions)
    for folder in candidates:
        if all(os.access(os.path.join(folder, name), os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def missing_requirement():
    """Why the server cannot be started here (a message with how to enable it), or None."""
    try:
        import ase_db_backends.postgresql  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError as error:
        return f"PostgreSQL client missing ({error}); {ENABLE_HINT}"
    if find_binaries() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) not found; {ENABLE_HINT}"
    return None


def _run_as():
    """``subprocess`` keyword arguments that drop root to an unprivileged account (empty when not root)."""
    if os.geteuid() != 0:
        return {}, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}, entry
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists for initdb")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, as_user, env, cwd, timeout=120):
    # cwd: the server's own folder; the unprivileged account may not be allowed into the caller's (e.g. /root/...)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
                            cwd=cwd, **as_user)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class PostgresServer:
    """A running server: ``url(dbname)`` and ``create_database()``."""

    def __init__(self, port):
        self.host = "127.0.0.1"
        self.port = port
        self.user = USER
        self.password = PASSWORD

    def url(self, dbname, password=None):
        password = self.password if password is None else password
        return f"postgresql://{self.user}:{password}@{self.host}:{self.port}/{dbname}"

    def create_database(self):
        """A new, empty database; returns its URL."""
        import psycopg2

        name = "t_" + uuid.uuid4().hex[:12]
        con = psycopg2.connect(self.url("postgres"))
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}")
        finally:
            con.close()
        return self.url(name)


@contextlib.contextmanager
def postgres_server():
    """Start a private server; yield a :class:`PostgresServer`; always stop it and remove its files."""
    bindir = find_binaries()
    as_user, entry = _run_as()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
    if entry is not None:
        env["HOME"] = entry.pw_dir if os.path.isdir(entry.pw_dir) else "/"
        env["USER"] = entry.pw_name
    # under /tmp when dropping root: the account must be able to reach the folder (TMPDIR may be under /root)
    base = "/tmp" if entry is not None and os.path.isdir("/tmp") else None
    root = tempfile.mkdtemp(prefix="miniff-pg-", dir=base)
    data = os.path.join(root, "data")
    log = os.path.join(root, "server.log")
    started = False
    try:
        pwfile = os.path.join(root, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        if entry is not None:
            for path in (root, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        _run([os.path.join(bindir, "initdb"), "-D", data, "-U", USER, f"--pwfile={pwfile}",
              "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], as_user, env, root)
        last_error = None
        for _ in range(3):   # the free port may be taken between the probe and the start
            port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
            try:
                _run([os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60", "-o", options,
                      "start"], as_user, env, root)
            except RuntimeError as error:
                last_error = error
                continue
            started = True
            break
        if not started:
            with contextlib.suppress(OSError):
                last_error = RuntimeError(f"{last_error}\nserver log:\n{open(log).read()}")
            raise last_error
        server = PostgresServer(port)
        _wait_ready(server)
        yield server
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], as_user, env, root)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server, timeout=30.0):
    import psycopg2

    end = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(server.url("postgres")).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)
