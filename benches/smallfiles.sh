#!/usr/bin/env bash
# Benchmark: many small files (issue 30), cairn vs stock restic on the same tree, in one run.
#   benches/smallfiles.sh [N]        (default 250000 files of 0-8 KiB, about 1 GB; needs ~4 GB)
#   CAIRN_BIN=/path/to/cairn ...     measures that binary instead of this build
#   BENCH_REPEAT=N (default 3)       runs of each, cairn and restic alternating; median reported
#   BENCH_RESTORE_DIR=DIR            where restores go (default /dev/shm, a tmpfs, when it has
#                                    room: the restore is then bound by system calls, not a disk)
# Prints, for cairn and restic, wall time, CPU seconds (user+sys), system seconds and peak RSS of:
# the first backup, an unchanged backup, a full restore, and a 1% verification (cairn verify
# --percent 1, one target) next to restic check --read-data-subset=1%; then the ratios and the
# issue's goals. benches/bench.sh runs it after its own table (BENCH_SMALL_FILES=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-${BENCH_SMALL_FILES:-250000}}
B=${BENCH_DIR:-/tmp/cairn-bench}/small
REPEAT=${BENCH_REPEAT:-3}
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$B/restic-cache CAIRN_STATE_DIR=$B/state
[ -n "${CAIRN_BIN:-}" ] || cargo build --release --locked -q
command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)" >&2; exit 1; }

mkdir -p "$B"
if [ ! -f "$B/tree.done-$N" ]; then
  rm -rf "$B/tree" "$B"/tree.done-*; mkdir -p "$B/tree"
  python3 benches/smallfiles.py "$B/tree" "$N" >&2
  touch "$B/tree.done-$N"
fi
cp "${CAIRN_BIN:-target/release/cairn}" "$B/cairn.bin"; CAIRN=$B/cairn.bin
BYTES=$(du -sb "$B/tree" | cut -f1)
R=${BENCH_RESTORE_DIR:-}
if [ -z "$R" ]; then
  if [ "$(df -B1 --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $((BYTES * 3)) ] 2>/dev/null; then R=/dev/shm/cairn-bench-restore; else R=$B/restore; fi
fi
rm -rf "$B/repo" "$B/restic-repo" "$B/state" "$B/restic-cache" "$B/results" "$R"
printf '[backup]\nsources = ["%s/tree"]\n\n[[target]]\nname = "local"\nkind = "local"\npath = "%s/repo"\n' "$B" "$B" >"$B/one.toml"

# measure NAME CMD... : appends "NAME wall_s user_s sys_s peak_rss_kib" to results
measure() {
  local name=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "%e %U %S %M" -o "$B/time.out" "$@" >"$B/out-$name" 2>"$B/err-$name" || { cat "$B/out-$name" "$B/err-$name" >&2; exit 1; }
  echo "$name $(cat "$B/time.out")" >>"$B/results"
  echo "  $name: $(awk '{printf "%.1f s wall, %.1f CPU-s (sys %.1f), %d MiB", $1, $2+$3, $3, $4/1024}' "$B/time.out")" >&2
}

echo "small files: $N files, $((BYTES / 1048576)) MiB at $B/tree; restores into $R" >&2
restic -r "$B/restic-repo" init -q >/dev/null
measure cairn-first  "$CAIRN" -c "$B/one.toml" backup --init
measure restic-first restic -r "$B/restic-repo" backup -q "$B/tree"
for i in $(seq 1 "$REPEAT"); do
  measure cairn-unchanged  "$CAIRN" -c "$B/one.toml" backup
  measure restic-unchanged restic -r "$B/restic-repo" backup -q "$B/tree"
done
for i in $(seq 1 "$REPEAT"); do
  rm -rf "$R"
  measure cairn-restore  "$CAIRN" -c "$B/one.toml" restore latest --target "$R/cairn"
  rm -rf "$R"
  measure restic-restore restic -r "$B/restic-repo" restore latest -q --target "$R/restic"
done
rm -rf "$R"
for i in $(seq 1 "$REPEAT"); do
  measure cairn-verify-1pct  "$CAIRN" -c "$B/one.toml" --json verify --percent 1 --seed "$i" --max-bytes 1TiB
  measure restic-check-1pct  restic -r "$B/restic-repo" check --read-data-subset=1%
done

python3 - "$B/results" "$N" "$BYTES" "$(restic version | cut -d' ' -f2)" <<'PY'
import sys
runs = {}
for l in open(sys.argv[1]):
    name, t, u, s, rss = l.split()
    runs.setdefault(name, []).append((float(t), float(u) + float(s), float(s), int(rss)))
def med(v, i): return sorted(x[i] for x in v)[len(v) // 2]
rows = {k: (med(v, 0), med(v, 1), med(v, 2), max(x[3] for x in v)) for k, v in runs.items()}
n, size, rv = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print(f"\nsmall files: {n} files, {size/2**20:.0f} MiB; restic {rv}; medians of {len(runs['cairn-restore'])} run(s)")
print(f"{'':<20}{'cairn':>34}  {'restic':>34}  {'ratio':>6}")
print(f"{'':<20}{'wall s  CPU-s  sys s  peak MiB':>34}  {'wall s  CPU-s  sys s  peak MiB':>34}")
def cell(r): return f"{r[0]:>6.1f} {r[1]:>6.1f} {r[2]:>6.1f} {r[3]/1024:>9.0f}"
goals = {"first": 0.9, "unchanged": 0.7, "restore": 0.9, "verify-1pct": 1.0}
out = []
for c, r, label in (("cairn-first", "restic-first", "first backup"),
                    ("cairn-unchanged", "restic-unchanged", "unchanged backup"),
                    ("cairn-restore", "restic-restore", "full restore"),
                    ("cairn-verify-1pct", "restic-check-1pct", "verify 1% / check 1%")):
    ratio = rows[c][0] / max(rows[r][0], 0.01)
    print(f"{label:<20}{cell(rows[c]):>34}  {cell(rows[r]):>34}  {ratio:>5.2f}x")
    goal = goals[c.split("-", 1)[1]]
    out.append((label, ratio, goal))
print("\ngoals (issue 30)")
for label, ratio, goal in out:
    print(f"  {'met ' if ratio <= goal else 'MISS'}  {label}: <= {goal}x restic   {ratio:.2f}x")
if "cairn-restore" in rows:
    mib = rows["cairn-restore"][3] / 1024
    print(f"  {'met ' if mib <= 250 else 'MISS'}  full restore: peak <= 250 MiB   {mib:.0f} MiB")
PY
