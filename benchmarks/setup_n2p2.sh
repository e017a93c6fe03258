#!/usr/bin/env bash
# Build the peer n2p2 (libnnp and nnp-predict) from an n2p2 checkout, for benchmarks/peer_n2p2.py.
# n2p2 (github.com/CompPhysVienna/n2p2) is GPL-3: it is built and run here as an external program; none of its
# code or files are part of miniff.  Needs g++, make and the Debian packages libeigen3-dev, libgsl-dev and an MPI
# (libopenmpi-dev).  Usage: bash benchmarks/setup_n2p2.sh /path/to/n2p2 [jobs]
# Afterwards the program is /path/to/n2p2/bin/nnp-predict (pass that folder to peer_n2p2.py with --n2p2).
set -euo pipefail
src=${1:?usage: setup_n2p2.sh /path/to/n2p2-checkout [jobs]}
jobs=${2:-2}
[ -f "$src/src/makefile" ] || { echo "setup_n2p2.sh: $src/src/makefile not found (not an n2p2 checkout)" >&2; exit 1; }
for tool in g++ mpic++ make; do
  command -v "$tool" >/dev/null || {
    echo "setup_n2p2.sh: needs $tool (apt-get install g++ make libopenmpi-dev)" >&2; exit 1; }
done
[ -d /usr/include/eigen3 ] || { echo "setup_n2p2.sh: needs Eigen (apt-get install libeigen3-dev)" >&2; exit 1; }
[ -f /usr/include/gsl/gsl_math.h ] || { echo "setup_n2p2.sh: needs GSL (apt-get install libgsl-dev)" >&2; exit 1; }
mkdir -p "$src/include" "$src/lib" "$src/bin"   # absent from partial checkouts
log=$(mktemp)
trap 'rm -f "$log"' EXIT
(cd "$src/src" && make -j"$jobs" COMP=gnu nnp-predict >"$log" 2>&1) || { tail -30 "$log"; exit 1; }
[ -x "$src/bin/nnp-predict" ] || { echo "setup_n2p2.sh: build finished without bin/nnp-predict" >&2; exit 1; }
echo "n2p2 libnnp and nnp-predict built in $src/bin ($src/lib)"
