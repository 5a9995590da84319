#!/usr/bin/env python3
"""Writes src/server/admin/data/commands.resp: what a redis-server answers
to COMMAND INFO and COMMAND DOCS (in RESP3) for every command keyway
knows, so that keyway gives clients the same key specifications, flags,
summaries and arguments (redis-cli's `help set` reads them).

    python3 scripts/command-docs.py PORT > src/server/admin/data/commands.resp

PORT is a redis-server's (the file in the repository comes from 7.0.15).
The file holds two RESP3 replies, INFO's then DOCS's, each asked for the
commands of src/wire/command.rs only.
"""
import re
import socket
import sys


def read_reply(f):
    """Reads one RESP3 reply from file `f`; returns its raw bytes."""
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    out = [line]
    if kind in (b"$", b"=", b"!"):
        n = int(rest)
        if n >= 0:
            out.append(f.read(n + 2))
    elif kind in (b"*", b"~", b">"):
        for _ in range(max(int(rest), 0)):
            out.append(read_reply(f))
    elif kind in (b"%", b"|"):
        for _ in range(2 * int(rest)):
            out.append(read_reply(f))
    return b"".join(out)


def request(words):
    out = [b"*%d\r\n" % len(words)]
    for w in words:
        w = w.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(w), w))
    return b"".join(out)


def main():
    port = int(sys.argv[1])
    source = open("src/wire/command.rs").read()
    names = re.findall(r'^\s*\(\s*"([a-z_|-]+)",\s*-?\d+,', source, re.M)
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    s.sendall(request(["HELLO", "3"]))
    read_reply(f)
    out = sys.stdout.buffer
    for sub in ("INFO", "DOCS"):
        s.sendall(request(["COMMAND", sub] + names))
        out.write(read_reply(f))


main()
