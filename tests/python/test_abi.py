"""The ctypes structs of tmix/_libtmix.py against tmix.h: every size and field offset that
abi_layout (compiled from tmix.h) prints, and no field that the C struct lacks.

    test_abi.py ABI_LAYOUT
"""
import ctypes
import subprocess
import sys

from tmix import _libtmix as C

MIRRORS = {"tmix_options": C.Options, "tmix_info": C.Info, "tmix_batch": C.Batch,
           "tmix_group_status": C.GroupStatus, "tmix_server_status": C.ServerStatus}


def main():
    lines = subprocess.run([sys.argv[1]], check=True, capture_output=True,
                           text=True).stdout.split("\n")
    c_fields = {name: set() for name in MIRRORS}
    bad = []
    for line in filter(None, lines):
        what, number = line.split()
        struct, _, field = what.partition(".")
        mirror = MIRRORS[struct]
        got = getattr(mirror, field).offset if field else ctypes.sizeof(mirror)
        if field:
            c_fields[struct].add(field)
        if got != int(number):
            bad.append(f"{what}: C {number}, ctypes {got}")
    for struct, mirror in MIRRORS.items():
        extra = {f for f, _ in mirror._fields_} - c_fields[struct]
        if extra:
            bad.append(f"{struct}: ctypes fields {sorted(extra)} are not in abi_layout.c")
    if bad:
        sys.exit("FAIL: tmix/_libtmix.py differs from tmix.h:\n  " + "\n  ".join(bad))
    print(f"PASS {sum(len(f) for f in c_fields.values())} fields of {len(MIRRORS)} structs")


if __name__ == "__main__":
    main()
