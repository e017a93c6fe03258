# The pooled output block of the neighbour search, implemented in pairpool.pyx and used by neighbors.pyx (a
# cross-module C call: neighbors imports miniff._ext.pairpool at load time and takes it from its C API).

from libc.stdint cimport int64_t

cdef tuple nl_pair_arrays(int64_t total)
