#!/usr/bin/env bash
# Benchmark: what `cairn run` costs over a bare `cairn backup` on an unchanged source. The run
# adds its lock, the catch-up listing (inside the backup), `status` at the end (a second listing
# of every target), the metrics file, the report and the run log; forget is skipped (no policy)
# and verify is not due, so both commands write the same snapshot. Also measured: a full run
# (forget by policy, a 50-file sample verified on every target).
#   benches/run.sh [SIZE_MIB]   (default 256; needs ~6x that free in $BENCH_DIR)
# With the test servers running (scripts/test-servers/start-all.sh), the same for SFTP + SMB +
# Azure + S3 on loopback. Prints the median of 5 of wall time and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-256}
B=${BENCH_DIR:-/tmp/cairn-bench}/run
REPS=5
export CAIRN_PASSWORD=bench CAIRN_STATE_DIR=$B/state
cargo build --release --locked -q
rm -rf "$B"; mkdir -p "$B"
python3 benches/corpus.py "$B/src" "$SIZE" >&2
cp "${CAIRN_BIN:-target/release/cairn}" "$B/cairn.bin"; CAIRN=$B/cairn.bin

head() {  # head NAME: the configuration's common part
  printf '[repository]\nname = "%s"\n\n[backup]\nsources = ["%s"]\n\n[verify]\nfiles = 50\nevery = "1000d"\n\n[metrics]\npath = "%s/%s.prom"\n\n' \
    "$1" "$B/src" "$B" "$1"
}
{ head local
  for i in 1 2 3 4; do printf '[[target]]\nname = "t%s"\nkind = "local"\npath = "%s/t%s"\n\n' "$i" "$B" "$i"; done
} >"$B/local.toml"
configs=(local)
ENV=${TS_RUN:-/tmp/test-servers/run}/env.sh
if [ -f "$ENV" ]; then
  # shellcheck disable=SC1090
  source "$ENV"
  P=bench-run-$$
  { head remote
    printf '[[target]]\nname = "sftp"\nkind = "sftp"\nhost = "%s"\nport = %s\nuser = "%s"\nkey_file = "%s"\npath = "%s/%s"\n\n' \
      "$SFTP_HOST" "$SFTP_PORT" "$SFTP_USER" "$SFTP_KEY" "$SFTP_ROOT" "$P"
    printf '[[target]]\nname = "smb"\nkind = "smb"\nhost = "%s"\nport = %s\nshare = "%s"\npath = "%s"\nuser = "%s"\npassword = "env:SMB_PASSWORD"\n\n' \
      "$SMB_HOST" "$SMB_PORT" "$SMB_SHARE" "$P" "$SMB_USER"
    printf '[[target]]\nname = "azure"\nkind = "azblob"\nendpoint = "%s"\naccount = "%s"\ncontainer = "%s"\npath = "%s"\nkey = "env:AZBLOB_ACCOUNT_KEY"\nallow_insecure_http = true\n\n' \
      "$AZBLOB_ENDPOINT" "$AZBLOB_ACCOUNT_NAME" "$AZBLOB_CONTAINER" "$P"
    printf '[[target]]\nname = "s3"\nkind = "s3"\nendpoint = "%s"\nbucket = "%s"\nregion = "%s"\npath = "%s"\naccess_key_id = "env:S3_ACCESS_KEY_ID"\nsecret_access_key = "env:S3_SECRET_ACCESS_KEY"\nallow_insecure_http = true\n\n' \
      "$S3_ENDPOINT" "$S3_BUCKET" "$S3_REGION" "$P"
  } >"$B/remote.toml"
  configs+=(remote)
else
  echo "test servers not running ($ENV missing): remote kinds left out" >&2
fi

# measure NAME ARGS...: median wall seconds and peak RSS (KiB) of REPS runs.
measure() {
  local name=$1; shift
  for r in $(seq 1 $REPS); do
    /usr/bin/time -f "%e %M" -o "$B/$name.$r.time" "$CAIRN" "$@" >/dev/null 2>"$B/$name.err" || {
      c=$?; [ $c -eq 0 ] || { echo "$name: exit $c" >&2; cat "$B/$name.err" >&2; exit 1; }; }
  done
  cat "$B/$name".*.time | sort -n | sed -n "$(( (REPS + 1) / 2 ))p"
}

printf '%-8s %-28s %9s %10s\n' targets command "wall s" "peak RSS"
for c in "${configs[@]}"; do
  T=$B/$c.toml
  "$CAIRN" -c "$T" init >/dev/null 2>&1
  "$CAIRN" -c "$T" backup >/dev/null 2>&1          # the first, full backup
  "$CAIRN" -c "$T" run >/dev/null 2>&1             # verify done once: not due from now on
  read -r bt brss <<<"$(measure "$c-backup" -c "$T" backup)"
  read -r rt rrss <<<"$(measure "$c-run" -c "$T" run)"
  printf '%-8s %-28s %9s %7s MiB\n' "$c" "backup (unchanged)" "$bt" "$((brss / 1024))"
  printf '%-8s %-28s %9s %7s MiB\n' "$c" "run (unchanged, no verify)" "$rt" "$((rrss / 1024))"
  # A full night: forget by policy and the sample verified on every target.
  sed -e 's/^every = "1000d"$//' -e 's/^\[verify\]$/[retention]\nkeep_last = 3\n\n[verify]/' "$T" >"$B/$c-full.toml"
  read -r ft frss <<<"$(measure "$c-full" -c "$B/$c-full.toml" run)"
  printf '%-8s %-28s %9s %7s MiB\n' "$c" "run (forget + verify 50)" "$ft" "$((frss / 1024))"
  python3 -c "import sys; b,r=map(float,sys.argv[1:3]); print(f'{sys.argv[3]:<8} run overhead over backup: {r-b:+.2f} s ({r/b:.2f}x)')" "$bt" "$rt" "$c"
done
