#!/usr/bin/env python3
"""The raw Azure line of benches/remote.sh: one plain HTTP PUT per file, one after another.

    azput.py FOLDER PREFIX   (AZBLOB_ENDPOINT, AZBLOB_ACCOUNT_NAME, AZBLOB_ACCOUNT_KEY,
                              AZBLOB_CONTAINER from the test servers' settings)

Puts every file below FOLDER as a block blob under PREFIX/ in the container, signed with the
account's shared key, over one kept-alive connection: what the wire and the server take for the
bytes, with no client library in between.
"""
import base64
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse
from email.utils import formatdate

folder, prefix = sys.argv[1], sys.argv[2].strip("/")
endpoint = urllib.parse.urlsplit(os.environ["AZBLOB_ENDPOINT"])
account = os.environ["AZBLOB_ACCOUNT_NAME"]
key = base64.b64decode(os.environ["AZBLOB_ACCOUNT_KEY"])
container = os.environ["AZBLOB_CONTAINER"]
conn = http.client.HTTPConnection(endpoint.hostname, endpoint.port)


def put(name, body):
    path = f"{endpoint.path.rstrip('/')}/{container}/{urllib.parse.quote(name)}"
    headers = {
        "x-ms-blob-type": "BlockBlob",
        "x-ms-date": formatdate(usegmt=True),
        "x-ms-version": "2021-08-06",
    }
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    # Path-style (emulator) addresses name the account in the path as well.
    to_sign = "\n".join(["PUT", "", "", str(len(body)), "", "", "", "", "", "", "", ""])
    to_sign += "\n" + canonical + f"/{account}{path}"
    sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {account}:{sig}"
    headers["Content-Length"] = str(len(body))
    conn.request("PUT", path, body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        sys.exit(f"PUT {name}: HTTP {r.status} {r.reason}")


for root, _, files in os.walk(folder):
    for f in sorted(files):
        full = os.path.join(root, f)
        with open(full, "rb") as fh:
            put(f"{prefix}/{os.path.relpath(full, folder)}", fh.read())
