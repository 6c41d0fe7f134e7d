#!/usr/bin/env python3
"""Deterministic small-files corpus: N files of 0-8 KiB in N/100 folders (100 per folder, two
levels deep), half text-like (compressible), half random. What a client's file share mostly is:
office documents, mail items, scans. Same N -> same bytes.

usage: smallfiles.py DIR [N]   (default 250000)
"""
import os
import random
import sys

def main():
    root, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 250_000
    rng = random.Random(20261207)
    words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 9))).encode()
             for _ in range(2000)]
    total = 0
    for i in range(n):
        d = os.path.join(root, f'dept{i // 10_000:03d}', f'folder{(i // 100) % 100:02d}')
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        size = rng.randint(0, 8192)
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = b' '.join(rng.choice(words) for _ in range(size // 5 + 1))[:size]
        with open(os.path.join(d, f'doc-{i:07d}.{"bin" if i % 2 else "txt"}'), 'wb') as f:
            f.write(data)
        total += len(data)
    print(f'small files: {n} files, {total / 2**20:.0f} MiB, {(n + 99) // 100} folders')

main()
