#!/usr/bin/env python3
"""Turns a .cu file of kernels/cuda into C++ for the CUDA emulator (tests/cudaemu).

A launch `kernel<<<grid, block, shmem, stream>>>(args)` becomes
`tmix_emu::launch<FIBERS>("kernel", kernel, grid, block, shmem, stream)(args)`, where FIBERS
says whether the kernel waits at barriers, shuffles or shares memory, itself or through the
file's device functions (then each thread needs a stack of its own, and runs slower); a
kernel whose body is not found here is taken to wait. Line numbers are kept, so compiler
messages point into the .cu file.

usage: cu2cc.py INPUT.cu OUTPUT.cc
"""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
WAITS = re.compile(r"__syncthreads|__shfl_\w+|tmix_block_reduce|tmix_warp_reduce|__shared__")


FUNCTION = re.compile(r"__(?:global|device)__[^;{}()]*?\b([A-Za-z_]\w*)\s*\(")


def bodies(text):
    """Each __global__ or __device__ function's name and body (from its first brace)."""
    found = {}
    for m in FUNCTION.finditer(text):
        start = text.find("{", m.end())
        semicolon = text.find(";", m.end())
        if start < 0 or 0 <= semicolon < start:
            continue  # a declaration
        depth, i = 0, start
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        found[m.group(1)] = found.get(m.group(1), "") + text[start : i + 1]
    return found


def waiting(text):
    """The names of the functions that wait, themselves or through others of the file."""
    funcs = bodies(text)
    waits = {name for name, body in funcs.items() if WAITS.search(body)}
    grew = True
    while grew:
        grew = False
        for name, body in funcs.items():
            if name not in waits and any(re.search(r"\b%s\s*[(<]" % w, body) for w in waits):
                waits.add(name)
                grew = True
    return funcs, waits


def main():
    src, dst = sys.argv[1], sys.argv[2]
    text = open(src, encoding="utf-8").read()
    funcs, waits = waiting(text)

    def launch(m):
        kernel, config = m.group(1), m.group(2)
        name = kernel.split("<")[0].split("::")[-1]
        fibers = "false" if name in funcs and name not in waits else "true"
        return 'tmix_emu::launch<%s>("%s", %s, %s)(' % (fibers, kernel, kernel, config)

    out = '#line 1 "%s"\n' % src + LAUNCH.sub(launch, text)
    if "<<<" in out:
        sys.exit("cu2cc.py: %s: a launch this script does not understand" % src)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(out)


if __name__ == "__main__":
    main()
