"""``ase.db`` databases as a source and a sink of structures: SQLite files and PostgreSQL servers.

A database is named by a path ending in ``.db`` (SQLite, through ``ase.db``) or by a URL
``postgresql://user:password@host:port/dbname`` (also ``postgres://``; libpq options such as
``?host=/run/postgresql`` for a local socket). PostgreSQL needs ASE's server backends and the psycopg2 driver:
``pip install 'miniff[postgresql]'`` (packages ``ase-db-backends`` and ``psycopg2-binary``; ASE 3.24 moved the
server backends out of ``ase`` itself).

Rows are read into :class:`miniff.kernel.Cell` objects by :func:`read_db` (behind :func:`miniff.io.read_cells`)
and written by :func:`write_db_rows` (behind :func:`miniff.io.write_cells`). Messages never show a password:
URLs are printed through :func:`redact_url`.
"""

import re
from pathlib import Path

__all__ = ["DB_URL_PREFIXES", "is_db_url", "is_db_path", "redact_url", "read_db", "write_db_rows"]

#: URL prefixes taken as database servers.
DB_URL_PREFIXES = ("postgresql://", "postgres://", "mysql://", "mariadb://")
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_DB_SUFFIXES = (".db",)
_INSTALL_HINT = "pip install 'miniff[postgresql]' (packages ase-db-backends and psycopg2-binary)"


def is_db_url(source):
    """True for a database server URL (``postgresql://...``)."""
    return isinstance(source, str) and source.lower().startswith(DB_URL_PREFIXES)


def is_db_path(path):
    """True for a path taken as an SQLite ase.db file (``*.db``)."""
    return str(path).lower().endswith(_DB_SUFFIXES)


def redact_url(url):
    """The URL with its password replaced by ``***`` (for messages and labels)."""
    head, sep, tail = url.partition("://")
    if "@" in tail:
        creds, _, host = tail.rpartition("@")
        user, colon, _ = creds.partition(":")
        return f"{head}{sep}{user}:***@{host}" if colon else url
    return re.sub(r"(password=)[^&\s]*", r"\1***", url, flags=re.IGNORECASE)


def _password(url):
    tail = url.partition("://")[2]
    if "@" in tail:
        creds = tail.rpartition("@")[0]
        if ":" in creds:
            return creds.partition(":")[2]
    match = re.search(r"password=([^&\s]*)", url, flags=re.IGNORECASE)
    return match.group(1) if match else None


def _scrub(message, url):
    """``message`` with the URL's password (if any) replaced by ``***``."""
    password = _password(url)
    message = str(message).strip()
    return message.replace(password, "***") if password else message


def _is_postgres(target):
    return isinstance(target, str) and target.lower().startswith(_POSTGRES_PREFIXES)


def _psycopg2(label):
    try:
        import ase_db_backends.postgresql  # noqa: F401  (ase.db.connect imports it for postgresql:// URLs)
        import psycopg2
    except ImportError as error:
        raise ImportError(f"{label}: PostgreSQL databases need ASE's server backends and psycopg2: "
                          f"{_INSTALL_HINT} ({error})") from error
    return psycopg2


def _check_postgres(url, label, need_table):
    """Connect once with psycopg2 to turn connection problems into clear errors before ASE touches the server.

    Raises ``ConnectionError`` (server unreachable, authentication failed, no such database) or ``ValueError``
    (malformed URL; with ``need_table``, a database without ase.db's ``systems`` table), naming ``label``.
    """
    psycopg2 = _psycopg2(label)
    try:
        con = psycopg2.connect(url, connect_timeout=10)
    except psycopg2.ProgrammingError as error:   # libpq cannot parse the URL
        raise ValueError(f"{label} is not a valid PostgreSQL URL ({_scrub(error, url)}); expected "
                         f"postgresql://user:password@host:port/dbname") from None
    except psycopg2.OperationalError as error:
        message = " ".join(_scrub(error, url).split())
        if "connection option" in message or "invalid URI" in message:   # a malformed port, option...
            raise ValueError(f"{label} is not a valid PostgreSQL URL ({message}); expected "
                             f"postgresql://user:password@host:port/dbname") from None
        raise ConnectionError(f"cannot connect to the PostgreSQL database {label}: {message}") from None
    try:
        if need_table:
            with con.cursor() as cur:
                cur.execute("SELECT EXISTS (SELECT 1 FROM information_schema.tables "
                            "WHERE table_name = 'systems' AND table_schema = ANY (current_schemas(false)))")
                exists = cur.fetchone()[0]
            if not exists:
                raise ValueError(f"source: the PostgreSQL database {label} has no ase.db table 'systems' (empty, or "
                                 f"not written by ase.db / miniff.io.write_cells)")
    finally:
        con.close()


def _check_sqlite(path, label):
    """Reading an SQLite file that is no ase.db database is a ValueError (ASE would create tables in it)."""
    import sqlite3

    try:
        con = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)   # read-only, creates nothing
        try:
            found = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'systems'").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as error:
        raise ValueError(f"source: {label!r} is not a valid ASE SQLite database: {error}") from error
    if found is None:
        raise ValueError(f"source: {label!r} has no ase.db table 'systems' (empty, or not an ASE database)")


def _backend_errors():
    """Exception types of the database drivers that a query can raise (beyond ValueError/KeyError)."""
    import sqlite3

    errors = [sqlite3.DatabaseError]
    try:
        import psycopg2

        errors.append(psycopg2.Error)
    except ImportError:
        pass
    return tuple(errors)


def _connect(target, label, reading):
    import ase.db

    if _is_postgres(target):
        _check_postgres(target, label, need_table=reading)
        return ase.db.connect(target, type="postgresql")
    if is_db_url(target):   # MySQL / MariaDB: ASE's backends as they are (untested here)
        return ase.db.connect(target, type="extract_from_name")
    if reading:
        _check_sqlite(target, label)
        return ase.db.connect(target, type="db", create_indices=False, use_lock_file=False)
    return ase.db.connect(target, type="db", append=True)


def read_db(target, label, idx, selection, group, group_key, energy_keys, forces_keys):
    """Cells of the rows of an ase.db database (see :func:`miniff.io.read_cells` for the arguments).

    Parameters
    ----------
    target : str
        SQLite path or server URL.
    label : str
        Name of the database in messages (the URL without password).
    idx : int or slice
        Rows to keep after ``selection`` (in id order).
    selection : str, int, list or None
        ``ase.db`` selection (``"group=bulk,natoms<50"``, an id, a list of key=value strings).
    group : str or None
        Label of rows without their own (``group_key``, else the key ``group``).
    group_key : str or None
        Key-value pair whose value becomes the row's group label.
    energy_keys, forces_keys : tuple of str
        Names accepted for targets outside the calculator results.

    Returns
    -------
    list of miniff.kernel.Cell
    """
    from miniff.io.atoms import GROUP_KEY, atoms_to_cell

    db = _connect(target, label, reading=True)
    window, idx = _window(idx)
    window["sort"] = "id"   # a stable order (SQL promises none without ORDER BY) that offset/limit rely on
    if window.get("limit") == 0:
        return []
    try:
        with db:   # one connection for the whole read (ASE's server backend otherwise connects again for every row)
            rows = list(db.select(selection, **window) if selection is not None else db.select(**window))
    except (ValueError, KeyError, *_backend_errors()) as error:
        raise ValueError(f"selection: {selection!r} is not valid for database {label!r}: "
                         f"{_scrub(error, target) if is_db_url(target) else error}") from None
    rows = [rows[idx]] if isinstance(idx, int) else rows[idx]
    cells = []
    for row in rows:
        atoms = row.toatoms()
        kvp = dict(row.key_value_pairs)
        data = dict(row.data) if row.get("data") is not None else {}
        try:
            cell = atoms_to_cell(atoms, extra=kvp, data=data, energy_keys=energy_keys, forces_keys=forces_keys)
        except ValueError as error:
            raise ValueError(f"row id={row.id} of {label!r}: {error}") from error
        if group_key is not None and kvp.get(group_key) is not None:
            cell.meta[GROUP_KEY] = str(kvp[group_key])
        if group is not None:
            cell.meta.setdefault(GROUP_KEY, str(group))
        cells.append(cell)
    return cells


def _window(idx):
    """``(select kwargs, rest)``: a plain forward slice becomes the query's offset and limit (only those rows leave
    the server); anything else (negative bounds, steps, one index) is applied to the rows afterwards."""
    if not isinstance(idx, slice) or idx.step not in (None, 1):
        return {}, idx
    start = 0 if idx.start is None else idx.start
    if start < 0 or (idx.stop is not None and idx.stop < 0):
        return {}, idx
    window = {"offset": start} if start else {}
    if idx.stop is not None:
        window["limit"] = max(idx.stop - start, 0)
    return window, slice(None)


def write_db_rows(target, images, key_value_pairs=None):
    """Add ``ase.Atoms`` as rows of a database, in one transaction.

    The calculator results of each image (a ``SinglePointCalculator``: energy eV, forces eV/Å, stress eV/Å³)
    become the row's results; ``info["group"]`` and ``info["predicted_energy"]`` key-value pairs;
    ``arrays["predicted_forces"]`` ``[N, 3]``, ``info["predicted_stress"]`` ``[6]`` and non-ASE species labels
    go to the row's data.

    Parameters
    ----------
    target : str
        SQLite path or server URL (created when missing; a server database must exist).
    images : list of ase.Atoms
    key_value_pairs : dict or None
        Extra key-value pairs written on every row (str, int, float or bool values), e.g. ``{"model": "nn-v2"}``.
    """
    import numpy as np

    from miniff.io.atoms import (
        ASE_GROUP,
        ASE_PREDICTED_ENERGY,
        ASE_PREDICTED_FORCES,
        ASE_PREDICTED_STRESS,
        ASE_SPECIES,
    )

    extra = dict(key_value_pairs or {})
    for key, value in extra.items():
        if not isinstance(key, str) or isinstance(value, (list, tuple, dict, np.ndarray)) or value is None:
            raise TypeError(f"key_value_pairs: {key!r} must map a string to a str, int, float or bool, got "
                            f"{type(value).__name__}")
    label = redact_url(target) if is_db_url(target) else repr(str(target))
    db = _connect(target, label, reading=False)
    try:
        with db:  # one transaction
            for atoms in images:
                kvp = dict(extra)
                data = {}
                if ASE_GROUP in atoms.info:
                    kvp[ASE_GROUP] = atoms.info[ASE_GROUP]
                if ASE_PREDICTED_ENERGY in atoms.info:
                    kvp[ASE_PREDICTED_ENERGY] = float(atoms.info[ASE_PREDICTED_ENERGY])
                if ASE_PREDICTED_FORCES in atoms.arrays:
                    data[ASE_PREDICTED_FORCES] = np.array(atoms.arrays[ASE_PREDICTED_FORCES])
                if ASE_PREDICTED_STRESS in atoms.info:
                    data[ASE_PREDICTED_STRESS] = np.array(atoms.info[ASE_PREDICTED_STRESS], dtype=float)
                if ASE_SPECIES in atoms.arrays:
                    data[ASE_SPECIES] = np.array(atoms.arrays[ASE_SPECIES]).tolist()
                db.write(atoms, key_value_pairs=kvp, data=data)
    except _backend_errors()[1:] as error:   # server errors (the SQLite ones keep their type)
        raise ValueError(f"dest: writing to {label} failed: {_scrub(error, target)}") from None
