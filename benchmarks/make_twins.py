"""Make the LiteRT twins of the sample models (int8 and float16; ONNX with --onnx) and their manifest.

    python benchmarks/make_twins.py                 # into the shipped sample_models/ folder
    python benchmarks/make_twins.py --out DIR --onnx

Each twin NAME.TO.tflite is ``deeptest-iot convert sample_models/NAME.keras --to TO`` with the
defaults (int8: 200 generated calibration frames of seed 0, float32 input and output), with its
model card NAME.TO.toml beside it. ``twins.json`` records, per twin, the fingerprint of the Keras
model it was converted from, so a test notices a retrained sample model whose twins were not
remade (rerun this script then).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from deeptest_iot import sample_models  # noqa: E402
from deeptest_iot.fileio import atomic_write_json  # noqa: E402
from deeptest_iot.model.convert import convert  # noqa: E402
from deeptest_iot.model.core import load_model  # noqa: E402
from deeptest_iot.model.twins import check_twin, load_twin, twin_path_for  # noqa: E402

MANIFEST = "twins.json"
SHIPPED = ("int8", "float16")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=sample_models.HERE, help="folder [the shipped sample_models/]")
    ap.add_argument("--models", nargs="*", default=list(sample_models.NAMES))
    ap.add_argument("--onnx", action="store_true", help="also the ONNX twins (about the float model's size)")
    args = ap.parse_args()
    targets = SHIPPED + (("onnx",) if args.onnx else ())
    manifest_path = args.out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for name in args.models:
        mut = load_model(sample_models.path(name))
        for to in targets:
            out = twin_path_for(args.out / f"{name}.keras", to)
            start = time.perf_counter()
            result = convert(mut, to, out, isolate=(to == "int8"))
            check = check_twin(mut, load_twin(out, mut))
            manifest[out.name] = {
                "from": f"{name}.keras", "from_fingerprint": mut.fingerprint, "to": to,
                "calibration": result.calibration, "calibration_frames": result.calibration_frames,
                "bytes": result.bytes, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
                "layers_mapped": check.shared_layers, "layers_not_mapped": check.float_only_layers}
            print(f"{out.name}: {result.bytes / 1024:.0f} KiB, {len(check.shared_layers)}/{len(mut.layer_sizes)} "
                  f"layers mapped, {time.perf_counter() - start:.1f} s", flush=True)
    atomic_write_json(manifest_path, dict(sorted(manifest.items())))
    print(f"manifest: {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
