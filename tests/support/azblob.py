#!/usr/bin/env python3
"""Minimal Azure Blob client for Azurite, for walpipe's test kit (tests/src/cloud.rs).

Python standard library only: the tests must check what walpipe wrote without trusting
walpipe's own client code, and without a heavy SDK.

usage:
  azblob.py mkcontainer HOST PORT CONTAINER   exit 0 on 201 Created or 409 (already exists)
  azblob.py put HOST PORT CONTAINER NAME      block blob from stdin; exit 0 on 201
  azblob.py list HOST PORT CONTAINER PREFIX   JSON [[name, size], ...] on stdout, by name
  azblob.py get HOST PORT CONTAINER NAME      the blob's bytes on stdout; exit 0 on 200

Any other status prints "<status> <reason>" and the response body on stderr and exits 1.

Requests are SharedKey-signed for Azurite's well-known development account. Pitfall:
urllib.request silently adds a Content-Type header to a request with a body, which breaks
the signature; http.client sends only what we sign.
"""

import base64
import hashlib
import hmac
import http.client
import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from email.utils import formatdate

# The well-known, public Azurite development account and key (not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
VERSION = "2021-08-06"

# The standard headers of the SharedKey string-to-sign, in order, after the verb.
SIGNED_STANDARD = [
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-MD5",
    "Content-Type",
    "Date",
    "If-Modified-Since",
    "If-Match",
    "If-None-Match",
    "If-Unmodified-Since",
    "Range",
]


def request(host, port, method, path, query=None, body=b"", headers=None):
    """Sends one SharedKey-signed request to /ACCOUNT/<path>; returns (status, reason, body).

    `path` is unencoded ("container/dir/name"); `query` is a dict of unencoded values.
    """
    query = query or {}
    headers = dict(headers or {})
    headers["x-ms-date"] = formatdate(usegmt=True)
    headers["x-ms-version"] = VERSION
    if body or method in ("PUT", "POST"):
        headers["Content-Length"] = str(len(body))
    url_path = "/" + ACCOUNT + "/" + urllib.parse.quote(path, safe="/")

    # Since version 2015-02-21 a zero Content-Length is signed as an empty string.
    standard = []
    for name in SIGNED_STANDARD:
        value = headers.get(name, "")
        if name == "Content-Length" and value == "0":
            value = ""
        standard.append(value)
    canonical_headers = "".join(
        f"{k.lower()}:{v}\n"
        for k, v in sorted(headers.items(), key=lambda kv: kv[0].lower())
        if k.lower().startswith("x-ms-")
    )
    # Path-style (emulator) URLs carry the account in the path, so it appears twice.
    resource = "/" + ACCOUNT + url_path
    for name in sorted(query):
        resource += f"\n{name.lower()}:{query[name]}"
    to_sign = method + "\n" + "\n".join(standard) + "\n" + canonical_headers + resource
    digest = hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{base64.b64encode(digest).decode()}"

    target = url_path
    if query:
        target += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.reason, resp.read()
    finally:
        conn.close()


def fail(status, reason, body):
    sys.stderr.write(f"{status} {reason}\n")
    sys.stderr.buffer.write(body)
    sys.exit(1)


def mkcontainer(host, port, container):
    status, reason, body = request(
        host, port, "PUT", container, {"restype": "container"}
    )
    if status not in (201, 409):
        fail(status, reason, body)


def put(host, port, container, name):
    data = sys.stdin.buffer.read()
    status, reason, body = request(
        host, port, "PUT", f"{container}/{name}", body=data,
        headers={"x-ms-blob-type": "BlockBlob"},
    )
    if status != 201:
        fail(status, reason, body)


def list_blobs(host, port, container, prefix):
    blobs, marker = [], ""
    while True:
        query = {"restype": "container", "comp": "list", "prefix": prefix}
        if marker:
            query["marker"] = marker
        status, reason, body = request(host, port, "GET", container, query)
        if status != 200:
            fail(status, reason, body)
        root = ET.fromstring(body)
        for blob in root.iter("Blob"):
            size = blob.find("Properties/Content-Length").text
            blobs.append([blob.find("Name").text, int(size)])
        marker = root.findtext("NextMarker") or ""
        if not marker:
            break
    json.dump(sorted(blobs), sys.stdout)
    sys.stdout.write("\n")


def get(host, port, container, name):
    status, reason, body = request(host, port, "GET", f"{container}/{name}")
    if status != 200:
        fail(status, reason, body)
    sys.stdout.buffer.write(body)


def main(argv):
    commands = {"mkcontainer": (mkcontainer, 3), "put": (put, 4),
                "list": (list_blobs, 4), "get": (get, 4)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.stderr.write(__doc__)
        sys.exit(2)
    func, _ = commands[argv[1]]
    host, port, rest = argv[2], int(argv[3]), argv[4:]
    func(host, port, *rest)


if __name__ == "__main__":
    main(sys.argv)
