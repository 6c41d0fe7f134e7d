#!/usr/bin/env python3
"""Deterministic mixed benchmark corpus: thousands of small text-like files (compressible),
some large random files, and duplicates. Same seed and size -> same bytes.

usage: corpus.py DIR [SIZE_MIB]   (default 1024)
"""
import os
import random
import sys

def main():
    root, size_mib = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    total = size_mib << 20
    rng = random.Random(20261122)
    words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 9))) for _ in range(4000)]
    written = 0
    budget_small = total * 30 // 100     # 30%: small files, text-like
    budget_large = total * 55 // 100     # 55%: large random (incompressible) files
    # the rest: duplicates of files written before
    made = []
    i = 0
    while written < budget_small:
        d = os.path.join(root, 'docs', f'd{i % 37:02d}', f'e{i % 11:02d}')
        os.makedirs(d, exist_ok=True)
        n = rng.randint(200, 120_000)
        text = ' '.join(rng.choice(words) for _ in range(n // 6)).encode()[:n]
        p = os.path.join(d, f'file-{i:05d}.txt')
        with open(p, 'wb') as f:
            f.write(text)
        made.append(p)
        written += len(text)
        i += 1
    j = 0
    while written < budget_small + budget_large:
        d = os.path.join(root, 'media')
        os.makedirs(d, exist_ok=True)
        n = min(rng.randint(8 << 20, 96 << 20), budget_small + budget_large - written)
        p = os.path.join(d, f'blob-{j:03d}.bin')
        with open(p, 'wb') as f:
            left = n
            while left:
                k = min(left, 4 << 20)
                f.write(rng.randbytes(k))
                left -= k
        made.append(p)
        written += n
        j += 1
    k = 0
    d = os.path.join(root, 'copies')
    os.makedirs(d, exist_ok=True)
    while written < total:
        src = made[rng.randrange(len(made))]
        with open(src, 'rb') as f:
            data = f.read()
        with open(os.path.join(d, f'copy-{k:05d}-{os.path.basename(src)}'), 'wb') as f:
            f.write(data)
        written += len(data)
        k += 1
    print(f'corpus: {written / 2**20:.0f} MiB in {i + j + k} files ({i} small, {j} large, {k} duplicates)')

main()
