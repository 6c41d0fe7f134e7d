#!/usr/bin/env bash
# Benchmark: retention. 30 nightly backups of the bench corpus (benches/corpus.py) with about 5%
# of the files changed between nights, to 4 local targets; then `forget --keep-last 7 --prune`.
# The same history goes into one stock restic repository, and `restic forget --keep-last 7
# --prune` is measured next to cairn's.
#   benches/retention.sh [SIZE_MIB]   (default 256; needs ~8x that free in $BENCH_DIR)
# Prints wall time and peak RSS of the forget+prune, bytes written and removed per target, and
# the repository size before and after, for both.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-256}
B=${BENCH_DIR:-/tmp/cairn-bench}/retention
NIGHTS=30
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$B/restic-cache CAIRN_STATE_DIR=$B/state
cargo build --release --locked -q
rm -rf "$B"; mkdir -p "$B"
python3 benches/corpus.py "$B/src" "$SIZE" >&2
cp "${CAIRN_BIN:-target/release/cairn}" "$B/cairn.bin"; CAIRN=$B/cairn.bin
{ echo "[backup]"; echo "sources = [\"$B/src\"]"; echo
  for i in 1 2 3 4; do printf '[[target]]\nname = "t%s"\nkind = "local"\npath = "%s/t%s"\n\n' "$i" "$B" "$i"; done
} >"$B/four.toml"
restic -r "$B/restic" init -q >/dev/null

# change N: rewrites the first 4 KiB of ~5% of the files (seeded by N), as a night's edits.
change() { python3 benches/change.py "$B/src" "$1"; }  # ~5% of the files edited

echo "30 nights, ~5% of the files changed each night" >&2
for n in $(seq 1 $NIGHTS); do
  [ "$n" -gt 1 ] && change "$n"
  t=$(date -u -d "2026-01-01 + $n days" '+%Y-%m-%d 03:00:00')
  init=""; [ "$n" -eq 1 ] && init="--init"
  "$CAIRN" -c "$B/four.toml" backup $init --time "$t" >/dev/null 2>"$B/backup.err" || { cat "$B/backup.err"; exit 1; }
  restic -r "$B/restic" backup -q --time "$t" "$B/src" >/dev/null
done
size() { du -sb "$1" | cut -f1; }
C0=$(size "$B/t1"); R0=$(size "$B/restic")
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
/usr/bin/time -f "%e %M" -o "$B/cairn.time" "$CAIRN" -c "$B/four.toml" --json forget --keep-last 7 --prune >"$B/cairn.json" 2>"$B/cairn.err"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
/usr/bin/time -f "%e %M" -o "$B/restic.time" restic -r "$B/restic" forget -q --keep-last 7 --prune >"$B/restic.log" 2>&1
C1=$(size "$B/t1"); R1=$(size "$B/restic")
for t in t1 t2 t3 t4; do restic -r "$B/$t" check -q >/dev/null 2>&1 || { echo "restic check $t failed" >&2; exit 1; }; done

python3 - "$B" "$C0" "$C1" "$R0" "$R1" "$(restic version | cut -d' ' -f2)" <<'PY'
import json, sys
b, c0, c1, r0, r1, rv = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
ct, crss = open(f"{b}/cairn.time").read().split()
rt, rrss = open(f"{b}/restic.time").read().split()
r = json.load(open(f"{b}/cairn.json"))
p = r["prune"]
mib = lambda x: x / 2**20
print(f"\n30 nightly backups, ~5% of files changed each night; forget --keep-last 7 --prune (restic {rv})")
print(f"{'':<26}{'wall s':>8}{'peak RSS MiB':>14}{'repo before MiB':>17}{'after MiB':>11}")
print(f"{'cairn, 4 targets':<26}{float(ct):>8.1f}{int(crss)/1024:>14.0f}{mib(c0):>17.0f}{mib(c1):>11.0f}   (per target)")
print(f"{'restic, 1 repository':<26}{float(rt):>8.1f}{int(rrss)/1024:>14.0f}{mib(r0):>17.0f}{mib(r1):>11.0f}")
print(f"wall cairn (4 targets) / restic (1 repository): {float(ct)/max(float(rt), 0.01):.2f}x")
print(f"snapshots removed: {len(r['removed'])}; plan: {p['plan']['packs_unused']} packs removed, "
      f"{p['plan']['packs_repack']} repacked, {mib(p['plan']['bytes_unused_kept']):.1f} MiB unused kept")
for t in p["targets"]:
    print(f"  {t['name']}: {t['state']}, {t['files_removed']} files / {mib(t['bytes_removed']):.1f} MiB removed, "
          f"{mib(t['bytes_written']):.1f} MiB written")
PY
