#!/usr/bin/env bash
# Helios HFS, the Rust FHIR server on crates.io that BENCHMARKS.md compares nutmeg with.
#
#   scripts/hfs.sh install          build it once into $HFS_ROOT (default ./target/peers/hfs; a long build)
#   scripts/hfs.sh run PORT DIR     serve an empty R4 database in DIR on 127.0.0.1:PORT (FHIR base at the root)
#
# HFS needs the R4 search parameters and compartment definitions in its data directory; they are made
# here from the FHIR definitions in ../shared/data (benchmark-time only: nutmeg itself never reads them).
set -euo pipefail
cd "$(dirname "$0")/.."
HFS_ROOT="${HFS_ROOT:-$PWD/target/peers/hfs}"
DEFS="${FHIR_DEFINITIONS:-../shared/data/fhir-r4/definitions}"

case "${1:-}" in
  install)
    if [ ! -x "$HFS_ROOT/bin/hfs" ]; then
      cargo install helios-hfs --locked --features skip-r6-download --root "$HFS_ROOT"
    fi
    "$HFS_ROOT/bin/hfs" --version || true
    ;;
  run)
    port="$2" dir="$3"
    mkdir -p "$dir/data"
    zcat "$DEFS/search-parameters.json.gz" > "$dir/data/search-parameters-r4.json"
    python3 - "$DEFS/compartmentdefinition-patient.json.gz" "$dir/data/compartment-definitions-r4.json" <<'PY'
import gzip, json, sys
compartment = json.load(gzip.open(sys.argv[1]))
bundle = {"resourceType": "Bundle", "type": "collection",
          "entry": [{"fullUrl": "http://hl7.org/fhir/CompartmentDefinition/patient", "resource": compartment}]}
json.dump(bundle, open(sys.argv[2], "w"))
PY
    exec "$HFS_ROOT/bin/hfs" --host 127.0.0.1 --port "$port" \
      --database-url "$dir/hfs.db" --data-dir "$dir/data"
    ;;
  *)
    echo "usage: $0 install | run PORT DIR" >&2
    exit 2
    ;;
esac
