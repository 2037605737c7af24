"""Byte ranges that tile a file yield every line once, and resume after any cursor."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from qmigrate.line_ranges import lines_in_range


@pytest.mark.parametrize("seed", range(20))
def test_ranges_tile_the_file_and_resume_exactly(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = [b"x" * rng.randint(0, 30) + b"\n" for _ in range(rng.randint(0, 40))]
    if lines and len(lines[-1]) > 1 and rng.random() < 0.5:
        lines[-1] = lines[-1].rstrip(b"\n")  # no final newline
    path = tmp_path / "f.txt"
    path.write_bytes(b"".join(lines))
    size = path.stat().st_size
    cuts = sorted({0, size, *(rng.randint(0, size) for _ in range(rng.randint(0, 6)))})
    seen = []
    for start, end in itertools.pairwise(cuts):
        part = list(lines_in_range(path, start, end, None))
        seen += [line for line, _ in part]
        for index, (_, cursor) in enumerate(part):
            rest = [line for line, _ in lines_in_range(path, start, end, cursor)]
            assert rest == [line for line, _ in part[index + 1 :]]
    assert seen == lines
