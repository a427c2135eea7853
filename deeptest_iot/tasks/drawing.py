"""Drawing primitives the tasks use to show outputs on frames (OpenCV, BGR, in place)."""

from __future__ import annotations

import math
from typing import Iterable

import cv2
import numpy as np

# Steering sign convention for the arrows: a positive angle steers LEFT (counter-clockwise seen
# from above, ISO 8855 / ROS REP 103), as the sample scenes' labels (deeptest_iot.data.scenes) do.
POSITIVE_STEERS_RIGHT = False

# Colours in BGR (OpenCV) and their CSS twins for the legend.
BEFORE_BGR, AFTER_BGR, LABEL_BGR, EXPECTED_BGR = (60, 200, 60), (40, 40, 235), (235, 160, 40), (0, 215, 255)
BEFORE_CSS, AFTER_CSS, LABEL_CSS, EXPECTED_CSS = "#3cc83c", "#eb2828", "#28a0eb", "#ffd700"


def text(img: np.ndarray, message: str, org: tuple[int, int], color) -> None:
    """Text on a dark backing box, legible on any frame."""
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (w, h), base = cv2.getTextSize(message, font, size, thick)
    x, y = org
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(img, message, (x, y), font, size, color, thick, cv2.LINE_AA)


def angle_radians(angle: float, units: str) -> float:
    return math.radians(angle) if str(units).lower().startswith("deg") else float(angle)


def draw_steering(image: np.ndarray, angle: float, color, units: str = "radians", thickness: int = 3) -> None:
    """Draw a steering angle in place as an arrow from the bottom centre, like a wheel's pointer:
    straight up for 0, tilted by the angle (right for positive, see POSITIVE_STEERS_RIGHT)."""
    h, w = image.shape[:2]
    theta = angle_radians(angle, units) * (1 if POSITIVE_STEERS_RIGHT else -1)
    theta = max(-math.pi / 2, min(math.pi / 2, theta))
    length = 0.42 * h
    x0, y0 = w / 2, h - 0.12 * h
    x1, y1 = x0 + length * math.sin(theta), y0 - length * math.cos(theta)
    cv2.circle(image, (int(x0), int(y0)), int(0.08 * h), color, 1, cv2.LINE_AA)
    cv2.arrowedLine(image, (int(x0), int(y0)), (int(round(x1)), int(round(y1))), color, thickness,
                    cv2.LINE_AA, tipLength=0.18)


def draw_boxes(image: np.ndarray, boxes: Iterable, scale: float, color, labels: Iterable[str] = (),
               thickness: int = 2) -> None:
    """Draw xyxy boxes given in frame pixels onto an image scaled by ``scale``."""
    labels = list(labels)
    for k, box in enumerate(boxes or []):
        x0, y0, x1, y1 = (int(round(float(v) * scale)) for v in box)
        cv2.rectangle(image, (x0, y0), (x1, y1), color, thickness, cv2.LINE_AA)
        if k < len(labels) and labels[k]:
            text(image, labels[k], (x0 + 3, max(y0 - 4, 12)), color)
