#!/bin/sh
# Runs make_golden.py --check with Debian's python3, skipping (77) when torch is absent.
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "SKIP: python3-torch not installed"; exit 77; }
exec /usr/bin/python3 "$1" --check
