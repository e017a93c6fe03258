# Pair and triplet reductions of potentials and descriptors. Included by _kernel.pyx.
