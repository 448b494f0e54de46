#!/usr/bin/env python3
"""Builds the tshark oracle tables in tests/data/oracle/ from real traces in tests/data/traces/.

For each trace listed in TRACES, writes (name = trace path with '/' replaced by '__'):

- <name>.packets.tsv: one line per frame, tshark's fields (first occurrence, i.e. the outer
  header of tunnels): frame.time_epoch, frame.len, ip.src, ip.dst, ipv6.src, ipv6.dst, ip.proto,
  ipv6.nxt, tcp.srcport, tcp.dstport, udp.srcport, udp.dstport, ipv6.fraghdr.nxt.
- <name>.conv-tcp.tsv / .conv-udp.tsv: tshark's `-z conv,tcp` / `-z conv,udp`: addr_a, port_a,
  addr_b, port_b, frames (total, exact) and bytes as tshark prints them ("7347 bytes", "86 kB":
  tshark 4.0 rounds bytes above 1 kB, so tests compare bytes with the per-packet table).
- <name>.endpoints.tsv: `-z endpoints,ip` and `-z endpoints,ipv6`: addr, packets, bytes,
  tx_packets, tx_bytes, rx_packets, rx_bytes (exact).

The tests (modules/tests/oracle.rs) compare CoMo-rs's modules with these tables. Regenerate with
`python3 scripts/gen-tshark-oracle.py` (needs tshark, installed by scripts/setup.sh); the first
line of each table names the tshark version that made it.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES_DIR = os.path.join(ROOT, "tests", "data", "traces")
OUT_DIR = os.path.join(ROOT, "tests", "data", "oracle")

TRACES = [
    "nDPI/teams.pcap",
    "zeek/workshop_2011_browse.pcap",
    "pcap-parser/wireshark_samples-test.pcapng",
    "libtrace/100_packetsns.pcap",
    "nDPI/netflix.pcap",
    "nDPI/skype-conference-call.pcap",
    "nDPI/6in4tunnel.pcap",
    # IP fragments (tshark reassembles them).
    "zeek/ipv6-fragmented-dns.pcap",
    "zeek/ipv4/fragmented-4.pcap",
    "libtrace/fragtest.erf",
]

FIELDS = [
    "frame.time_epoch",
    "frame.len",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.proto",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "ipv6.fraghdr.nxt",
]


def tshark(args):
    out = subprocess.run(
        ["tshark", "-n"] + args,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, LC_ALL="C"),
    )
    return out.stdout.decode()


def version():
    first = tshark(["--version"]).splitlines()[0]
    return first.strip()


def split_endpoint(s):
    """'192.168.1.6:60543' or 'fe80::1:546' -> (addr, port): the port is after the last colon."""
    addr, _, port = s.rpartition(":")
    return addr, port


def conv_rows(text):
    rows = []
    for line in text.splitlines():
        if "<->" not in line:
            continue
        left, right = line.split("<->", 1)
        a, pa = split_endpoint(left.strip())
        toks = right.split()
        b, pb = split_endpoint(toks[0])
        # frames_ba bytes unit frames_ab bytes unit frames_total bytes unit start duration
        nums = toks[1:]
        if len(nums) < 11:
            raise SystemExit(f"unexpected conv line: {line!r}")
        frames_total = nums[6]
        bytes_total = nums[7] + " " + nums[8]
        rows.append((a, pa, b, pb, frames_total, bytes_total))
    return rows


def endpoint_rows(text):
    rows = []
    for line in text.splitlines():
        toks = line.split()
        if len(toks) == 7 and all(re.fullmatch(r"\d+", t) for t in toks[1:]):
            rows.append(tuple(toks))
    return rows


def write(path, header, rows, ver):
    with open(path, "w") as f:
        f.write(f"# {ver}\n")
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(r) + "\n")


def main():
    ver = version()
    os.makedirs(OUT_DIR, exist_ok=True)
    for rel in TRACES:
        path = os.path.join(TRACES_DIR, rel)
        name = rel.replace("/", "__")
        args = ["-r", path, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]
        for f in FIELDS:
            args += ["-e", f]
        pk = [line.split("\t") for line in tshark(args).splitlines()]
        write(os.path.join(OUT_DIR, name + ".packets.tsv"), FIELDS, pk, ver)
        for proto in ("tcp", "udp"):
            text = tshark(["-q", "-r", path, "-z", f"conv,{proto}"])
            write(
                os.path.join(OUT_DIR, f"{name}.conv-{proto}.tsv"),
                ["addr_a", "port_a", "addr_b", "port_b", "frames", "bytes"],
                conv_rows(text),
                ver,
            )
        text = tshark(["-q", "-r", path, "-z", "endpoints,ip", "-z", "endpoints,ipv6"])
        write(
            os.path.join(OUT_DIR, name + ".endpoints.tsv"),
            ["addr", "packets", "bytes", "tx_packets", "tx_bytes", "rx_packets", "rx_bytes"],
            endpoint_rows(text),
            ver,
        )
        print(f"{rel}: {len(pk)} packets", file=sys.stderr)


if __name__ == "__main__":
    main()
