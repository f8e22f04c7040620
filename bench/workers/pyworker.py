#!/usr/bin/env python3
"""A Python function for Banyan's micro-batching benchmark.

It starts the way a real Python function does: it imports the libraries
such a function uses before it can take a call (standard library only, so
there is nothing to install): json, decimal, datetime, urllib.parse, email,
http.client, sqlite3, xml.etree.ElementTree, asyncio, logging, csv, hashlib,
uuid, zlib, base64 and re.

Each call's work: args[0] milliseconds of waiting (time.sleep, as a call
that waits on I/O would), then a one-line answer.

Run with --call MS it makes one call and exits (the cold path: one process
per call). Without arguments it is a line-protocol worker (agent/worker):
one JSON request per line on stdin, one JSON response per line on stdout,
until stdin closes.
"""

import asyncio  # noqa: F401  (imported for its start-up cost, as a real function would)
import base64  # noqa: F401
import csv  # noqa: F401
import datetime  # noqa: F401
import decimal  # noqa: F401
import email.message  # noqa: F401
import email.parser  # noqa: F401
import email.utils  # noqa: F401
import hashlib  # noqa: F401
import http.client  # noqa: F401
import json
import logging
import re  # noqa: F401
import sqlite3  # noqa: F401
import sys
import time
import urllib.parse  # noqa: F401
import uuid  # noqa: F401
import xml.etree.ElementTree  # noqa: F401
import zlib  # noqa: F401

log = logging.getLogger("pyworker")


def call(args):
    """One call: sleep args[0] milliseconds; returns the output line."""
    if len(args) != 1:
        raise ValueError("want one argument: milliseconds to sleep")
    ms = int(args[0])
    if ms < 0 or ms > 60_000:
        raise ValueError("milliseconds must be 0 to 60000, not %d" % ms)
    time.sleep(ms / 1000)
    return "slept %dms" % ms


def serve(inp, out):
    """The line protocol: answer each request line, in order, until EOF."""
    for line in inp:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            log.error("bad request line: %s", e)
            return 1
        resp = {"id": req.get("id", "")}
        try:
            resp["output"] = call(req.get("args") or [])
            resp["ok"] = True
        except ValueError as e:
            resp["ok"] = False
            resp["error"] = "bad input: %s" % e
        out.write(json.dumps(resp) + "\n")
        out.flush()
    return 0


def main(argv):
    if len(argv) >= 1 and argv[0] == "--call":
        try:
            print(call(argv[1:]))
        except ValueError as e:
            print("pyworker: %s" % e, file=sys.stderr)
            return 2
        return 0
    if argv:
        print("usage: pyworker.py [--call MS]", file=sys.stderr)
        return 2
    return serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
