#!/usr/bin/env python3
"""Seeds the `packet` fuzz target with real packets: scripts/fuzz.sh runs it at run time.

Usage: seed_packets.py TRACES_DIR OUT_DIR

Reads the libpcap savefiles (pcap, not pcapng) under TRACES_DIR and writes up to 3 packets of
each as one seed file in the `packet` target's input format: byte 0 = index of the link type
in fuzz_targets/packet.rs's LINKS, bytes 1..5 = wire length (u32 little-endian), then the
captured bytes (cut at 512). Files of link types the target does not list are skipped.
"""
import os
import struct
import sys

# LINKTYPE_ number -> index in LINKS of fuzz_targets/packet.rs.
LINKS = {1: 0, 113: 1, 276: 2, 101: 3, 12: 3, 14: 3, 228: 4, 229: 5, 0: 6, 108: 7,
         9: 8, 50: 8, 104: 9, 105: 10, 127: 11}
MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 16), b"\xa1\xb2\xc3\xd4": (">", 16),
    b"\x4d\x3c\xb2\xa1": ("<", 16), b"\xa1\xb2\x3c\x4d": (">", 16),
    b"\x34\xcd\xb2\xa1": ("<", 24), b"\xa1\xb2\xcd\x34": (">", 24),
}


def packets(path, keep=3):
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    if len(data) < 24 or data[:4] not in MAGICS:
        return
    order, rec = MAGICS[data[:4]]
    link = struct.unpack(order + "I", data[20:24])[0] & 0x0FFFFFFF
    if link not in LINKS:
        return
    off = 24
    for _ in range(keep):
        if off + rec > len(data):
            return
        _, _, caplen, wire = struct.unpack(order + "IIII", data[off:off + 16])
        body = data[off + rec:off + rec + min(caplen, 512)]
        if caplen > 65535 or len(body) < min(caplen, 512):
            return
        yield LINKS[link], wire, body
        off += rec + caplen


def main():
    traces, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    n = 0
    for dirpath, _, files in sorted(os.walk(traces)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                for i, (link, wire, body) in enumerate(packets(path)):
                    seed = bytes([link]) + struct.pack("<I", wire) + body
                    rel = os.path.relpath(path, traces).replace(os.sep, "_")
                    with open(os.path.join(out, f"{rel}-{i}"), "wb") as f:
                        f.write(seed)
                    n += 1
            except (OSError, struct.error):
                continue
    print(f"seed_packets: {n} packet seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
