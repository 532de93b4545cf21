"""The peer comparison, as ``python benchmarks/compare.py [args]``: the same as ``fastmix bench``.

The engine lives in the package (:mod:`fastmix.apps.bench`) so that an installed fastmix, which has no
benchmarks/ folder, can run it; this file keeps the old command line working.
"""
import sys

from fastmix.apps.bench.compare import main

if __name__ == "__main__":
    sys.exit(main())
