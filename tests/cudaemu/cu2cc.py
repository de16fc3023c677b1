#!/usr/bin/env python3
"""Turns a .cu file of kernels/cuda into C++ for the CUDA emulator (tests/cudaemu).

A launch `kernel<<<grid, block, shmem, stream>>>(args)` becomes
`tmix_emu::launch<FIBERS>("kernel", kernel, grid, block, shmem, stream)(args)`, where FIBERS
says whether the file's kernels wait at barriers or shuffle (then each thread needs a stack
of its own). Line numbers are kept, so compiler messages point into the .cu file.

usage: cu2cc.py INPUT.cu OUTPUT.cc
"""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
WAITS = re.compile(r"__syncthreads|__shfl_\w+|tmix_block_reduce|tmix_warp_reduce|__shared__")


def main():
    src, dst = sys.argv[1], sys.argv[2]
    text = open(src, encoding="utf-8").read()
    fibers = "true" if WAITS.search(text) else "false"

    def launch(m):
        kernel, config = m.group(1), m.group(2)
        return 'tmix_emu::launch<%s>("%s", %s, %s)(' % (fibers, kernel, kernel, config)

    out = '#line 1 "%s"\n' % src + LAUNCH.sub(launch, text)
    if "<<<" in out:
        sys.exit("cu2cc.py: %s: a launch this script does not understand" % src)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(out)


if __name__ == "__main__":
    main()
