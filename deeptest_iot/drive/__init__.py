"""Closed-loop lane keeping: the steering model under test drives a simulated car on procedural roads.

Offline testing judges single frames; here the model's answers move the car, and the next frame
shows where they took it. N cars drive at once (one model call per time step for all of them);
a drive fails when a wheel crosses an edge line of its lane. See docs/closed-loop.md.

    from deeptest_iot.drive import keeps_lane
    report = keeps_lane("model.keras", "fog:0.5", drives=8, seed=0)
    assert report.passed, report.message()

Modules, one job each: ``road`` (centre lines, projection), ``vehicle`` (bicycle model, steering
actuator), ``camera`` (frames from poses), ``condition`` (transform chains over time), ``steer``
(the model as a driver), ``loop`` (the batched closed loop), ``metrics``, ``campaign`` (drives and
their run folder), ``report`` (HTML, animations).
"""

from deeptest_iot.drive.campaign import DriveReport, drive_campaign, keeps_lane, run_drives
from deeptest_iot.drive.condition import Condition, parse_condition
from deeptest_iot.drive.loop import DriveSettings, setup_drive, simulate

__all__ = ["Condition", "DriveReport", "DriveSettings", "drive_campaign", "keeps_lane", "parse_condition",
           "run_drives", "setup_drive", "simulate"]
