#!/usr/bin/env python3
"""The raw Azure line of benches/remote.sh: one plain HTTP PUT per file, one after another.

    azput.py FOLDER PREFIX      (AZBLOB_ENDPOINT, AZBLOB_ACCOUNT_NAME, AZBLOB_ACCOUNT_KEY,
                                 AZBLOB_CONTAINER from the test servers' settings)
    azput.py --delete PREFIX... deletes every blob whose name starts with a PREFIX (the bench's
                                own, when it ends: Azurite keeps them otherwise)

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
from xml.etree import ElementTree
from email.utils import formatdate

endpoint = urllib.parse.urlsplit(os.environ["AZBLOB_ENDPOINT"])
account = os.environ["AZBLOB_ACCOUNT_NAME"]
key = base64.b64decode(os.environ["AZBLOB_ACCOUNT_KEY"])
container = os.environ["AZBLOB_CONTAINER"]
conn = http.client.HTTPConnection(endpoint.hostname, endpoint.port)


def request(verb, name, body=b"", query=None, headers=None):
    """One SharedKey-signed request on the container (`name` "") or a blob; the response."""
    path = f"{endpoint.path.rstrip('/')}/{container}" + (f"/{urllib.parse.quote(name)}" if name else "")
    query = query or {}
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06", **(headers or {})}
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    length = str(len(body)) if body else ""
    to_sign = "\n".join([verb, "", "", length, "", "", "", "", "", "", "", ""])
    # Path-style (emulator) addresses name the account in the path as well.
    to_sign += "\n" + canonical + f"/{account}{path}"
    to_sign += "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {account}:{sig}"
    headers["Content-Length"] = str(len(body))
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    conn.request(verb, url, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


def put(name, body):
    status, _ = request("PUT", name, body, headers={"x-ms-blob-type": "BlockBlob"})
    if status != 201:
        sys.exit(f"PUT {name}: HTTP {status}")


def delete(prefix):
    """Deletes the blobs named PREFIX...; their number."""
    names, marker = [], ""
    while True:
        query = {"comp": "list", "prefix": prefix, "restype": "container"}
        if marker:
            query["marker"] = marker
        status, body = request("GET", "", query=query)
        if status != 200:
            sys.exit(f"listing {prefix}: HTTP {status}")
        listed = ElementTree.fromstring(body)
        names += [b.findtext("Name") for b in listed.iter("Blob")]
        marker = listed.findtext("NextMarker") or ""
        if not marker:
            break
    for name in names:
        status, _ = request("DELETE", name)
        if status not in (202, 404):
            sys.exit(f"DELETE {name}: HTTP {status}")
    return len(names)


if sys.argv[1] == "--delete":
    print(sum(delete(p) for p in sys.argv[2:]), "blob(s) deleted")
else:
    folder, prefix = sys.argv[1], sys.argv[2].strip("/")
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                put(f"{prefix}/{os.path.relpath(full, folder)}", fh.read())
