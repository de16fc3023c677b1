"""Helpers shared by the PyTorch parity scripts of tests/models: the error measures and
running a command.

The scripts run as `/usr/bin/python3 tests/models/X.py`, so this folder is sys.path[0] and
`from common import ...` finds this file (tests/golden/make_transformmix.py puts the folder
on sys.path to use mix_parity.py's helpers).
"""
import subprocess
import sys

import numpy as np


def rel_error(got, ref):
    """kernels/golden.c tmix_rel_error: max_i |got_i - ref_i| / max(|ref_i|, 1e-3 max|ref|),
    in float64; inf when the shapes differ. The floor keeps near-zero elements of a tensor
    from dominating: they are measured against its scale."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    scale = np.abs(ref).max(initial=0.0)
    floor = 1e-3 * scale if scale > 0 else 1e-30
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), floor), initial=0.0))


def norm_error(got, ref):
    """||got - ref|| / ||ref||, in float64."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def run(cmd, check=True, merge=True):
    """Runs cmd (a list of str) and returns its CompletedProcess, output captured as text.

    merge: stderr goes into stdout, in the order written; else it is kept apart in .stderr
    (for a test of what a command writes to which stream). check: a non-zero exit ends this
    script with status 1 and a message naming the command, its status and its output;
    without it the caller judges the status (tests of refused inputs).
    """
    p = subprocess.run(cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT if merge else subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stdout}{p.stderr or ''}")
    return p
