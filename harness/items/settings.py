"""The settings of one run: every option the plugin parses, in one frozen object the rest of the harness reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..judge.judgement import Bootstrap
from ..run.isolation import Isolation
from ..runtimes.base import RuntimeConfig

#: ``--update-golden`` modes: rewrite the sets that fail or are missing, or every set.
GoldenUpdate = Literal["failing", "all"]


@dataclass(frozen=True)
class Settings:
    data_root: Path | None
    weights_dir: Path | None
    cache_dir: Path
    golden_dir: Path
    report_dir: Path
    eval_limit: int | None
    golden_limit: int = 4
    conformance_limit: int = 4
    synthetic_count: int = 4
    calibration_samples: int = 50
    localise_builds: int = 8
    update_golden: GoldenUpdate | None = None
    strict_data: bool = False
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    latency_rounds: int = 15
    #: ``--sustain-seconds`` (or the ini's ``segconform_sustain_seconds``): every sustained run's length; None: each
    #: case's ``sustained.seconds``.
    sustain_seconds: float | None = None
    runtime_config: RuntimeConfig = field(default_factory=RuntimeConfig)
    #: ``--int8-scheme``: "case" (each case file's scheme) or a remedy applied to every static int8 build.
    int8_scheme: str = "case"
    isolation: Isolation = field(default_factory=Isolation)
    #: ``--shared-cache``: read-only artifact caches (folders or archives) looked up before building anything.
    shared_caches: tuple[Path, ...] = ()
    #: ``--allow-unavailable-weights``: a model whose weights cannot be had has its checks skipped instead of failed.
    allow_unavailable_weights: bool = False
