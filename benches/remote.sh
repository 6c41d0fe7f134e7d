#!/usr/bin/env bash
# Benchmark: remote target kinds (issue 31), against the project's own test servers on loopback.
#   benches/remote.sh [SIZE_MIB]     (default 1024: the mixed corpus of benches/bench.sh)
#   CAIRN_BIN=/path/to/cairn ...     measures that binary instead of this build
# Starts the servers (scripts/test-servers/start-all.sh), then prints wall time and peak RSS of a
# first backup to: one local folder, Azure (Azurite), SMB (smbd), SFTP (sshd), all four in one
# run; stock restic's backup to the same sshd; the raw transfer of the packs cairn wrote
# (`sftp put -r`, `smbclient mput`); full restores from SFTP and from Azure next to restic's from
# the same sshd (onto /dev/shm when there is room); a 1% verification of the four-kind repository
# (seconds per target), and of its three remote targets against the same on three local folders.
# The backups run again with cairn on one core and the servers on the others (the fan-out's own
# cost, the servers' CPU out of its way). Each run's CPU-seconds are shown, its own and the whole machine's (the servers run here too).
# Ends with issue 31's goals, each met or missed with its figure. The raw Azure line is a signed
# PUT loop (benches/azput.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
B=${BENCH_DIR:-/tmp/cairn-bench}
R=$B/remote
eval "$(scripts/test-servers/start-all.sh 2>/dev/null)"
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench CAIRN_STATE_DIR=$R/state RESTIC_CACHE_DIR=$R/restic-cache
[ -n "${CAIRN_BIN:-}" ] || cargo build --release --locked -q
command -v restic >/dev/null || { echo "restic is not installed" >&2; exit 1; }
if [ ! -f "$B/corpus.done-$SIZE" ]; then
  rm -rf "$B"; mkdir -p "$B/corpus"; python3 benches/corpus.py "$B/corpus" "$SIZE"; touch "$B/corpus.done-$SIZE"
fi
mkdir -p "$R"; cp "${CAIRN_BIN:-target/release/cairn}" "$R/cairn.bin"; CAIRN=$R/cairn.bin
RUN=$(date +%s)   # fresh folders and prefixes on every server, each run
OUT=$R/restore; [ "$(df -B1 --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $((3 * SIZE << 20)) ] 2>/dev/null && OUT=/dev/shm/cairn-bench-remote
rm -rf "$R/state" "$R/restic-cache" "$R/results" "$R"/local-* "$OUT"
SFTP_DIR=$SFTP_ROOT/bench-$RUN
# What this run wrote to the servers goes when it ends (about 7 GiB a run with the 1 GiB corpus).
trap 'rm -rf "$SFTP_DIR"-* "$SMB_SHARE_DIR"/bench-*"$RUN"*
      python3 benches/azput.py --delete "bench-$RUN-" "bench-raw-$RUN/" >/dev/null || true' EXIT

target() { # target KIND NAME : one [[target]] of that kind, in fresh places
  case $1 in
    local) printf '[[target]]\nname = "%s"\nkind = "local"\npath = "%s/local-%s-%s"\n\n' "$2" "$R" "$2" "$RUN" ;;
    sftp)  printf '[[target]]\nname = "%s"\nkind = "sftp"\nhost = "%s"\nport = %s\nuser = "%s"\nkey_file = "%s"\npath = "%s-%s"\n\n' \
             "$2" "$SFTP_HOST" "$SFTP_PORT" "$SFTP_USER" "$SFTP_KEY" "$SFTP_DIR" "$2" ;;
    smb)   printf '[[target]]\nname = "%s"\nkind = "smb"\nhost = "%s"\nport = %s\nshare = "%s"\npath = "bench-%s-%s"\nuser = "%s"\npassword = "env:SMB_PASSWORD"\n\n' \
             "$2" "$SMB_HOST" "$SMB_PORT" "$SMB_SHARE" "$RUN" "$2" "$SMB_USER" ;;
    azblob) printf '[[target]]\nname = "%s"\nkind = "azblob"\nendpoint = "%s"\naccount = "%s"\ncontainer = "%s"\npath = "bench-%s-%s"\nkey = "env:AZBLOB_ACCOUNT_KEY"\nallow_insecure_http = true\n\n' \
             "$2" "$AZBLOB_ENDPOINT" "$AZBLOB_ACCOUNT_NAME" "$AZBLOB_CONTAINER" "$RUN" "$2" ;;
  esac
}
cfg() { # cfg FILE KIND:NAME...
  local f=$1; shift
  { printf '[backup]\nsources = ["%s/corpus"]\n\n' "$B"; for kn in "$@"; do target "${kn%%:*}" "${kn#*:}"; done; } >"$f"
}
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }   # CPU time of the whole machine, in ticks
measure() { # measure NAME CMD... : appends "NAME wall_s peak_rss_kib cpu_s machine_cpu_s"
  local name=$1 before; shift
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  before=$(busy)
  /usr/bin/time -f "%e %M %U %S" -o "$R/time.out" "$@" >"$R/out-$name" 2>"$R/err-$name" || { cat "$R/out-$name" "$R/err-$name" >&2; exit 1; }
  # The command's own CPU (its children's included: cairn's ssh) and the machine's (servers too).
  echo "$name $(awk -v m=$(( $(busy) - before )) -v hz="$(getconf CLK_TCK)" '{printf "%s %s %.2f %.2f", $1, $2, $3 + $4, m / hz}' "$R/time.out")" >>"$R/results"
  echo "  $name: $(awk '{printf "%.1f s, %d MiB", $1, $2/1024}' "$R/time.out")" >&2
}

cfg "$R/local.toml" local:local
cfg "$R/azblob.toml" azblob:azure
cfg "$R/smb.toml" smb:nas
cfg "$R/sftp.toml" sftp:dc
cfg "$R/four.toml" local:usb sftp:dc4 smb:nas4 azblob:azure4
cfg "$R/three.toml" local:l1 local:l2 local:l3
measure local  "$CAIRN" -c "$R/local.toml" backup --init
measure azblob "$CAIRN" -c "$R/azblob.toml" backup --init
measure smb    "$CAIRN" -c "$R/smb.toml" backup --init
measure sftp   "$CAIRN" -c "$R/sftp.toml" backup --init
measure four   "$CAIRN" -c "$R/four.toml" backup --init
"$CAIRN" -c "$R/three.toml" backup --init >/dev/null 2>&1
# The same backups with cairn on one core and the servers on the others: what the fan-out costs
# cairn itself, the servers' CPU out of its way (a real deployment's servers are other machines).
CORES=$(nproc)
if [ "$CORES" -ge 2 ]; then
  SERVERS=$(cat "$TS_RUN/sftp/sshd.pid" "$TS_RUN/smb/smbd.pid" "$TS_RUN/azurite/azurite.pid")
  pin() { for p in $SERVERS; do taskset -a -p -c "$1" "$p" >/dev/null; done; }   # children inherit it
  pin "1-$((CORES - 1))"
  cfg "$R/p-azblob.toml" azblob:azurep; cfg "$R/p-smb.toml" smb:nasp; cfg "$R/p-sftp.toml" sftp:dcp
  cfg "$R/p-four.toml" local:usbp sftp:dcp4 smb:nasp4 azblob:azurep4
  for kind in azblob smb sftp four; do
    measure "one-core-$kind" taskset -c 0 "$CAIRN" -c "$R/p-$kind.toml" backup --init
  done
  pin "0-$((CORES - 1))"
fi
RREPO="sftp:$SFTP_USER@$SFTP_HOST:$SFTP_DIR-restic"
SC="sftp.command=ssh $SFTP_USER@$SFTP_HOST -p $SFTP_PORT -i $SFTP_KEY -o IdentitiesOnly=yes -o UserKnownHostsFile=$SFTP_KNOWN_HOSTS -s sftp"
restic -r "$RREPO" -o "$SC" init -q >/dev/null
measure restic-sftp restic -r "$RREPO" -o "$SC" backup -q "$B/corpus"
# restic's ssh runs with OpenSSH's default cipher (ChaCha20-Poly1305); cairn puts AES-GCM first
# on a CPU with AES instructions. The same backup with restic's ssh on AES-GCM, for comparison.
RREPO2="$RREPO-aes"; SC2="${SC% -s sftp} -c aes128-gcm@openssh.com -s sftp"
restic -r "$RREPO2" -o "$SC2" init -q >/dev/null
measure restic-sftp-aes restic -r "$RREPO2" -o "$SC2" backup -q "$B/corpus"
# The raw transfer of the packs cairn wrote (the local target's data folder).
PACKS=$R/local-local-$RUN/data
printf 'mkdir %s-raw\nput -r %s %s-raw/data\n' "$SFTP_DIR" "$PACKS" "$SFTP_DIR" >"$R/sftp.batch"
measure raw-sftp sftp -q -b "$R/sftp.batch" -P "$SFTP_PORT" -i "$SFTP_KEY" -o IdentitiesOnly=yes \
  -o UserKnownHostsFile="$SFTP_KNOWN_HOSTS" "$SFTP_USER@$SFTP_HOST"
measure raw-smb smbclient "//$SMB_HOST/$SMB_SHARE" -p "$SMB_PORT" -U "$SMB_USER%$SMB_PASSWORD" -m SMB3 \
  -c "mkdir bench-raw-$RUN; cd bench-raw-$RUN; lcd $PACKS; prompt off; recurse on; mput *"
measure raw-azblob python3 benches/azput.py "$PACKS" "bench-raw-$RUN/data"
for kind in sftp azblob; do
  rm -rf "$OUT"; measure "restore-$kind" "$CAIRN" -c "$R/$kind.toml" restore latest --target "$OUT/c"
done
rm -rf "$OUT"; measure restic-restore-sftp restic -r "$RREPO" -o "$SC" restore latest -q --target "$OUT/r"
rm -rf "$OUT"
measure verify-four "$CAIRN" -c "$R/four.toml" --json verify --percent 1 --seed 1 --max-bytes 1TiB
measure verify-remote3 "$CAIRN" -c "$R/four.toml" verify --percent 1 --seed 1 --max-bytes 1TiB --only dc4 --only nas4 --only azure4
measure verify-local3 "$CAIRN" -c "$R/three.toml" verify --percent 1 --seed 1 --max-bytes 1TiB

python3 - "$R/results" "$(du -sb "$PACKS" | cut -f1)" "$R/out-verify-four" <<'PY'
import json, sys
import os
rows, cpu = {}, {}
for l in open(sys.argv[1]):
    n, t, m, c, a = l.split(); rows[n] = (float(t), int(m) / 1024); cpu[n] = (float(c), float(a))
packs = int(sys.argv[2])
cores = os.cpu_count()
print(f"\nremote kinds: first backup of the corpus ({packs / 2**20:.0f} MiB of packs); one run each")
print(f"CPU-s: the command's own (its ssh included) and the whole machine's ({cores} cores: the servers')")
print(f"{'run':<24}{'wall s':>8}{'peak MiB':>10}{'CPU-s':>8}{'machine':>9}")
for n, (t, m) in rows.items():
    print(f"{n:<24}{t:>8.1f}{m:>10.0f}{cpu[n][0]:>8.1f}{cpu[n][1]:>9.1f}")
v = json.load(open(sys.argv[3]))
print("verify 1% of the four-kind repository, seconds per target: " +
      ", ".join(f"{t['name']} {t['seconds']:.1f}" for t in v["targets"]))
def goal(label, ok, figure): print(f"  {'met ' if ok else 'MISS'}  {label:<58}{figure}")
print("\ngoals (issue 31)")
local = rows["local"][0]
for kind, raw in (("sftp", "raw-sftp"), ("smb", "raw-smb"), ("azblob", "raw-azblob")):
    bound = (local + rows[raw][0]) * 1.15
    goal(f"{kind}: <= (local + raw transfer) x 1.15 = {bound:.1f} s", rows[kind][0] <= bound, f"{rows[kind][0]:.1f} s")
r = rows["sftp"][0] / rows["restic-sftp"][0]
goal("sftp: <= 0.8x restic's sftp backup", r <= 0.8, f"{r:.2f}x")
print(f"        restic's ssh on AES-GCM as cairn's: {rows['restic-sftp-aes'][0]:.1f} s, "
      f"sftp {rows['sftp'][0] / rows['restic-sftp-aes'][0]:.2f}x")
for kind in ("azblob", "smb", "sftp"):
    goal(f"{kind}: peak <= 220 MiB", rows[kind][1] <= 220, f"{rows[kind][1]:.0f} MiB")
goal("four kinds: peak <= 260 MiB", rows["four"][1] <= 260, f"{rows['four'][1]:.0f} MiB")
slowest = max(rows[k][0] for k in ("azblob", "smb", "sftp"))
goal("four kinds: <= 1.25x the slowest single kind", rows["four"][0] <= 1.25 * slowest, f"{rows['four'][0] / slowest:.2f}x")
if "one-core-four" in rows:
    s1 = max(rows[f"one-core-{k}"][0] for k in ("azblob", "smb", "sftp"))
    print(f"        with cairn on one core and the servers on the other(s): four kinds "
          f"{rows['one-core-four'][0]:.1f} s / slowest single {s1:.1f} s = {rows['one-core-four'][0] / s1:.2f}x")
# When the servers share this machine, a run cannot end before its CPU-seconds fit on its cores.
s = max(("azblob", "smb", "sftp"), key=lambda k: rows[k][0])
print(f"        the machine's CPU-s, four kinds / {s}: {cpu['four'][1]:.1f} / {cpu[s][1]:.1f} = "
      f"{cpu['four'][1] / cpu[s][1]:.2f}x; at least {cpu['four'][1] / cores:.1f} s of the four-kind run on {cores} cores")
r = rows["restore-sftp"][0] / rows["restic-restore-sftp"][0]
goal("restore from sftp: <= 1.0x restic's", r <= 1.0, f"{r:.2f}x")
r = rows["verify-remote3"][0] / rows["verify-local3"][0]
goal("verify 1% of sftp+smb+azblob: <= 2x three local folders", r <= 2.0, f"{r:.2f}x")
PY
