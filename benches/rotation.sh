#!/usr/bin/env bash
# Benchmark: rotated USB disks (issue 26). Two always-on targets (local folders) and two USB
# disks (folders bind-mounted at their mount points, so cairn sees a disk come and go) swapped
# every 7 nights; 8 weeks of nightly `backup` + `forget --prune` with [retention] keep_daily = 7
# on the bench corpus (benches/corpus.py) with ~5% of the files changed each night.
#   benches/rotation.sh [SIZE_MIB] [NIGHTS]   (default 64 MiB, 56 nights; needs root for mount)
# Prints per week: each target's size against a single, freshly pruned repository of the same
# snapshots (a copy of the office target pruned by stock restic to no unused byte), the worst
# ratio of the always-on targets over every night, and each disk's ratio one run after it
# returned.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-64}
NIGHTS=${2:-56}
B=${BENCH_DIR:-/tmp/cairn-bench}/rotation
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$B/restic-cache CAIRN_STATE_DIR=$B/state
cargo build --release --locked -q
for m in "$B"/mnt/*; do umount "$m" 2>/dev/null || true; done
rm -rf "$B"; mkdir -p "$B"/mnt/usb-a "$B"/mnt/usb-b "$B"/disk-a "$B"/disk-b
trap 'for m in "$B"/mnt/*; do umount "$m" 2>/dev/null || true; done' EXIT
python3 benches/corpus.py "$B/src" "$SIZE" >&2
cp "${CAIRN_BIN:-target/release/cairn}" "$B/cairn.bin"; CAIRN=$B/cairn.bin
{ echo "[backup]"; echo "sources = [\"$B/src\"]"; echo
  for t in office nas; do printf '[[target]]\nname = "%s"\nkind = "local"\npath = "%s/%s"\n\n' "$t" "$B" "$t"; done
  for d in a b; do
    printf '[[target]]\nname = "usb-%s"\nkind = "local"\npath = "%s/mnt/usb-%s/cairn"\nremovable = true\nmount_point = "%s/mnt/usb-%s"\n\n' "$d" "$B" "$d" "$B" "$d"
  done
  printf '[retention]\nkeep_daily = 7\n'
} >"$B/targets.toml"

plug() { mountpoint -q "$B/mnt/usb-$1" || mount --bind "$B/disk-$1" "$B/mnt/usb-$1"; }
unplug() { umount "$B/mnt/usb-$1" 2>/dev/null || true; }
change() { python3 benches/change.py "$B/src" "$1"; }  # ~5% of the files edited
size() { du -sb "$1" | cut -f1; }
fresh() { # a copy of the office target, pruned by restic to no unused byte
  rm -rf "$B/fresh"; cp -a "$B/office" "$B/fresh"; rm -rf "$B"/fresh/.cairn-*
  restic -r "$B/fresh" prune -q --max-unused 0 >/dev/null 2>&1
  size "$B/fresh"
}

echo "$NIGHTS nights, ~5% of the files changed each night; disks swapped every 7 nights" >&2
: >"$B/sizes"
for n in $(seq 1 "$NIGHTS"); do
  week=$(( (n - 1) / 7 ))
  if [ $((week % 2)) -eq 0 ]; then here=a; away=b; else here=b; away=a; fi
  plug $here
  if [ "$n" -eq 1 ]; then plug $away; else unplug $away; change "$n"; fi
  t=$(date -u -d "2026-01-01 + $n days" '+%Y-%m-%d 03:00:00')
  init=""; [ "$n" -eq 1 ] && init="--init"
  "$CAIRN" -c "$B/targets.toml" backup $init --time "$t" >/dev/null 2>"$B/err" || { cat "$B/err"; exit 1; }
  "$CAIRN" -c "$B/targets.toml" forget --prune >/dev/null 2>"$B/err" || { cat "$B/err"; exit 1; }
  returned=""; [ "$n" -gt 1 ] && [ $(( (n - 1) % 7 )) -eq 0 ] && returned=$here
  echo "$n $(fresh) $(size "$B/office") $(size "$B/nas") $(size "$B/disk-a/cairn") $(size "$B/disk-b/cairn") $here ${returned:--}" >>"$B/sizes"
done
for m in "$B"/mnt/*; do umount "$m" 2>/dev/null || true; done
for t in office nas disk-a/cairn disk-b/cairn; do
  restic -r "$B/$t" check -q >/dev/null 2>&1 || { echo "restic check $t failed" >&2; exit 1; }
done

python3 - "$B/sizes" "$SIZE" "$(restic version | cut -d' ' -f2)" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
mib = lambda x: int(x) / 2**20
print(f"\nrotation: {len(rows)} nights, {sys.argv[2]} MiB corpus, ~5% of files changed nightly, "
      f"keep_daily 7, disks swapped every 7 nights (fresh = restic {sys.argv[3]} prune --max-unused 0 of a copy)")
print(f"{'night':>5} {'fresh MiB':>10} {'office':>8} {'nas':>8} {'usb-a':>8} {'usb-b':>8}  plugged")
worst = 0.0
back = []
for n, fresh, office, nas, a, b, here, returned in rows:
    f = int(fresh)
    worst = max(worst, int(office) / f, int(nas) / f)
    if returned != "-":
        back.append((int(n), returned, int(a if returned == "a" else b) / f))
    if int(n) % 7 == 0 or int(n) == 1:
        print(f"{n:>5} {mib(fresh):>10.1f} {int(office)/f:>7.2f}x {int(nas)/f:>7.2f}x "
              f"{int(a)/f:>7.2f}x {int(b)/f:>7.2f}x  usb-{here}")
print(f"worst always-on ratio over every night: {worst:.3f}x (bound 1.3x)")
for n, d, r in back:
    print(f"usb-{d} one run after it returned (night {n}): {r:.3f}x (bound 1.3x)")
PY
