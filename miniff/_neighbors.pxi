# Cell-list neighbour search. Included by _kernel.pyx.
