#!/usr/bin/env bash
# Benchmark: cairn vs stock restic on one deterministic mixed corpus, in one run.
#   benches/bench.sh [SIZE_MIB]      (default 1024; needs ~6x that free in $BENCH_DIR)
#   CAIRN_BIN=/path/to/cairn benches/bench.sh ...   measures that binary instead of this build
#   BENCH_REPEAT=N (default 3): runs of the unchanged backup and the restore, median reported
# Prints wall time, MB/s (corpus bytes / wall time) and peak RSS for: initial backup to 1 and
# to 4 local targets, an unchanged incremental backup, a full restore; the same with restic
# when it is installed; and the ratios cairn/restic and 4-targets/1-target. Then verification:
# `cairn verify` of a 1% and a 10% sample (of files) on the 1-target and 4-target repositories,
# next to `restic check --read-data-subset` of the same percentage. Then resilience: `cairn sync`
# of a target that missed the whole corpus (MB/s of repository bytes copied, next to the initial
# backup's rate) and `cairn check` across the 4 targets without the password (listings only, and
# with --read-data).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
B=${BENCH_DIR:-/tmp/cairn-bench}
REPEAT=${BENCH_REPEAT:-3}
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$B/restic-cache CAIRN_STATE_DIR=$B/state
cargo build --release --locked -q

if [ ! -f "$B/corpus.done-$SIZE" ]; then
  rm -rf "$B"; mkdir -p "$B/corpus"
  python3 benches/corpus.py "$B/corpus" "$SIZE"
  touch "$B/corpus.done-$SIZE"
fi
# A copy, so a rebuild during the run cannot swap the binary under it. CAIRN_BIN measures another
# build (an older commit's, for a before/after comparison) on the same corpus.
cp "${CAIRN_BIN:-target/release/cairn}" "$B/cairn.bin"; CAIRN=$B/cairn.bin
rm -rf "$B"/t* "$B"/late "$B"/state "$B"/restore-* "$B"/restic-repo "$B"/restic-cache "$B"/results
BYTES=$(du -sb "$B/corpus" | cut -f1)
FILES=$(find "$B/corpus" -type f | wc -l)

cfg() { # cfg FILE N : N local targets
  { echo "[backup]"; echo "sources = [\"$B/corpus\"]"; echo
    for i in $(seq 1 "$2"); do printf '[[target]]\nname = "t%s-%s"\nkind = "local"\npath = "%s/t%s-%s"\n\n' "$2" "$i" "$B" "$2" "$i"; done
  } >"$1"
}
cfg "$B/one.toml" 1; cfg "$B/four.toml" 4

# measure NAME CMD... : appends "NAME wall_s peak_rss_kib" to results
measure() {
  local name=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "%e %M" -o "$B/time.out" "$@" >"$B/last.log" 2>"$B/last.err" || { cat "$B/last.log" "$B/last.err"; exit 1; }
  cp "$B/last.log" "$B/out-$name"
  echo "$name $(cat "$B/time.out")" >>"$B/results"
  echo "  $name: $(cat "$B/time.out" | awk '{printf "%.1fs, %d MiB peak RSS", $1, $2/1024}')" >&2
}

echo "corpus: $((BYTES / 1048576)) MiB in $FILES files at $B/corpus" >&2
measure cairn-backup-1   "$CAIRN" -c "$B/one.toml" backup --init
measure cairn-backup-4   "$CAIRN" -c "$B/four.toml" backup --init
if command -v restic >/dev/null; then
  restic -r "$B/restic-repo" init -q >/dev/null
  measure restic-backup  restic -r "$B/restic-repo" backup -q "$B/corpus"
  RV=$(restic version | cut -d' ' -f2)
fi
# The short runs are repeated, cairn and restic in turn (the report takes the median): one run
# of either varies by 10-20% on a small machine.
for i in $(seq 1 "$REPEAT"); do
  measure cairn-incr-1     "$CAIRN" -c "$B/one.toml" backup
  command -v restic >/dev/null && measure restic-incr restic -r "$B/restic-repo" backup -q "$B/corpus"
done
for i in $(seq 1 "$REPEAT"); do
  rm -rf "$B"/restore-*
  measure cairn-restore-1  "$CAIRN" -c "$B/one.toml" restore latest --target "$B/restore-cairn"
  command -v restic >/dev/null && measure restic-restore restic -r "$B/restic-repo" restore latest -q --target "$B/restore-restic"
done
rm -rf "$B"/restore-*
for pct in 1 10; do
  measure "cairn-verify-1t-${pct}pct" "$CAIRN" -c "$B/one.toml" --json verify --percent "$pct" --seed 1 --max-bytes 1TiB
  measure "cairn-verify-4t-${pct}pct" "$CAIRN" -c "$B/four.toml" --json verify --percent "$pct" --seed 1 --max-bytes 1TiB
  if command -v restic >/dev/null; then
    measure "restic-check-${pct}pct" restic -r "$B/restic-repo" check --read-data-subset="${pct}%"
  fi
done

# A target added later: an empty folder (a missing one is never filled; `init` creates it).
mkdir -p "$B/late"
cfg "$B/late.toml" 1; printf '[[target]]\nname = "late"\nkind = "local"\npath = "%s/late"\n' "$B" >>"$B/late.toml"
measure cairn-sync-late  "$CAIRN" -c "$B/late.toml" --json sync
measure cairn-check-4t   env -u CAIRN_PASSWORD "$CAIRN" -c "$B/four.toml" --json check
measure cairn-check-4t-read env -u CAIRN_PASSWORD "$CAIRN" -c "$B/four.toml" --json check --read-data

python3 - "$B/results" "$BYTES" "${RV:-}" "$B" <<'PY'
import json, os, sys
runs = {}
for l in open(sys.argv[1]):
    name, t, rss = l.split()
    runs.setdefault(name, []).append((float(t), int(rss)))
# Repeated runs: the median wall time, the highest peak.
rows = {k: (sorted(t for t, _ in v)[len(v) // 2], max(r for _, r in v)) for k, v in runs.items()}
size = int(sys.argv[2]); rv = sys.argv[3]
print(f"\ncorpus {size/2**20:.0f} MiB; MB/s = corpus MB / wall time; restic {rv or 'not installed'}")
print(f"{'run':<18}{'wall s':>8}{'MB/s':>9}{'peak RSS MiB':>14}  runs (wall s)")
for k, (t, rss) in rows.items():
    each = " ".join(f"{x:.2f}" for x, _ in runs[k]) if len(runs[k]) > 1 else ""
    print(f"{k:<18}{t:>8.2f}{size/1e6/max(t, 0.01):>9.1f}{rss/1024:>14.0f}  {each}")
def ratio(a, b, label):
    if a in rows and b in rows:
        print(f"{label:<40}{rows[a][0]/max(rows[b][0], 0.01):>6.2f}x")
print()
ratio("cairn-backup-4", "cairn-backup-1", "wall 4 targets / 1 target")
ratio("cairn-backup-1", "restic-backup", "wall cairn / restic, initial backup")
ratio("cairn-incr-1", "restic-incr", "wall cairn / restic, unchanged backup")
ratio("cairn-restore-1", "restic-restore", "wall cairn / restic, full restore")
ratio("cairn-verify-4t-1pct", "restic-check-1pct", "wall cairn verify 4 targets / restic check, 1%")

# Issue 12's goals, each with what was measured in this run.
def goal(label, ok, measured):
    print(f"  {'met ' if ok else 'MISS'}  {label:<52}{measured}")
print("\ngoals")
if "cairn-restore-1" in rows:
    t, rss = rows["cairn-restore-1"]
    goal("restore: peak RSS <= 200 MiB", rss / 1024 <= 200, f"{rss/1024:.0f} MiB")
    if "restic-restore" in rows:
        r = t / rows["restic-restore"][0]
        goal("restore: wall <= restic's", r <= 1.0, f"{r:.2f}x")
if "cairn-verify-4t-1pct" in rows:
    t, rss = rows["cairn-verify-4t-1pct"]
    goal("verify 1% of 4 local targets: <= 2 s, <= 200 MiB", t <= 2 and rss / 1024 <= 200,
         f"{t:.1f} s, {rss/1024:.0f} MiB")
for k, label, target in (("cairn-incr-1", "unchanged backup: <= 0.8x restic", 0.8),
                         ("cairn-backup-1", "initial backup, 1 target: <= 0.5x restic", 0.5)):
    other = "restic-incr" if "incr" in k else "restic-backup"
    if k in rows and other in rows:
        r = rows[k][0] / rows[other][0]
        goal(label, r <= target, f"{r:.2f}x")

print("\nverification (cairn: files sampled by count, restored and checked per target; "
      "restic: check --read-data-subset of packs)")
print(f"{'run':<22}{'sampled MB':>11}{'read MB/target':>15}{'wall s':>8}{'MB/s/target':>13}{'peak RSS MiB':>14}")
for k, (t, rss) in rows.items():
    if not (k.startswith("cairn-verify") or k.startswith("restic-check-")):
        continue
    if k.startswith("cairn"):
        r = json.load(open(os.path.join(sys.argv[4], "out-" + k)))
        mb = sum(c["size"] for c in r["sample"]) / 1e6
        per = [mb / max(x["seconds"], 0.01) for x in r["targets"]]
        rate = f"{min(per):.0f}-{max(per):.0f}" if len(per) > 1 else f"{per[0]:.0f}"
        read = max(x.get("bytes_read", 0) for x in r["targets"]) / 1e6
        print(f"{k:<22}{mb:>11.1f}{read:>15.1f}{t:>8.1f}{rate:>13}{rss/1024:>14.0f}")
    else:
        print(f"{k:<22}{'':>11}{'':>15}{t:>8.1f}{'':>13}{rss/1024:>14.0f}")

print("\nresilience")
if "cairn-sync-late" in rows:
    t, rss = rows["cairn-sync-late"]
    r = json.load(open(os.path.join(sys.argv[4], "out-cairn-sync-late")))
    late = [x for x in r["targets"] if x["name"] == "late"][0]
    mb = late["bytes_copied"] / 1e6
    b1 = size / 1e6 / max(rows["cairn-backup-1"][0], 0.01)
    print(f"sync of a target that missed everything: {late['files_copied']} files, {mb:.0f} MB "
          f"in {t:.1f}s = {mb/max(t, 0.01):.0f} MB/s (initial backup: {b1:.0f} MB/s of corpus), "
          f"{rss/1024:.0f} MiB peak RSS")
for k in ("cairn-check-4t", "cairn-check-4t-read"):
    if k in rows:
        t, rss = rows[k]
        r = json.load(open(os.path.join(sys.argv[4], "out-" + k)))
        files = sum(x["files"] for x in r["targets"])
        hashed = sum(x["hashed_bytes"] for x in r["targets"]) / 1e6
        print(f"{k}: 4 targets, {files} files, {hashed:.0f} MB hashed, {t:.1f}s, "
              f"{rss/1024:.0f} MiB peak RSS, {len(r['problems'])} problems")
PY

# Many small files (issue 30): its own tree and table (BENCH_SMALL_FILES=N files, 0 skips).
[ "${BENCH_SMALL_FILES:-250000}" = 0 ] || CAIRN_BIN="$CAIRN" benches/smallfiles.sh
