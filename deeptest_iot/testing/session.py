"""What one pytest session's model tests share: the loaded models and seeds, and a report per model.

Each model a test uses gets a ``ModelRun``: a report folder in the campaign format (findings,
``summary.json`` with ``campaign.strategy`` = ``"pytest"``, ``coverage.npz``) and the coverage
tracked over everything the tests ran through it. Imports only the standard library at module level;
TensorFlow and the rest of deeptest-iot load when a test first needs a model.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeptest_iot.testing.settings import SAMPLE_PREFIX, Settings


@dataclass
class ModelRun:
    """What the session's tests did with one model: its report folder, counters and coverage."""

    mut: Any
    folder: Path
    check: Any  # the engine's BatchCheck: model, findings writer, running figures, coverage
    coverage_note: str = ""
    transforms: list = field(default_factory=list)
    relations: list = field(default_factory=list)
    twins: dict = field(default_factory=dict)  # twin fingerprint -> summary.json's twin record
    tests: dict = field(default_factory=dict)
    case: int = 0
    start: float = field(default_factory=time.perf_counter)

    @property
    def stats(self):
        return self.check.stats

    @property
    def tracker(self):
        return self.check.tracker

    @property
    def writer(self):
        return self.check.writer

    @property
    def twin_stats(self):
        """The differential relation's figures, once a test compared the model with a twin."""
        return self.check.twin_stats


class SessionState:
    """Per-session state: settings, the loaded model and seeds, one ModelRun per model used."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.current = None  # the running test item
        self.spent: dict[str, int] = {}  # test node id -> inputs checked
        self.runs: dict[str, ModelRun] = {}  # fingerprint -> run
        self.configured = None  # the model from --dt-model, once loaded
        self.configured_twin_model = None  # the twin from --dt-twin, once loaded
        self.models: dict[Any, Any] = {}  # id(keras model) or resolved path -> ModelUnderTest
        self.twin_checks: dict[tuple, Any] = {}  # (model fingerprint, twin fingerprint) -> TwinCheck
        self._seeds = None
        self.root_prepared = False

    # models and seeds
    def configured_model(self):
        if self.configured is None:
            s = self.settings
            if s.model is None:
                return None
            from deeptest_iot.model.core import load_model

            model = s.model
            if isinstance(model, str):  # sample:NAME
                from deeptest_iot import sample_models

                model = sample_models.path(model[len(SAMPLE_PREFIX):])
            self.configured = load_model(str(model), trust=s.trust)
            self.models[str(Path(model).resolve())] = self.configured
        return self.configured

    def configured_twin(self):
        """The twin from --dt-twin / deeptest_twin (checked against the configured model), or None."""
        if self.configured_twin_model is None:
            s = self.settings
            if s.twin is None:
                return None
            from deeptest_iot.errors import ConfigError
            from deeptest_iot.model.twins import resolve_twin_path

            mut = self.configured_model()
            if mut is None:
                raise ConfigError("--dt-twin / deeptest_twin needs the model it was converted from: set --dt-model "
                                  "/ deeptest_model too")
            path = resolve_twin_path(s.twin, mut.path, flag="--dt-twin")
            self.configured_twin_model = self.resolve_twin(str(path), mut)
        return self.configured_twin_model

    def resolve_twin(self, twin, mut):
        """A ModelUnderTest for the twin a test passed (itself, a path or a Keras model; loaded once, with
        the model's card when it has none of its own), checked once against ``mut`` (ModelError when the
        two cannot be compared: another input size, preprocessing, task or output shape)."""
        from deeptest_iot.model.core import ModelUnderTest, load_model
        from deeptest_iot.model.twins import check_twin, load_twin

        if isinstance(twin, ModelUnderTest):
            twin_mut = twin
        elif isinstance(twin, (str, os.PathLike)):
            key = ("twin", str(Path(twin).resolve()), mut.fingerprint)
            if key not in self.models:
                self.models[key] = load_twin(str(Path(twin).resolve()), mut)
            twin_mut = self.models[key]
        else:
            key = ("twin", id(twin), mut.fingerprint)
            if key not in self.models:
                self.models[key] = (twin, load_model(twin, mut.card))  # keep the object alive: its id stays unique
            twin_mut = self.models[key][1]
        pair = (mut.fingerprint, twin_mut.fingerprint)
        if pair not in self.twin_checks:
            self.twin_checks[pair] = check_twin(mut, twin_mut)
        return twin_mut

    def resolve_model(self, model):
        """A ModelUnderTest for whatever a test passed: itself, a path, or a Keras model (loaded once)."""
        from deeptest_iot.model.core import ModelUnderTest, load_model

        if isinstance(model, ModelUnderTest):
            return model
        if isinstance(model, (str, os.PathLike)):
            key = str(Path(model).resolve())
            if key not in self.models:
                self.models[key] = load_model(key, trust=self.settings.trust)
            return self.models[key]
        key = id(model)
        if key not in self.models:
            self.models[key] = (model, load_model(model))  # keep the object alive so its id stays unique
        return self.models[key][1]

    def seeds(self):
        if self._seeds is None:
            from deeptest_iot.data.seeds import generated_seeds, load_seeds

            s = self.settings
            if s.seeds is None and s.labels is None:
                self._seeds = generated_seeds(s.n_seeds, seed=0)
            else:
                self._seeds = load_seeds(s.seeds, labels=s.labels)
        return self._seeds

    def seeds_description(self) -> str:
        s = self.settings
        if s.seeds is None and s.labels is None:
            return f"generated:{s.n_seeds}"
        return f"{s.seeds or s.labels.parent} ({len(self.seeds())} images)"

    # runs
    def run_for(self, mut) -> ModelRun:
        if mut.fingerprint in self.runs:
            return self.runs[mut.fingerprint]
        from deeptest_iot.engine.check import BatchCheck
        from deeptest_iot.results.writer import CampaignStats, FindingsWriter

        root = self.settings.report
        if not self.root_prepared:
            _prepare_folder(root)
            models_dir = root / "models"
            if models_dir.is_dir():
                for sub in sorted(models_dir.iterdir()):
                    if sub.is_dir():
                        _prepare_folder(sub)
            self.root_prepared = True
        configured = self.configured_model() if self.settings.model is not None else None
        owns_root = (configured.fingerprint == mut.fingerprint if configured is not None
                     else not any(r.folder == root for r in self.runs.values()))
        if owns_root:
            folder = root
        else:
            fp = mut.fingerprint.split(":")[-1][:12]
            folder = root / "models" / f"{_safe(mut.name)}-{fp}"
            _prepare_folder(folder)
        tracker, note = self._tracker(mut)
        check = BatchCheck(mut, FindingsWriter(folder), CampaignStats(), tracker)
        run = ModelRun(mut=mut, folder=folder, check=check, coverage_note=note)
        self.runs[mut.fingerprint] = run
        return run

    def _tracker(self, mut):
        """The session's coverage tracker for ``mut`` and a note on it for the terminal summary."""
        specs = self.settings.coverage
        if not specs:
            return None, "coverage not tracked (deeptest_coverage = none)"
        if not mut.supports_coverage or not mut.layer_sizes:
            return None, f"coverage not tracked: {mut.name!r} is a {mut.kind} model without readable layers"
        from deeptest_iot.engine.tracking import make_tracker

        tracker, source = make_tracker(
            mut, specs, None, lambda: mut.run(self.seeds().images, with_activations=True).activations)
        if source is None:
            return tracker, ""
        return tracker, f"profile: {source}" if source != "seeds" else \
            f"profile: the session's seeds ({self.seeds_description()})"

    def write_summary(self, run: ModelRun, status: str) -> None:
        from deeptest_iot.engine.summary import build_summary, model_info
        from deeptest_iot.results.writer import write_summary

        campaign = {"seed": 0, "strategy": "pytest", "budget": self.settings.budget,
                    "seeds": self.seeds_description(), "transforms": sorted(set(run.transforms)),
                    "coverage": list(self.settings.coverage) if run.tracker is not None else [],
                    "relation": run.relations[0] if run.relations else None,
                    "relations": run.relations, "tests": len(run.tests)}
        twin = None
        if run.twins:  # the first twin a test used; every twin's name in campaign.twins
            twin = next(iter(run.twins.values()))
            campaign["twins"] = [t["name"] for t in run.twins.values()]
        main = (run.relations[0] or {}).get("name") if run.relations else run.mut.task.name
        write_summary(run.folder, build_summary(model=model_info(run.mut), campaign=campaign, status=status,
                                                stats=run.stats, tracker=run.tracker,
                                                duration_s=time.perf_counter() - run.start, tests=run.tests,
                                                twin=twin, twin_stats=run.twin_stats, relation=main))

    def finish(self) -> None:
        """Close every model's report: save its coverage and mark its summary complete."""
        for run in self.runs.values():
            if run.tracker is not None:
                run.tracker.save(run.folder / "coverage.npz")
            self.write_summary(run, "complete")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "model"


def _prepare_folder(folder: Path) -> None:
    """Make ``folder`` ready for this session: remove a previous pytest session's report, refuse others."""
    from deeptest_iot.errors import ConfigError

    summary, findings = folder / "summary.json", folder / "findings.jsonl"
    if summary.is_file():
        try:
            strategy = (json.loads(summary.read_text(encoding="utf-8")).get("campaign") or {}).get("strategy")
        except (ValueError, UnicodeDecodeError, AttributeError):
            strategy = "unreadable"
        if strategy != "pytest":
            raise ConfigError(f"report folder {folder} holds a deeptest-iot campaign (strategy {strategy!r}), "
                              "not a pytest report; choose another --dt-report / deeptest_report "
                              "(deeptest-iot never overwrites campaign results)")
        for name in ("findings.jsonl", "summary.json", "coverage.npz"):
            (folder / name).unlink(missing_ok=True)
        for png in (folder / "images").glob("f*_*.png"):
            if png.stem.endswith(("_orig", "_trans")):
                png.unlink()
    elif findings.is_file() and findings.stat().st_size:
        raise ConfigError(f"report folder {folder} holds findings.jsonl but no summary.json (a killed campaign?); "
                          "choose another --dt-report / deeptest_report")
