#!/usr/bin/env bash
# nutmeg's MPI engine beside its Python peers on FEBRL (BENCHMARKS.md, "Master patient index"): the
# recordlinkage toolkit (unsupervised ECM) and Splink 4 (DuckDB), pinned below, in one run on this machine.
#
#   scripts/mpi-peers.sh [RUNS]    each tool runs RUNS times (default 2) and the table keeps its best time
#
# Makes a virtual environment under target/peers/mpi-venv (MPI_PEERS_VENV to move it; PYTHON picks the
# interpreter, 3.11 or newer), builds nutmeg's `febrl` example (`cargo build -p mpi --release --example febrl`)
# and runs scripts/mpi_peers.py, which in each round runs that example (`febrl --json`) and then each peer, and
# prints the table. Reads ../shared/data/febrl (benchmark-time only).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-2}"
VENV="${MPI_PEERS_VENV:-$PWD/target/peers/mpi-venv}"
PYTHON="${PYTHON:-python3}"
OUT="$PWD/target/peers/mpi"
mkdir -p "$OUT"

# Every package pinned, the peers' dependencies too (networkx: recordlinkage's ConnectedComponents).
cat > "$OUT/requirements.txt" <<'EOF'
recordlinkage==0.16
splink==4.0.17
networkx==3.6.1
altair==6.3.0
attrs==26.1.0
cloudpickle==3.1.3
duckdb==2.0.1
igraph==1.0.0
jellyfish==1.3.0
Jinja2==3.1.6
joblib==1.6.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
MarkupSafe==3.0.4
narwhals==2.29.0
numpy==2.4.6
packaging==26.4
pandas==2.3.3
python-dateutil==4.0.0
pytz==2026.6
referencing==0.37.0
rpds-py==2026.9.1
scikit-learn==1.9.1
scipy==1.17.1
sqlglot==30.30.0
texttable==1.7.2
threadpoolctl==3.8.0
typing_extensions==4.16.0
tzdata==2026.6
EOF
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$OUT/requirements.txt"

cargo build --quiet -p mpi --release --example febrl
FEBRL="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/febrl"
# Each round runs nutmeg's example, then each peer; the per-run lines go to stderr, the table to stdout.
"$VENV/bin/python" scripts/mpi_peers.py --runs "$RUNS" --nutmeg "$FEBRL" --json "$OUT/results.jsonl"
