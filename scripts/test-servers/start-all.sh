#!/usr/bin/env bash
# start-all.sh - cairn's test servers. Install (idempotently) and start real storage servers on loopback only:
#   SFTP  : Debian openssh-server, private sshd_config, key auth, internal-sftp   127.0.0.1:$SFTP_PORT
#           (+ an append-only account, $SFTP_AO_USER: contrib/sftp-append-only/)
#   SMB   : Debian samba (smbd only, no nmbd/winbind), tdbsam user + password    127.0.0.1:$SMB_PORT
#   Azure : Azurite (npm) blob service, devstoreaccount1                          127.0.0.1:$AZURITE_PORT
#   S3    : s3s-fs (crates.io, SigV4 enforced, fs-backed) or moto[server] (PyPI)  127.0.0.1:$S3_PORT
#   S3 with versioning and Object Lock: moto[server] (PyPI), in memory             127.0.0.1:$S3LOCK_PORT
# Usage:  eval "$(start-all.sh)"      (stdout = export lines only; progress goes to stderr)
#         later: source "$TS_RUN/env.sh";  stop: stop-all.sh [--purge]
# Re-running is safe: installed tools are reused, running servers (checked by pid file AND
# command line) are left alone with their data, keys/passwords persist under $TS_RUN. A server
# started afresh starts empty: what earlier runs wrote to it is deleted (tests and benches use
# fresh names each run, and the suite wrote tens of GiB a week to Azurite alone).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

TS_HOME=${TS_HOME:-/tmp/test-servers}     # installs: npm prefix, python venv, cargo root
TS_RUN=${TS_RUN:-$TS_HOME/run}            # configs, keys, data dirs, pid files, logs
HOST=127.0.0.1                            # loopback only, never change to 0.0.0.0
SFTP_PORT=${SFTP_PORT:-2222}
SMB_PORT=${SMB_PORT:-4445}
AZURITE_PORT=${AZURITE_PORT:-10000}
S3_PORT=${S3_PORT:-9000}
S3_IMPL=${S3_IMPL:-s3s-fs}                # s3s-fs | moto
S3LOCK_PORT=${S3LOCK_PORT:-9100}          # moto: the object-lock tests (s3s-fs keeps no versions)
AZURITE_VERSION=${AZURITE_VERSION:-3.35.0}  # 3.36+ require node >= 21/22 (image has node 20)
S3S_FS_VERSION=${S3S_FS_VERSION:-0.14.1}    # 0.15+ require a newer rustc than 1.95
MOTO_VERSION=${MOTO_VERSION:-5.2.5}
SMB_USER=${SMB_USER:-smbtest}
SMB_PASSWORD=${SMB_PASSWORD:-smbtest-Passw0rd}
SMB_SHARE=${SMB_SHARE:-backup}
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZ_CONTAINER=${AZ_CONTAINER:-backup}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-testaccesskey}
S3_SECRET_KEY=${S3_SECRET_KEY:-testsecretkey}
S3_BUCKET=${S3_BUCKET:-backup}
S3_REGION=${S3_REGION:-us-east-1}
ADD_USER_KNOWN_HOSTS=${ADD_USER_KNOWN_HOSTS:-1}  # SFTP targets default to host_key_checking = "strict"

log() { printf '[start-all %s] %s\n' "$(date +%T)" "$*" >&2; }
empty() { find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} +; }   # a data folder, kept itself
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
wait_until() { # wait_until SECONDS CMD... : poll every 0.1 s
  local end=$(($(date +%s) + $1)); shift
  until "$@"; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.1; done
}
ours() { # ours PIDFILE PATTERN : pid alive, not a zombie, and its command line matches
  local pid; [ -s "$1" ] || return 1; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}
spawn() { # spawn PIDFILE LOGFILE CMD... : detached from our session; pidfile holds CMD's own pid
  local pidfile=$1 logfile=$2; shift 2; rm -f "$pidfile"
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
  wait_until 5 test -s "$pidfile" || die "could not start $1"
}
need_free_port() { port_open "$1" && die "port $1 on $HOST is taken by something not started by this script" || true; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, sshd, smbd and useradd need it)"
mkdir -p "$TS_HOME" "$TS_RUN"
T_ALL=$(now)

# ---------------------------------------------------------------- install (idempotent)
T=$(now); missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v smbd >/dev/null || missing+=(samba)
command -v smbclient >/dev/null || missing+=(smbclient)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v restic >/dev/null || missing+=(restic)   # interop tests: stock restic reads every target
command -v strace >/dev/null || missing+=(strace)   # safeguards: local writes sync their folder
command -v promtool >/dev/null || missing+=(prometheus)   # run: the metrics file passes promtool
command -v systemd-analyze >/dev/null || missing+=(systemd)   # schedule: units pass systemd-analyze verify
command -v chromium >/dev/null || missing+=(chromium)   # report: the HTML page rendered in a real browser
command -v tidy >/dev/null || missing+=(tidy)   # report: the HTML page passes a validator
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  # Keep the packages' own services (sshd :22, smbd :445/:139, nmbd) from auto-starting on 0.0.0.0.
  PRC=/usr/sbin/policy-rc.d; PRC_ADDED=0
  if [ ! -e $PRC ]; then printf '#!/bin/sh\nexit 101\n' >$PRC; chmod +x $PRC; PRC_ADDED=1; fi
  trap '[ "$PRC_ADDED" = 1 ] && rm -f "$PRC"' EXIT
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ "$PRC_ADDED" = 1 ] && rm -f "$PRC"; trap - EXIT
fi
AZ_BIN=$TS_HOME/azurite/node_modules/.bin/azurite-blob
if [ ! -x "$AZ_BIN" ]; then
  log "npm install azurite@$AZURITE_VERSION"
  mkdir -p "$TS_HOME/azurite"
  npm install --prefix "$TS_HOME/azurite" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
fi
case $S3_IMPL in
  s3s-fs)
    S3_BIN=$TS_HOME/cargo/bin/s3s-fs
    if [ ! -x "$S3_BIN" ]; then
      log "cargo install s3s-fs@$S3S_FS_VERSION (about 3-4 min on 2 cores)"
      cargo install --quiet --locked --root "$TS_HOME/cargo" "s3s-fs@$S3S_FS_VERSION" --features binary >&2
    fi ;;
  moto)
    S3_BIN=$TS_HOME/moto-venv/bin/moto_server
    if [ ! -x "$S3_BIN" ]; then
      log "pip install moto[server]==$MOTO_VERSION"
      python3 -m venv "$TS_HOME/moto-venv"
      "$TS_HOME/moto-venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
    fi ;;
  *) die "S3_IMPL must be s3s-fs or moto" ;;
esac
MOTO_BIN=$TS_HOME/moto-venv/bin/moto_server
if [ ! -x "$MOTO_BIN" ]; then
  log "pip install moto[server]==$MOTO_VERSION"
  python3 -m venv "$TS_HOME/moto-venv"
  "$TS_HOME/moto-venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
fi
log "install step done in $(since "$T")"

# ---------------------------------------------------------------- SFTP (openssh)
T=$(now); D=$TS_RUN/sftp
mkdir -p "$D/data"; chmod 700 "$D"
[ -f "$D/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C test-host -f "$D/ssh_host_ed25519_key"
[ -f "$D/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C test-client -f "$D/id_ed25519"
install -m 600 "$D/id_ed25519.pub" "$D/authorized_keys"
echo "[$HOST]:$SFTP_PORT $(cut -d' ' -f1,2 "$D/ssh_host_ed25519_key.pub")" >"$D/known_hosts"
# An unprivileged account whose SFTP session is append-only (root would ignore file modes).
SFTP_AO_USER=${SFTP_AO_USER:-cairnao}; AO=$TS_RUN/sftp-ao
id "$SFTP_AO_USER" >/dev/null 2>&1 \
  || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SFTP_AO_USER"
usermod -p '*' "$SFTP_AO_USER"   # not locked ("!"): sshd without PAM refuses a locked account
mkdir -p "$AO/data"; chmod o+x "$TS_HOME" "$TS_RUN"; chmod 755 "$AO"; chown "$SFTP_AO_USER" "$AO/data"
install -m 644 "$D/id_ed25519.pub" "$AO/authorized_keys"
cat >"$D/sshd_config" <<EOF
Port $SFTP_PORT
ListenAddress $HOST
HostKey $D/ssh_host_ed25519_key
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# /tmp is world-writable, which StrictModes rejects for AuthorizedKeysFile paths under it
StrictModes no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
MaxStartups 100
LogLevel VERBOSE
# The append-only account: contrib/sftp-append-only/sshd_config.snippet, with its own keys file
# (sshd reads it as that user, who cannot enter $D).
Match User $SFTP_AO_USER
    AuthorizedKeysFile $AO/authorized_keys
$(sed -n '/^Match User/,$p' "$ROOT/contrib/sftp-append-only/sshd_config.snippet" | tail -n +2)
EOF
if ours "$D/sshd.pid" "$D/sshd_config"; then
  log "sftp: sshd already running (pid $(cat "$D/sshd.pid"))"
else
  need_free_port "$SFTP_PORT"
  empty "$D/data"; empty "$AO/data"
  mkdir -p /run/sshd                              # privilege-separation dir Debian's sshd insists on
  /usr/sbin/sshd -t -f "$D/sshd_config"
  /usr/sbin/sshd -f "$D/sshd_config" -E "$D/sshd.log"   # daemonizes, writes PidFile
  wait_until 10 port_open "$SFTP_PORT" || die "sshd did not listen; see $D/sshd.log"
fi
SFTP_USER=$(id -un)
echo pwd | sftp -q -b - -P "$SFTP_PORT" -i "$D/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
  -o UserKnownHostsFile="$D/known_hosts" -o StrictHostKeyChecking=yes "$SFTP_USER@$HOST" >/dev/null \
  || die "sftp readiness check failed; see $D/sshd.log"
if [ "$ADD_USER_KNOWN_HOSTS" = 1 ]; then
  # ssh (and so opendal/openssh) reads ~/.ssh/known_hosts of the passwd home; $HOME does not matter
  UH=$(getent passwd "$SFTP_USER" | cut -d: -f6)/.ssh
  mkdir -p "$UH"; chmod 700 "$UH"; touch "$UH/known_hosts"
  ssh-keygen -q -R "[$HOST]:$SFTP_PORT" -f "$UH/known_hosts" >/dev/null 2>&1 || true
  rm -f "$UH/known_hosts.old"; cat "$D/known_hosts" >>"$UH/known_hosts"
fi
echo pwd | sftp -q -b - -P "$SFTP_PORT" -i "$D/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
  -o UserKnownHostsFile="$D/known_hosts" -o StrictHostKeyChecking=yes "$SFTP_AO_USER@$HOST" >/dev/null \
  || die "append-only sftp readiness check failed; see $D/sshd.log"
log "sftp ready in $(since "$T")"

# ---------------------------------------------------------------- SMB (samba smbd)
T=$(now); D=$TS_RUN/smb
mkdir -p "$D"/{share,private,lock,state,cache,pid,log,ncalrpc}; chmod 700 "$D/private"
cat >"$D/smb.conf" <<EOF
[global]
  server role = standalone server
  workgroup = WORKGROUP
  netbios name = TESTSMB
  interfaces = $HOST
  bind interfaces only = yes
  smb ports = $SMB_PORT
  disable netbios = yes
  server min protocol = SMB2_10
  passdb backend = tdbsam:$D/private/passdb.tdb
  private dir = $D/private
  lock directory = $D/lock
  state directory = $D/state
  cache directory = $D/cache
  pid directory = $D/pid
  ncalrpc dir = $D/ncalrpc
  log file = $D/log/log.%m
  log level = 1
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  map to guest = never
[$SMB_SHARE]
  path = $D/share
  read only = no
  valid users = $SMB_USER
  force user = root
  create mask = 0644
  directory mask = 0755
EOF
id -u "$SMB_USER" >/dev/null 2>&1 ||
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SMB_USER"
printf '%s\n%s\n' "$SMB_PASSWORD" "$SMB_PASSWORD" | smbpasswd -c "$D/smb.conf" -s -a "$SMB_USER" >/dev/null 2>&1 \
  || die "smbpasswd -a $SMB_USER failed"
if ours "$D/smbd.pid" "$D/smb.conf"; then
  log "smb: smbd already running (pid $(cat "$D/smbd.pid"))"
else
  need_free_port "$SMB_PORT"
  empty "$D/share"
  spawn "$D/smbd.pid" "$D/log/smbd.out" /usr/sbin/smbd --foreground --no-process-group \
    --configfile="$D/smb.conf" --debug-stdout --debuglevel=1
  wait_until 15 port_open "$SMB_PORT" || die "smbd did not listen; see $D/log/smbd.out"
fi
smbclient "//$HOST/$SMB_SHARE" -p "$SMB_PORT" -U "$SMB_USER%$SMB_PASSWORD" -m SMB3 -c ls >/dev/null 2>&1 \
  || die "smbclient readiness check failed; see $D/log"
log "smb ready in $(since "$T")"

# ---------------------------------------------------------------- Azure Blob (Azurite)
T=$(now); D=$TS_RUN/azurite
mkdir -p "$D/data"
if ours "$D/azurite.pid" "$D/data"; then
  log "azurite: already running (pid $(cat "$D/azurite.pid"))"
else
  need_free_port "$AZURITE_PORT"
  empty "$D/data"
  # --disableTelemetry: Azurite >= 3.33 otherwise tries to send telemetry off the machine
  spawn "$D/azurite.pid" "$D/azurite.log" "$AZ_BIN" --blobHost "$HOST" --blobPort "$AZURITE_PORT" \
    --location "$D/data" --skipApiVersionCheck --loose --disableTelemetry --silent
  wait_until 30 curl -s -o /dev/null "http://$HOST:$AZURITE_PORT/" || die "azurite did not answer; see $D/azurite.log"
fi
az_create_container() { # SharedKey-signed "Create Container" with curl+openssl; 201 created, 409 exists
  local date ver=2021-08-06 sts hexkey sig code
  date=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
  sts="PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:$date\nx-ms-version:$ver\n/$AZ_ACCOUNT/$AZ_ACCOUNT/$1\nrestype:container"
  hexkey=$(printf '%s' "$AZ_KEY" | base64 -d | od -An -v -tx1 | tr -d ' \n')
  sig=$(printf "$sts" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "x-ms-date: $date" -H "x-ms-version: $ver" \
    -H "Authorization: SharedKey $AZ_ACCOUNT:$sig" -H 'Content-Length: 0' \
    "http://$HOST:$AZURITE_PORT/$AZ_ACCOUNT/$1?restype=container")
  [ "$code" = 201 ] || [ "$code" = 409 ] || die "azurite create container $1: HTTP $code"
}
az_create_container "$AZ_CONTAINER"
log "azurite ready in $(since "$T")"

# ---------------------------------------------------------------- S3 (s3s-fs or moto)
T=$(now); D=$TS_RUN/s3
mkdir -p "$D/data"
if ours "$D/s3.pid" "$S3_BIN"; then
  log "s3 ($S3_IMPL): already running (pid $(cat "$D/s3.pid"))"
else
  need_free_port "$S3_PORT"
  empty "$D/data"
  if [ "$S3_IMPL" = s3s-fs ]; then
    spawn "$D/s3.pid" "$D/s3.log" "$S3_BIN" --host "$HOST" --port "$S3_PORT" \
      --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$D/data"
  else   # moto: in memory, accepts any credentials
    spawn "$D/s3.pid" "$D/s3.log" "$S3_BIN" -H "$HOST" -p "$S3_PORT"
  fi
  wait_until 30 curl -s -o /dev/null "http://$HOST:$S3_PORT/" || die "s3 server did not answer; see $D/s3.log"
fi
# curl 7.88 signs SigV4 itself but does not add x-amz-content-sha256, which s3s requires
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:$S3_REGION:s3" \
  --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
  "http://$HOST:$S3_PORT/$S3_BUCKET")
case $code in 200|409) ;; *) die "s3 create bucket: HTTP $code; see $D/s3.log" ;; esac
log "s3 ($S3_IMPL) ready in $(since "$T")"

# ---------------------------------------------------------------- S3 with Object Lock (moto)
T=$(now); D=$TS_RUN/s3lock
mkdir -p "$D"
if ours "$D/s3lock.pid" "$MOTO_BIN"; then
  log "s3lock (moto): already running (pid $(cat "$D/s3lock.pid"))"
else
  need_free_port "$S3LOCK_PORT"
  # In memory; accepts any credentials. Each test makes its own buckets.
  spawn "$D/s3lock.pid" "$D/s3lock.log" "$MOTO_BIN" -H "$HOST" -p "$S3LOCK_PORT"
  wait_until 30 curl -s -o /dev/null "http://$HOST:$S3LOCK_PORT/" || die "moto did not answer; see $D/s3lock.log"
fi
log "s3lock (moto) ready in $(since "$T")"

# ---------------------------------------------------------------- connection settings
{
  printf 'export %s=%q\n' \
    TS_RUN "$TS_RUN" \
    SFTP_ENDPOINT "ssh://$HOST:$SFTP_PORT" SFTP_HOST "$HOST" SFTP_PORT "$SFTP_PORT" \
    SFTP_USER "$SFTP_USER" SFTP_KEY "$TS_RUN/sftp/id_ed25519" SFTP_ROOT "$TS_RUN/sftp/data" \
    SFTP_KNOWN_HOSTS "$TS_RUN/sftp/known_hosts" \
    SFTP_AO_USER "$SFTP_AO_USER" SFTP_AO_ROOT "$AO/data" \
    SMB_HOST "$HOST" SMB_PORT "$SMB_PORT" SMB_SHARE "$SMB_SHARE" SMB_USER "$SMB_USER" \
    SMB_PASSWORD "$SMB_PASSWORD" SMB_SHARE_DIR "$TS_RUN/smb/share" \
    AZBLOB_ENDPOINT "http://$HOST:$AZURITE_PORT/$AZ_ACCOUNT" AZBLOB_ACCOUNT_NAME "$AZ_ACCOUNT" \
    AZBLOB_ACCOUNT_KEY "$AZ_KEY" AZBLOB_CONTAINER "$AZ_CONTAINER" \
    AZURE_STORAGE_CONNECTION_STRING "DefaultEndpointsProtocol=http;AccountName=$AZ_ACCOUNT;AccountKey=$AZ_KEY;BlobEndpoint=http://$HOST:$AZURITE_PORT/$AZ_ACCOUNT;" \
    S3_IMPL "$S3_IMPL" S3_ENDPOINT "http://$HOST:$S3_PORT" S3_REGION "$S3_REGION" S3_BUCKET "$S3_BUCKET" \
    S3_ACCESS_KEY_ID "$S3_ACCESS_KEY" S3_SECRET_ACCESS_KEY "$S3_SECRET_KEY" \
    S3LOCK_ENDPOINT "http://$HOST:$S3LOCK_PORT"
} >"$TS_RUN/env.sh"
cat "$TS_RUN/env.sh"
log "all servers ready in $(since "$T_ALL"); settings also in $TS_RUN/env.sh"
