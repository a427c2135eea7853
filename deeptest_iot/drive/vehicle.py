"""The car: a kinematic bicycle at constant speed, and a steering actuator with a rate and an angle limit.

State (per car, arrays (N,)): the rear-axle centre (x, y) in the world frame, the yaw ``psi``
(rad, counter-clockwise from the world x axis) and the front-wheel angle ``delta`` actually applied
(rad, positive = steer LEFT, the scenes' convention). With wheelbase L and speed v:

    x' = v cos(psi),   y' = v sin(psi),   psi' = v tan(delta) / L

With ``delta`` held constant over a step the motion is an exact circular arc of radius
L / tan(delta) (a straight line for delta = 0), so ``step`` integrates it exactly: no integration
error, whatever dt.

The camera sits above the rear axle. That is where pure pursuit, the controller behind the
scenes' steering labels (``deeptest_iot.data.scenes``), measures its look-ahead from: a model that
predicts its labels perfectly drives exactly as pure pursuit does.

Steering actuator. A real car cannot turn its wheels arbitrarily far or fast: the command is
clipped to +-``MAX_ANGLE`` and the applied angle moves towards it by at most ``MAX_RATE * dt`` per
step. MAX_ANGLE = 0.6 rad (34 deg) is a typical road-wheel lock of a passenger car; MAX_RATE =
0.4 rad/s at the road wheels is a hand-wheel rate of about 370 deg/s at a steering ratio of 16,
the upper end of what drivers and lane-keeping systems use. Pure pursuit on the roads of
``deeptest_iot.drive.road`` (curvature at most 1/60 m^-1, clothoids of 15 m or more) needs at
most 0.05 rad/s at 12 m/s once under way (measured on 100 roads of 1 km; it meets the limit only
in its first steps, correcting the starting offset), so the limits bite when a model's output
jumps about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeptest_iot.data.scenes import WHEELBASE

MAX_ANGLE = 0.6  # rad, road-wheel lock
MAX_RATE = 0.4  # rad/s, road-wheel angle rate
TRACK = 1.6  # m, distance between the left and right wheels (a wheel is TRACK/2 from the car's centre line)
DT = 1 / 20  # s: a 20 frames/s camera, and one model call per frame


@dataclass
class CarState:
    """N cars: rear-axle position, yaw and applied steering angle, each (N,)."""

    x: np.ndarray
    y: np.ndarray
    psi: np.ndarray
    delta: np.ndarray

    def copy(self) -> "CarState":
        return CarState(self.x.copy(), self.y.copy(), self.psi.copy(), self.delta.copy())

    def front(self, wheelbase: float = WHEELBASE) -> tuple[np.ndarray, np.ndarray]:
        """Front-axle centre (x, y)."""
        return self.x + wheelbase * np.cos(self.psi), self.y + wheelbase * np.sin(self.psi)


def actuate(delta: np.ndarray, command: np.ndarray, dt: float = DT, max_rate: float = MAX_RATE,
            max_angle: float = MAX_ANGLE) -> np.ndarray:
    """The angle applied after one step: ``command`` clipped to the lock, reached at most at ``max_rate``."""
    target = np.clip(command, -max_angle, max_angle)
    move = np.clip(target - delta, -max_rate * dt, max_rate * dt)
    return delta + move


def step(state: CarState, speed: float, dt: float = DT, wheelbase: float = WHEELBASE) -> CarState:
    """Advance every car by ``dt`` seconds at ``speed`` m/s with its steering angle held (an exact arc)."""
    omega = speed * np.tan(state.delta) / wheelbase  # yaw rate
    psi1 = state.psi + omega * dt
    straight = np.abs(omega) < 1e-9
    safe = np.where(straight, 1.0, omega)
    x_arc = state.x + speed / safe * (np.sin(psi1) - np.sin(state.psi))
    y_arc = state.y - speed / safe * (np.cos(psi1) - np.cos(state.psi))
    x_line = state.x + speed * dt * np.cos(state.psi)
    y_line = state.y + speed * dt * np.sin(state.psi)
    return CarState(np.where(straight, x_line, x_arc), np.where(straight, y_line, y_arc), psi1, state.delta.copy())
