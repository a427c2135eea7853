"""Findings as recipes: a finding's seed and transformed frames, rendered again on demand.

A finding records its seed (``seed_id``, and ``seed_index`` in the campaign's seed list) and its
chain with per-link seeds; the campaign's summary records where the seeds came from (a folder, or
generated scenes with their seed and count) and the working frame size. Decoding a seed file at
that size (``deeptest_iot.data.seeds.read_frame``) and generating a scene are pure functions, and
so is applying a seeded chain: the frames rendered here are byte-identical to what the model saw.
A run written with ``--save-images`` (and every pytest report, whose seeds are a test's own arrays)
keeps PNGs instead, which are read as they are.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deeptest_iot.errors import ConfigError, InputError
from deeptest_iot.results.reader import RunFolder


class Renderer:
    """Renders the frames of a run folder's findings (seeds loaded once, kept for the next finding)."""

    def __init__(self, run: RunFolder):
        self.run = run
        self.campaign = run.summary.get("campaign") or {}
        self._generated = None

    def images(self, finding: dict) -> tuple[np.ndarray, np.ndarray]:
        """(seed, transformed) RGB frames of ``finding``: its saved PNGs, else rendered from its recipe."""
        saved = finding.get("images") or {}
        if saved.get("original") and saved.get("transformed"):
            return self._png(finding, saved["original"]), self._png(finding, saved["transformed"])
        seed = self.seed_frame(finding)
        return seed, self.transformed(finding, seed)

    def transformed(self, finding: dict, seed: np.ndarray | None = None) -> np.ndarray:
        """The frame the model saw: the finding's seeded chain applied to its seed frame."""
        from deeptest_iot.transforms import Chain

        seed = self.seed_frame(finding) if seed is None else seed
        try:
            chain = Chain.from_json(finding.get("chain") or [])
        except ConfigError as exc:
            raise InputError(f"finding {finding.get('id')}: its chain cannot be read ({exc})") from None
        if chain.seeds is None and len(chain):
            raise InputError(f"finding {finding.get('id')}: its chain records no per-link seeds, so its image "
                             "cannot be rendered again (the run was written by an older version)")
        return chain(seed[None])[0]

    def seed_frame(self, finding: dict) -> np.ndarray:
        """The finding's seed frame at the campaign's working size."""
        size = self.campaign.get("frame_size")
        if not size:
            raise InputError(f"{self.run.path}: summary.json records no frame size, so findings cannot be rendered "
                             "again; rerun the campaign with this version, or with --save-images")
        folder = self.campaign.get("seeds_folder")
        if folder:
            from deeptest_iot.data.seeds import read_frame

            path = Path(folder) / str(finding.get("seed_id"))
            if not path.is_file():
                raise InputError(f"finding {finding.get('id')}: its seed frame {path} is not there (the seeds folder "
                                 "moved or changed?); render needs the seeds, or a run made with --save-images")
            return read_frame(path, tuple(size))
        return self._generated_seed(finding, tuple(size))

    def _generated_seed(self, finding: dict, size: tuple[int, int]) -> np.ndarray:
        if self._generated is None:
            from deeptest_iot.tasks import TASKS

            task = TASKS[self.run.task]
            n = int(self.campaign.get("n_seeds") or 0)
            if not n:
                raise InputError(f"{self.run.path}: summary.json says neither a seeds folder nor how many scenes "
                                 "were generated; findings cannot be rendered again")
            self._generated = task.generated_seeds(n, int(self.campaign.get("seed", 0)), *size)
        index = int(finding.get("seed_index", -1))
        if not 0 <= index < len(self._generated.images):
            raise InputError(f"finding {finding.get('id')}: seed index {index} is not one of the "
                             f"{len(self._generated.images)} generated scenes")
        return self._generated.images[index]

    def _png(self, finding: dict, relative: str) -> np.ndarray:
        path = self.run.resolve(str(relative))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if bgr is None:
            raise InputError(f"finding {finding.get('id')}: image {path} is missing or unreadable")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
