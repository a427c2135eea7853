"""DeepTest's Table: erroneous behaviours per transformation, from a `sweep` campaign's summary.json.

Run the sweep first (every DeepTest sweep step plus weather and sensor presets over every seed):
    deeptest-iot run --strategy sweep --budget 100000 --out sweep-out
then print the table (Markdown):
    python benchmarks/deeptest_table.py sweep-out
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out_dir: str) -> None:
    s = json.loads((Path(out_dir) / "summary.json").read_text())
    rel = s["campaign"]["relation"]
    rule = (f"lambda = {rel.get('lambda')}, MSE_orig = {rel.get('mse_orig'):.5f}" if rel.get("mse_orig") is not None
            else f"delta = {rel.get('delta')}")
    print(f"{s['model']['name']}, {s['seeds']} seeds, {s['inputs_tried']} inputs, relation: {rule}\n")
    print("| transformation | inputs | erroneous behaviours | error rate | mean violation |")
    print("|---|---:|---:|---:|---:|")
    for name, row in sorted(s["per_transform"].items(), key=lambda kv: -kv[1]["error_rate"]):
        print(f"| {name} | {row['tried']} | {row['findings']} | {100 * row['error_rate']:.1f}% | "
              f"{row['mean_violation']:.4f} |")
    print(f"| **all** | {s['inputs_tried']} | {s['findings']} | {100 * s['error_rate']:.1f}% | |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sweep-out")
