# cython: language_level=3
"""Output memory pool of miniff's neighbour search and descriptor Jacobians (private): ``neighbor_pool`` (inspect,
limit, clear), ``nl_pair_arrays`` (``pairpool.pxd``, used by ``neighbors.pyx``), the pair arrays of one list in one
pooled block, and ``pooled_empty``, a float64 array in a pooled block (the per-pair Jacobian of
``eval_descriptors``).
"""

# The pair arrays of one list (48 bytes per pair) live in one block. A fresh block costs the kernel
# zero-filling every page on first touch, as much time as the search itself for large lists, so the
# block of a list that is no longer referenced goes back to a small pool and the next list of a
# similar size reuses it. The arrays are numpy views of a _NLBlock; the block returns to the pool
# when the last view dies (always with the GIL held: the pool needs no lock). The per-pair descriptor
# Jacobians ([P, F, 3], ``pooled_empty``, often several times the size of the list) use the same pool.

from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free

import math

import numpy as np

from miniff._ext.common cimport _nl_align
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["neighbor_pool", "pooled_empty"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef extern from *:
    """
    /* Large blocks: 2 MB aligned and marked for transparent huge pages where the OS has them (a first
       touch then faults in 2 MB at a time instead of 4 kB), like numpy does for its large arrays. */
    #include <stdlib.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    static char* miniff_nl_block_alloc(size_t size) {
        void* ptr = NULL;
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (size >= ((size_t) 4 << 20)) {
            if (posix_memalign(&ptr, (size_t) 2 << 20, size) != 0)
                return NULL;
            madvise(ptr, size, MADV_HUGEPAGE);
            return (char*) ptr;
        }
    #endif
        return (char*) malloc(size);
    }
    """
    char* miniff_nl_block_alloc(size_t size) noexcept nogil


cdef extern from "Python.h":
    int PyTraceMalloc_Track(unsigned int domain, uintptr_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, uintptr_t ptr)


# tracemalloc domain of the pair-list blocks (kept blocks stay traced: they are memory miniff holds)
cdef unsigned int _NL_TRACE_DOMAIN = 0x6d666e6c


cdef enum:
    _NL_POOL_SLOTS = 4   # a list and a Jacobian, each while the next one is made

cdef char* _nl_pool_ptr[_NL_POOL_SLOTS]
cdef Py_ssize_t _nl_pool_size[_NL_POOL_SLOTS]
cdef Py_ssize_t _nl_pool_limit = 1 << 30   # bytes kept at most (sum over the slots)


cdef void _nl_block_free(char* ptr) noexcept:
    if ptr != NULL:
        PyTraceMalloc_Untrack(_NL_TRACE_DOMAIN, <uintptr_t> ptr)
        free(ptr)


cdef void _nl_pool_put(char* ptr, Py_ssize_t size) noexcept:
    """Keep a block for reuse (evicting the smallest kept one if needed) or free it."""
    cdef int k, slot = -1
    cdef Py_ssize_t kept = 0
    for k in range(_NL_POOL_SLOTS):
        kept += _nl_pool_size[k]
    for k in range(_NL_POOL_SLOTS):
        if _nl_pool_ptr[k] == NULL:
            slot = k
            break
    if slot < 0:
        slot = 0
        for k in range(1, _NL_POOL_SLOTS):
            if _nl_pool_size[k] < _nl_pool_size[slot]:
                slot = k
        if _nl_pool_size[slot] >= size:
            _nl_block_free(ptr)
            return
    if kept - _nl_pool_size[slot] + size > _nl_pool_limit:
        _nl_block_free(ptr)
        return
    _nl_block_free(_nl_pool_ptr[slot])
    _nl_pool_ptr[slot] = ptr
    _nl_pool_size[slot] = size


cdef char* _nl_pool_take(Py_ssize_t need, Py_ssize_t* size) noexcept:
    """A kept block of at least ``need`` bytes (at most 4x as large), or NULL."""
    cdef int k, best = -1
    for k in range(_NL_POOL_SLOTS):
        if (_nl_pool_ptr[k] != NULL and _nl_pool_size[k] >= need and _nl_pool_size[k] <= 4 * need + 65536
                and (best < 0 or _nl_pool_size[k] < _nl_pool_size[best])):
            best = k
    if best < 0:
        return NULL
    cdef char* ptr = _nl_pool_ptr[best]
    size[0] = _nl_pool_size[best]
    _nl_pool_ptr[best] = NULL
    _nl_pool_size[best] = 0
    return ptr


cdef class _NLBlock:
    """Raw memory of the pair arrays of one list (private), exported as a writable byte buffer."""
    cdef char* ptr
    cdef Py_ssize_t size
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __cinit__(self, Py_ssize_t need):
        self.ptr = _nl_pool_take(need, &self.size)
        if self.ptr == NULL:
            self.ptr = miniff_nl_block_alloc(need)
            self.size = need
            if self.ptr == NULL:
                raise MemoryError(f"cannot allocate {need} bytes (pooled block of a pair list or a Jacobian)")
            PyTraceMalloc_Track(_NL_TRACE_DOMAIN, <uintptr_t> self.ptr, need)
        self.shape[0] = self.size
        self.strides[0] = 1

    def __getbuffer__(self, Py_buffer* buf, int flags):
        buf.buf = self.ptr
        buf.obj = self
        buf.len = self.size
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = "B"
        buf.ndim = 1
        buf.shape = self.shape
        buf.strides = self.strides
        buf.suboffsets = NULL
        buf.internal = NULL

    def __releasebuffer__(self, Py_buffer* buf):
        pass

    def __dealloc__(self):
        if self.ptr != NULL:
            _nl_pool_put(self.ptr, self.size)
            self.ptr = NULL


def neighbor_pool(limit=None, clear=False):
    """Output memory pool of the neighbour search (private).

    Parameters
    ----------
    limit : int or None
        New limit, bytes kept at most (0 disables the pool).
    clear : bool
        Free the kept blocks.

    Returns
    -------
    (bytes kept, limit)
    """
    global _nl_pool_limit
    cdef int k
    if limit is not None:
        _nl_pool_limit = max(0, int(limit))
    if clear or limit is not None:
        for k in range(_NL_POOL_SLOTS):
            if clear or _nl_pool_size[k] > _nl_pool_limit:
                _nl_block_free(_nl_pool_ptr[k])
                _nl_pool_ptr[k] = NULL
                _nl_pool_size[k] = 0
    return int(sum(_nl_pool_size[k] for k in range(_NL_POOL_SLOTS))), int(_nl_pool_limit)


cdef tuple nl_pair_arrays(int64_t total):
    """j [P] int32, S [P, 3] int32, D [P, 3] float64, d [P] float64 in one (pooled) block."""
    cdef Py_ssize_t o_s = _nl_align(4 * total)
    cdef Py_ssize_t o_d = o_s + _nl_align(12 * total)
    cdef Py_ssize_t o_r = o_d + _nl_align(24 * total)
    cdef Py_ssize_t end = o_r + _nl_align(8 * total)
    raw = np.frombuffer(_NLBlock(end + 64), dtype=np.uint8)
    # align the start on 64 bytes
    shift = (-raw.ctypes.data) % 64
    raw = raw[shift:shift + end]
    return (raw[:4 * total].view(np.int32),
            raw[o_s:o_s + 12 * total].view(np.int32).reshape(total, 3),
            raw[o_d:o_d + 24 * total].view(np.float64).reshape(total, 3),
            raw[o_r:o_r + 8 * total].view(np.float64))


def pooled_empty(shape):
    """An uninitialised C-contiguous float64 array of ``shape`` (64-byte aligned) in a block of the pool: the
    block of an array of similar size that is no longer referenced is reused, and this one's goes back to the
    pool when it dies, so that repeated calls do not pay the page faults of fresh memory (private).

    Parameters
    ----------
    shape : tuple of int
        Non-negative sizes.

    Returns
    -------
    ndarray of ``shape``, float64, holding anything (the caller initialises it)
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"pooled_empty: negative size in shape {shape}")
    nbytes = 8 * math.prod(shape)
    raw = np.frombuffer(_NLBlock(nbytes + 64), dtype=np.uint8)
    shift = (-raw.ctypes.data) % 64
    return raw[shift:shift + nbytes].view(np.float64).reshape(shape)
