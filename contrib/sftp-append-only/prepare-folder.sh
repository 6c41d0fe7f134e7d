#!/bin/sh
# Prepares a folder on an SFTP server for an `append_only = true` cairn target: run once, as
# the storage's owner (root), before cairn's first backup there.
#
#   prepare-folder.sh FOLDER ACCOUNT
#
# The account is the one cairn logs in as; sshd_config.snippet in this folder makes its SFTP
# session append-only (files created read-only, no remove, rename or change). A folder made
# through such a session would itself be read-only and accept no file, so the storage's owner
# makes them all here, owned by the account: the repository's (restic's layout) and cairn's.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 FOLDER ACCOUNT" >&2; exit 2; }
folder=$1 account=$2
id "$account" >/dev/null || { echo "$0: no such account: $account" >&2; exit 2; }
mk() { install -d -o "$account" -m 0755 "$1"; }
mk "$folder"
for d in keys snapshots index data locks \
         .cairn-tmp .cairn-deletions .cairn-audit .cairn-keys .cairn-erasures .cairn-canary; do
  mk "$folder/$d"
done
for i in $(seq 0 255); do mk "$folder/data/$(printf %02x "$i")"; done
