#!/usr/bin/env bash
# SMB benchmark, against the test Samba server (scripts/test-servers/start-all.sh):
#   benches/smb.sh [SIZE_MIB]      (default 1024; the corpus of benches/bench.sh)
# Prints: `smbclient mput` of the very pack files cairn uploads (the server's and link's own
# speed for those bytes), a cairn backup of the corpus to the SMB target alone, and the same
# backup to one local folder for reference.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
B=${BENCH_DIR:-/tmp/cairn-bench}
eval "$(scripts/test-servers/start-all.sh 2>/dev/null)"
export CAIRN_PASSWORD=bench CAIRN_STATE_DIR=$B/state
cargo build --release --locked -q
CAIRN=$PWD/target/release/cairn
if [ ! -f "$B/corpus.done-$SIZE" ]; then
  rm -rf "$B"; mkdir -p "$B/corpus"; python3 benches/corpus.py "$B/corpus" "$SIZE"; touch "$B/corpus.done-$SIZE"
fi
rm -rf "$B/smb-local" "$SMB_SHARE_DIR/bench-smb" "$SMB_SHARE_DIR/bench-put" "$SMB_SHARE_DIR/bench-upload"
cat >"$B/smb.toml" <<TOML
[backup]
sources = ["$B/corpus"]
[[target]]
name = "nas"
kind = "smb"
host = "$SMB_HOST"
port = $SMB_PORT
share = "$SMB_SHARE"
path = "bench-smb"
user = "$SMB_USER"
password = "env:SMB_PASSWORD"
TOML
printf '[backup]\nsources = ["%s/corpus"]\n[[target]]\nname = "disk"\nkind = "local"\npath = "%s/smb-local"\n' "$B" "$B" >"$B/local.toml"

t() { local s e; s=$(date +%s.%N); "$@" >"$B/smb-last.log" 2>&1 || { cat "$B/smb-last.log"; exit 1; }; e=$(date +%s.%N); awk -v a="$s" -v b="$e" 'BEGIN{printf "%.2f", b-a}'; }
T_LOCAL=$(t "$CAIRN" -c "$B/local.toml" backup --init)
T_SMB=$(t "$CAIRN" -c "$B/smb.toml" backup --init)
STORED=$(du -sb "$SMB_SHARE_DIR/bench-smb" | cut -f1)
T_PUT=$(t smbclient "//$SMB_HOST/$SMB_SHARE" -p "$SMB_PORT" -U "$SMB_USER%$SMB_PASSWORD" -m SMB3 \
  -c "mkdir bench-put; cd bench-put; lcd $B/smb-local/data; prompt off; recurse on; mput *")
PUT=$(du -sb "$SMB_SHARE_DIR/bench-put" | cut -f1)
# The same pack files through cairn's SMB store, one after another as the fan-out writes them.
UPLOAD=$(cargo bench -q --locked --bench store_upload -- "$B/smb.toml" nas "$B/smb-local/data" bench-upload 2>/dev/null | tail -1)
T_UP=$(echo "$UPLOAD" | sed -E 's/.* in ([0-9.]+)s.*/\1/')
echo "SMB on 127.0.0.1 (Samba $(smbd --version | cut -d' ' -f2)); corpus $(du -sm "$B/corpus" | cut -f1) MiB"
awk -v tl="$T_LOCAL" -v ts="$T_SMB" -v tp="$T_PUT" -v tu="$T_UP" -v st="$STORED" -v pu="$PUT" 'BEGIN {
  printf "%-40s %8s %10s\n", "run", "wall s", "MB/s"
  printf "%-40s %8.2f %10.1f\n", "smbclient mput of the pack files", tp, pu/1e6/tp
  printf "%-40s %8.2f %10.1f\n", "cairn smb store, same pack files", tu, pu/1e6/tu
  printf "%-40s %8.2f %10.1f\n", "cairn backup -> smb (stored bytes)", ts, st/1e6/ts
  printf "%-40s %8.2f %10.1f\n", "cairn backup -> local (stored bytes)", tl, st/1e6/tl
}'
