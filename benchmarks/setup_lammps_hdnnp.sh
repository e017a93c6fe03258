#!/usr/bin/env bash
# Build a LAMMPS with the ML-HDNNP package (pair_style hdnnp) linked against n2p2's libnnp and libnnpif, for the
# LAMMPS test of written n2p2 potentials (tests/io, environment variable MINIFF_LMP_HDNNP) and the libnnp peer of
# benchmarks/peer_n2p2.py (--lammps).  LAMMPS and n2p2 are GPL: both are built and run here as external programs;
# none of their code or files are part of miniff.
#
# Usage: bash benchmarks/setup_lammps_hdnnp.sh N2P2_CHECKOUT LAMMPS_SOURCE BUILD_DIR [jobs]
#   N2P2_CHECKOUT  an n2p2 source tree (github.com/CompPhysVienna/n2p2); it is copied to BUILD_DIR/n2p2 and built
#                  there with OpenMP (-fopenmp) and without MPI (-DN2P2_NO_MPI): libnnp, libnnpif, nnp-predict.
#                  The checkout itself is not modified.
#   LAMMPS_SOURCE  a LAMMPS source tree with src/ML-HDNNP and cmake/ (a release tarball, `apt-get source lammps`,
#                  or `git archive` of github.com/lammps/lammps; versions from 2021-09 on have ML-HDNNP).
#   BUILD_DIR      where the builds go; afterwards the programs are BUILD_DIR/lammps/lmp (serial LAMMPS with
#                  OpenMP: OMP_NUM_THREADS sets the threads of libnnp) and BUILD_DIR/n2p2/bin/nnp-predict.
# Needs cmake, g++, make, libeigen3-dev and libgsl-dev (Debian package names).
set -euo pipefail
n2p2_src=${1:?usage: setup_lammps_hdnnp.sh N2P2_CHECKOUT LAMMPS_SOURCE BUILD_DIR [jobs]}
lammps_src=${2:?usage: setup_lammps_hdnnp.sh N2P2_CHECKOUT LAMMPS_SOURCE BUILD_DIR [jobs]}
build=${3:?usage: setup_lammps_hdnnp.sh N2P2_CHECKOUT LAMMPS_SOURCE BUILD_DIR [jobs]}
jobs=${4:-2}
die() { echo "setup_lammps_hdnnp.sh: $*" >&2; exit 1; }
[ -f "$n2p2_src/src/makefile" ] || die "$n2p2_src/src/makefile not found (not an n2p2 checkout)"
[ -d "$n2p2_src/src/libnnpif/LAMMPS" ] || die "$n2p2_src has no src/libnnpif/LAMMPS (n2p2 too old)"
[ -f "$lammps_src/src/ML-HDNNP/pair_hdnnp.cpp" ] || die "$lammps_src/src/ML-HDNNP/pair_hdnnp.cpp not found" \
  " (not a LAMMPS source tree, or one older than the ML-HDNNP package)"
[ -f "$lammps_src/cmake/CMakeLists.txt" ] || die "$lammps_src/cmake/CMakeLists.txt not found"
for tool in cmake g++ make; do command -v "$tool" >/dev/null || die "needs $tool (apt-get install cmake g++ make)"; done
[ -d /usr/include/eigen3 ] || die "needs Eigen (apt-get install libeigen3-dev)"
[ -f /usr/include/gsl/gsl_math.h ] || die "needs GSL (apt-get install libgsl-dev)"
mkdir -p "$build"
build=$(cd "$build" && pwd)
log="$build/build.log"
: >"$log"

# n2p2: a private copy built with OpenMP and without MPI (the LAMMPS below is serial, with OpenMP threads).
n2p2_done=yes
for f in lib/libnnp.a lib/libnnpif.a lib/lammps-extra.cmake include/InterfaceLammps.h bin/nnp-predict; do
  [ -e "$build/n2p2/$f" ] || n2p2_done=no
done
if [ $n2p2_done = yes ]; then
  echo "n2p2 already built in $build/n2p2 (delete that folder to rebuild it)"
else
  echo "building n2p2 (libnnp, libnnpif, nnp-predict) in $build/n2p2 ..."
  rm -rf "$build/n2p2"
  mkdir -p "$build/n2p2"
  cp -r "$n2p2_src/src" "$build/n2p2/"
  [ -f "$n2p2_src/LICENSE" ] && cp "$n2p2_src/LICENSE" "$build/n2p2/"
  mkdir -p "$build/n2p2/include" "$build/n2p2/lib" "$build/n2p2/bin"
  # build products copied from the checkout (objects, libraries, programs) would be taken as up to date
  find "$build/n2p2/src" \( -name '*.o' -o -name '*.a' -o -name '*.so' \) -delete
  find "$build/n2p2/src/application" -maxdepth 1 -type f -name 'nnp-*' ! -name '*.*' -delete
  rm -f "$build/n2p2/lib/"* "$build/n2p2/bin/"*
  n2p2_flags=(COMP=gnu "PROJECT_CFLAGS=-O3 -march=native -std=c++11 -fopenmp"
              "PROJECT_OPTIONS=-DEIGEN_DONT_PARALLELIZE -DN2P2_NO_MPI" "INTERFACES=LAMMPS")
  (cd "$build/n2p2/src" && make -j"$jobs" "${n2p2_flags[@]}" libnnp >>"$log" 2>&1 \
     && make -j"$jobs" "${n2p2_flags[@]}" libnnpif >>"$log" 2>&1 \
     && make -j"$jobs" "${n2p2_flags[@]}" nnp-predict >>"$log" 2>&1) || { tail -30 "$log"; die "n2p2 build failed"; }
  for f in lib/libnnp.a lib/libnnpif.a lib/lammps-extra.cmake include/InterfaceLammps.h bin/nnp-predict; do
    [ -e "$build/n2p2/$f" ] || die "n2p2 build finished without $f (log: $log)"
  done
fi

# LAMMPS: only the ML-HDNNP package, serial (MPI stubs), OpenMP on (libnnp's loops use it).
echo "configuring and building LAMMPS with ML-HDNNP in $build/lammps ..."
mkdir -p "$build/lammps"
(cd "$build/lammps" && N2P2_DIR="$build/n2p2" cmake "$lammps_src/cmake" \
   -D CMAKE_BUILD_TYPE=Release -D BUILD_MPI=off -D BUILD_OMP=on -D BUILD_SHARED_LIBS=off \
   -D PKG_ML-HDNNP=on -D DOWNLOAD_N2P2=off -D N2P2_DIR="$build/n2p2" \
   -D CMAKE_CXX_FLAGS="-O3 -march=native -I/usr/include/eigen3" >>"$log" 2>&1 \
   && make -j"$jobs" lmp >>"$log" 2>&1) || { tail -30 "$log"; die "LAMMPS build failed (log: $log)"; }
[ -x "$build/lammps/lmp" ] || die "LAMMPS build finished without lmp (log: $log)"
"$build/lammps/lmp" -h | grep -q hdnnp || die "$build/lammps/lmp has no pair_style hdnnp"
echo "done: LAMMPS $build/lammps/lmp (pair_style hdnnp), n2p2 $build/n2p2/bin/nnp-predict (OpenMP)"
echo "run the LAMMPS test with: MINIFF_LMP_HDNNP=$build/lammps/lmp python -m pytest tests/io -k lammps"
