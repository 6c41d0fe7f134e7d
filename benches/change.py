#!/usr/bin/env python3
"""A night's edits: rewrites the first 4 KiB of ~5% of the files under DIR, seeded by NIGHT.

usage: change.py DIR NIGHT
"""
import os
import random
import sys

root, night = sys.argv[1], int(sys.argv[2])
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
rng = random.Random(night)
for p in rng.sample(files, max(1, len(files) * 5 // 100)):
    with open(p, 'r+b') as f:
        f.write(rng.randbytes(4096))
