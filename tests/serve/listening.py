"""Prints ADDRESS:PORT of each TCP socket the process PID listens on, one a line, sorted:
listening.py PID. Reads /proc/PID/fd for its socket inodes and /proc/net/tcp{,6} for them."""
import ipaddress
import os
import sys

pid = sys.argv[1]
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:  # closed since the listing
        continue
    if link.startswith("socket:["):
        inodes.add(link[8:-1])

LISTEN = "0A"
found = []
for table, width in (("tcp", 4), ("tcp6", 16)):
    with open(f"/proc/{pid}/net/{table}") as f:
        next(f)
        for line in f:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != LISTEN or inode not in inodes:
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found.append(f"{ipaddress.ip_address(raw)}:{int(hexport, 16)}")
print("\n".join(sorted(found)))
