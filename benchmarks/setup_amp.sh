#!/usr/bin/env bash
# Build the peer Amp 1.0.1 (with its Fortran modules) in benchmarks/.amp-venv, for benchmarks/peer_amp.py.
# Amp 1.0.1 builds with numpy.distutils, so it needs numpy < 2 (its own interpreter, not miniff's) and gfortran
# (Debian: apt-get install gfortran).  Usage: bash benchmarks/setup_amp.sh [python3.11]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.amp-venv"
python=${1:-python3}
url=https://files.pythonhosted.org/packages/b7/17/7c028f52c8a69f4bac3fb81004a141d0f93d0365b1e1b2ce95c0180abd7b/amp-atomistics-1.0.1.tar.gz
sha256=91c097930f71534bbd8cedc922ef35a2883ab2e10587e1e95c04ce23ad34233f

command -v gfortran >/dev/null || { echo "setup_amp.sh: needs gfortran (apt-get install gfortran)" >&2; exit 1; }
"$python" -m venv "$venv"
"$venv/bin/pip" install -q "numpy==1.26.4" "scipy<1.14" "ase==3.23.0" "setuptools<60" pexpect pyzmq matplotlib
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -sSL -o "$tmp/amp.tar.gz" "$url"
echo "$sha256  $tmp/amp.tar.gz" | sha256sum -c --quiet -
tar xzf "$tmp/amp.tar.gz" -C "$tmp"
(cd "$tmp/amp-atomistics-1.0.1" && "$venv/bin/python" setup.py -q build_ext --inplace >"$tmp/build.log" 2>&1) \
  || { tail -20 "$tmp/build.log"; exit 1; }
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf "$site/amp"
cp -r "$tmp/amp-atomistics-1.0.1/amp" "$site/amp"
"$venv/bin/python" -c "from amp import fmodules; print('Amp with Fortran modules in', '$venv')"
