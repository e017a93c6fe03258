"""Side-by-side benchmarks of miniff against its peers.

Run from the repository root::

    python -m benchmarks run [--quick] [--only neighbors,descriptors,nn,md,training,lammps]

Every case builds identical, seeded inputs for all tools (:mod:`benchmarks._structures`),
checks that the tools computed the same thing, then times them interleaved
(:mod:`benchmarks._timing`). Results go to a table on stdout and to
``benchmarks/results.json`` (:mod:`benchmarks._report`). See ``benchmarks/README.md``.
"""

#: Version of the layout of ``results.json``; bump it when a field changes meaning.
RESULTS_SCHEMA = 1
