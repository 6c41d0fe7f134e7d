#!/usr/bin/env bash
# Benchmark: many client repositories in one configuration (`[[repository]]`).
#   benches/clients.sh [N]     (default 50 clients; each 40 small files, 4 local targets)
# Prints the wall time and peak RSS of: `cairn init` (all), the first `cairn run`, `cairn
# status` of all, and a `cairn run` with nothing changed; then the peak RSS of that unchanged
# run with N/5 clients, to show memory does not grow with the number of repositories (they run
# one after another).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
B=${BENCH_DIR:-/tmp/cairn-bench}/clients
cargo build --release --locked -q
rm -rf "$B"; mkdir -p "$B"
cp target/release/cairn "$B/cairn.bin"; CAIRN=$B/cairn.bin
export CAIRN_STATE_DIR=$B/state

write_config() { # n file
  local n=$1 f=$2
  : > "$f"
  for t in 1 2 3 4; do
    printf '[[target]]\nname = "t%s"\nkind = "local"\npath = "%s/t%s"\n\n' "$t" "$B" "$t" >> "$f"
  done
  for i in $(seq -w 1 "$n"); do
    printf '[[repository]]\nname = "client%s"\npassword = "env:CLIENT_PW"\nsources = ["%s/src/client%s"]\n[repository.retention]\nkeep_last = 7\n\n' \
      "$i" "$B" "$i" >> "$f"
  done
  chmod 600 "$f"
}
export CLIENT_PW=bench-client-password
python3 - "$B/src" "$N" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for i in range(1, n + 1):
    d = os.path.join(root, f"client{i:0{len(str(n))}d}")
    os.makedirs(os.path.join(d, "docs"), exist_ok=True)
    for j in range(40):
        with open(os.path.join(d, "docs" if j % 2 else "", f"f{j}.txt"), "wb") as f:
            f.write(rnd.randbytes(rnd.randint(200, 16000)))
PY
write_config "$N" "$B/targets.toml"

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$B/time" "$@" > "$B/out" 2>&1 || echo "  ($label exited $?)"
  read -r secs kib < "$B/time"
  printf '%-40s %8.2f s  %7.1f MiB peak RSS\n' "$label" "$secs" "$(echo "$kib/1024" | bc -l)"
}
echo "$N client repositories, 40 files each ($(du -sh "$B/src" | cut -f1)), 4 local targets"
measure "init (all)" "$CAIRN" -c "$B/targets.toml" init
measure "first run (all)" "$CAIRN" -c "$B/targets.toml" run
measure "status (all)" "$CAIRN" -c "$B/targets.toml" status
measure "run, nothing changed (all)" "$CAIRN" -c "$B/targets.toml" run
grep -c "result: ok" "$B/out" | xargs printf '  %s repositories ok\n'
SMALL=$((N / 5))
write_config "$SMALL" "$B/few.toml"
measure "run, nothing changed ($SMALL of them)" "$CAIRN" -c "$B/few.toml" run
