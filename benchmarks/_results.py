"""Shared by the benchmarks: write a result table as JSON with where and how it was measured."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def write_results(out: str | Path, rows: list[dict]) -> None:
    meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {out}")
