"""``DescriptorStore``: an LMDB environment of structure records (``records.py``) and named index lists.

Why LMDB: one memory-mapped file with copy-on-write B-trees; every write transaction commits atomically (a
killed writer leaves the last committed state, never a half-written record), any number of processes read
concurrently while one writes, and values of any size are read without parsing a container format.  Records
are raw arrays with a checksum (never pickles), so a damaged page is detected and named.

Databases inside the environment:

- ``records``: 32-byte record key (``keys.record_key``) -> record bytes;
- ``meta``: ``b"format"`` -> the record format; ``b"index:<name>"`` -> JSON ``{"descriptor_key", "species",
  "n_features", "keys": [hex, ...], "grad"}``, the ordered structures of one prepared data set.
"""

import json
import os
from pathlib import Path

import lmdb

from miniff.store.records import RECORD_FORMAT, CorruptRecordError, decode_record

__all__ = ["DescriptorStore", "DEFAULT_MAP_SIZE", "StoreIndexError"]

#: Largest size an LMDB store may grow to (bytes; a sparse file, only what is written takes disk space).
DEFAULT_MAP_SIZE = 1 << 40


#: Open environments: (folder, pid) -> [env, records db, meta db, writable, users].
_OPEN = {}


class StoreIndexError(KeyError):
    """A named data set (index) that the store does not hold."""


class DescriptorStore:
    """An on-disk store of descriptor records (see the module docstring).

    Parameters
    ----------
    path : str or Path
        A folder (created for writing).
    readonly : bool
        Open for reading only (any number of processes may do so while one writes).
    map_size : int
        Largest size of the store, bytes.
    """

    def __init__(self, path, readonly=False, map_size=DEFAULT_MAP_SIZE):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"path: {str(self.path)!r} is a file; a descriptor store is a folder")
        if readonly and not (self.path / "data.mdb").exists():
            raise FileNotFoundError(f"path: no descriptor store at {str(self.path)!r}")
        self.readonly = bool(readonly)
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        self.map_size = int(map_size)
        self._handle = None
        self._open()
        fmt = self.get_meta(b"format")
        if fmt is None and not self.readonly:
            with self.env.begin(write=True) as txn:
                txn.put(b"format", str(RECORD_FORMAT).encode(), db=self._meta)
        elif fmt is not None and int(fmt) != RECORD_FORMAT:
            raise ValueError(f"path: store {str(self.path)!r} has record format {int(fmt)}, this miniff writes "
                             f"{RECORD_FORMAT}; prepare a new store")

    def _open(self):
        """Share one LMDB environment per folder and process (LMDB allows only one): opened for writing when the
        folder is writable, so that readers and a writer of one process can coexist."""
        key = (str(self.path.resolve()), os.getpid())
        handle = _OPEN.get(key)
        if handle is None and any(k[0] == key[0] and k[1] != key[1] for k in _OPEN):
            raise RuntimeError(f"the store {str(self.path)!r} was opened before this process was forked and LMDB "
                               f"cannot reopen it here: give DataLoaders multiprocessing_context='spawn' (or "
                               f"'forkserver'), or open the store only in the workers")
        if handle is None:
            writable = os.access(self.path, os.W_OK)
            env = lmdb.open(str(self.path), map_size=self.map_size if writable else 0, max_dbs=4,
                            readonly=not writable, lock=writable, readahead=False, subdir=True)
            handle = _OPEN[key] = [env, env.open_db(b"records", create=writable), env.open_db(b"meta", create=writable),
                                   writable, 0]
        if not handle[3] and not self.readonly:
            raise ValueError(f"path: {str(self.path)!r} is not writable")
        handle[4] += 1
        self._handle, self._key = handle, key

    @property
    def env(self):
        """The ``lmdb.Environment`` of this process."""
        return self._handle_here()[0]

    def _handle_here(self):
        """``[env, records db, meta db, writable, users]`` of this process (reopened after a fork)."""
        if self._key[1] != os.getpid():
            self._open()
        return self._handle

    @property
    def _records(self):
        return self._handle_here()[1]

    @property
    def _meta(self):
        return self._handle_here()[2]

    def __repr__(self):
        return f"DescriptorStore({str(self.path)!r}, records={self.n_records})"

    def __getstate__(self):  # DataLoader workers reopen the store read-only
        return {"path": str(self.path)}

    def __setstate__(self, state):
        self.__init__(state["path"], readonly=True)

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self.close()

    def close(self):
        """Release the LMDB environment (closed when no other DescriptorStore of this process uses it)."""
        handle, self._handle = self._handle, None
        if handle is None or self._key[1] != os.getpid():
            return
        handle[4] -= 1
        if handle[4] == 0:
            _OPEN.pop(self._key, None)
            handle[0].close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ records
    @property
    def n_records(self):
        """Number of records held."""
        with self.env.begin(db=self._records) as txn:
            return txn.stat(self._records)["entries"]

    def has(self, keys):
        """Which of the 32-byte ``keys`` are present: a list of bool."""
        with self.env.begin(db=self._records) as txn:
            return [txn.get(k) is not None for k in keys]

    def put_many(self, items):
        """Write ``[(key, record bytes), ...]`` in one transaction (all of them or, if interrupted, none)."""
        if self.readonly:
            raise ValueError("this store is open read-only")
        with self.env.begin(write=True, db=self._records) as txn:
            for key, data in items:
                txn.put(key, data)

    def raw(self, key):
        """The bytes of the record ``key`` (32 bytes or hex)."""
        key = bytes.fromhex(key) if isinstance(key, str) else key
        with self.env.begin(db=self._records) as txn:
            data = txn.get(key)
            if data is None:
                raise KeyError(f"store {str(self.path)!r} has no record {key.hex()}")
            return bytes(data)

    def get(self, key):
        """The verified record ``key``: ``(arrays, info)`` (see :func:`~miniff.store.records.decode_record`)."""
        key = bytes.fromhex(key) if isinstance(key, str) else key
        return decode_record(self.raw(key), key.hex())

    def verify(self, keys=None):
        """Check the checksums of ``keys`` (hex or bytes; default every record); return the keys checked.

        Raises
        ------
        CorruptRecordError
            Naming the first damaged record.
        """
        n = 0
        with self.env.begin(db=self._records) as txn:
            items = txn.cursor() if keys is None else (
                (k, txn.get(k)) for k in (bytes.fromhex(x) if isinstance(x, str) else x for x in keys))
            for key, data in items:
                if data is None:
                    raise CorruptRecordError(bytes(key).hex(), "missing")
                decode_record(bytes(data), bytes(key).hex())
                n += 1
        return n

    # ------------------------------------------------------------------ meta
    def get_meta(self, name):
        """Raw bytes of meta entry ``name`` or None."""
        with self.env.begin(db=self._meta) as txn:
            v = txn.get(name)
            return None if v is None else bytes(v)

    def put_index(self, name, index):
        """Store the JSON-able dict ``index`` as data set ``name`` (atomically replacing an older one)."""
        if self.readonly:
            raise ValueError("this store is open read-only")
        with self.env.begin(write=True, db=self._meta) as txn:
            txn.put(f"index:{name}".encode(), json.dumps(index).encode())

    def index(self, name="default"):
        """The data set ``name`` written by :func:`~miniff.store.prepare.prepare_store`."""
        raw = self.get_meta(f"index:{name}".encode())
        if raw is None:
            raise StoreIndexError(f"name: store {str(self.path)!r} holds no data set {name!r} "
                                  f"(data sets: {self.index_names()})")
        return json.loads(raw)

    def index_names(self):
        """Names of the data sets held."""
        with self.env.begin(db=self._meta) as txn:
            return sorted(bytes(k)[6:].decode() for k, _ in txn.cursor() if bytes(k).startswith(b"index:"))
