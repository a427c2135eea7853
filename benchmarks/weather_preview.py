"""Pictures of the weather on real dashcam frames: before (the weather of commit 571611e) and now.

Run: ``python benchmarks/weather_preview.py [--frames DIR] [--out docs/images]`` (a few seconds).

For each of fog, rain and snow it writes ``weather-<name>.jpg``: the real frame, then the transform
at severities 1/3, 2/3 and 1 drawn at 640x480, in three rows: today's version, the version before,
and today's version drawn at 66x200 (the Dave-2 input, enlarged to compare). It also writes
``weather-extras.jpg`` (rain with lens drops, snow at 80 km/h, fog on a dark frame) and
``weather-sequence.jpg`` (four consecutive frames of the drive with ``t`` advancing 1/20 s per frame:
one storm, not four).

Frames come from the udacity-dev set (1,500 consecutive 640x480 frames of the Udacity self-driving
challenge, MIT licence, as redistributed in the DeepXplore repository): ``--frames`` or the
environment variable UDACITY_DEV_FRAMES, else ``../shared/data/udacity-dev/frames`` beside the
repository. Without them the script says so and uses generated road scenes instead (the pictures
in docs/ were made from the real frames).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from deeptest_iot.transforms import get  # noqa: E402

import legacy_weather  # noqa: E402

#: Frames shown (index in the sorted folder): a sunny open road, a dark wooded one, a road with lanes.
FRAMES = {"fog": 1499, "rain": 0, "snow": 1499}
EXTRA_FRAMES = (0, 1499, 600)
SEQUENCE_START = 1460
SEVERITIES = (1 / 3, 2 / 3, 1.0)
TILE = (320, 240)  # width, height of a tile in the pictures
FONT = cv2.FONT_HERSHEY_SIMPLEX


def find_frames(arg: str | None) -> list[Path] | None:
    candidates = [arg, os.environ.get("UDACITY_DEV_FRAMES"),
                  str(HERE.parent.parent / "shared" / "data" / "udacity-dev" / "frames")]
    for c in candidates:
        if c and Path(c).is_dir():
            files = sorted(Path(c).glob("*.jpg"))
            if files:
                return files
    return None


def load(files: list[Path] | None, index: int) -> np.ndarray:
    """One RGB frame at 640x480: the real one, or a generated road scene when there are none."""
    if files is None:
        from deeptest_iot.data.scenes import generate

        return generate(1, seed=index, height=480, width=640).images[0]
    img = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA)[:, :, ::-1])


def tile(img: np.ndarray, label: str) -> np.ndarray:
    """``img`` resized to a tile with ``label`` on a strip above it (BGR, for cv2.imwrite)."""
    interp = cv2.INTER_AREA if img.shape[1] > TILE[0] else cv2.INTER_NEAREST
    t = cv2.resize(img, TILE, interpolation=interp)[:, :, ::-1]
    strip = np.full((20, TILE[0], 3), 255, np.uint8)
    cv2.putText(strip, label, (5, 14), FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, t], axis=0)


def grid(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            out[gap + i * (h + gap):gap + i * (h + gap) + h, gap + j * (w + gap):gap + j * (w + gap) + w] = t
    return out


def small(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(img, (200, 66), interpolation=cv2.INTER_AREA))


def comparison(name: str, frame: np.ndarray, seed: int) -> np.ndarray:
    now = [tile(frame, "real frame (udacity-dev)")]
    old = [tile(frame, "real frame")]
    low = [tile(small(frame), "at 66x200")]
    for s in SEVERITIES:
        t = get(name, severity=s)
        now.append(tile(t(frame, seed=seed), f"{name} {s:.2f} now"))
        old.append(tile(legacy_weather.before(name, s)(frame[None], seed)[0], f"{name} {s:.2f} before"))
        low.append(tile(t(small(frame), seed=seed), f"{name} {s:.2f} now, 66x200"))
    return grid([now, old, low])


def extras(files) -> np.ndarray:
    a, b, c = (load(files, i) for i in EXTRA_FRAMES)
    rain = get("rain", severity=0.8, lens_drops=0.15)
    snow = get("snow", severity=0.7, speed_kmh=80.0)
    fog = get("fog", severity=0.6)
    return grid([[tile(a, "real frame"), tile(rain(a, seed=2), "rain 0.8 + lens drops 0.15")],
                 [tile(b, "real frame"), tile(snow(b, seed=2), "snow 0.7 at 80 km/h")],
                 [tile(c, "real frame"), tile(fog(c, seed=0), "fog 0.6 on a dark frame")]])


def sequence(files) -> np.ndarray:
    rows = []
    for name, s in (("rain", 0.8), ("snow", 0.8)):
        t = get(name, severity=s, speed_kmh=40.0)
        row = []
        for k in range(4):
            f = load(files, SEQUENCE_START + k)
            row.append(tile(t.replace(t=k / 20)(f, seed=7), f"{name} {s}, t = {k / 20:.2f} s"))
        rows.append(row)
    return grid(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default=None, help="folder of udacity-dev frames (*.jpg)")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "images"))
    ap.add_argument("--quality", type=int, default=82, help="JPEG quality")
    args = ap.parse_args()
    files = find_frames(args.frames)
    if files is None:
        print("udacity-dev frames not found (pass --frames DIR or set UDACITY_DEV_FRAMES; the set is 1,500 "
              "frames of the Udacity self-driving challenge as redistributed by the DeepXplore repository); "
              "using generated road scenes instead", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    q = [cv2.IMWRITE_JPEG_QUALITY, args.quality]
    pictures = {f"weather-{n}.jpg": comparison(n, load(files, i), seed=1) for n, i in FRAMES.items()}
    pictures["weather-extras.jpg"] = extras(files)
    pictures["weather-sequence.jpg"] = sequence(files)
    for fname, img in pictures.items():
        cv2.imwrite(str(out / fname), img, q)
        print(f"wrote {out / fname} ({img.shape[1]}x{img.shape[0]}, {(out / fname).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
