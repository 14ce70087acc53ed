"""The plugin's command-line options and ini keys, and the session's :class:`~harness.items.settings.Settings`
made of them: every value checked here, so a bad one is a usage error before anything is built."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .. import runtimes
from ..build.shared_cache import SharedCache, SharedCacheError
from ..build.weights import default_cache_dir
from ..data.case_inputs import INT8_SCHEME_CHOICES
from ..items.settings import Settings
from ..judge.judgement import Bootstrap
from ..judge.perf import LEAST_ROUNDS, ROUND_BUDGET_S
from ..run import bounds
from ..run.isolation import Isolation
from ..run.watchdog import HUNG_EXIT, end_run
from ..runtimes import RuntimeConfig, threads_from_environment
from .journaling import JOURNAL
from ..option_types import LEAST_RESAMPLES, at_least, confidence_level, positive_seconds


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _runtime_name(value: str) -> str:
    """argparse type of ``--runtime``: a known runtime or ``NAME+FAULT``; argparse shows the message of the error."""
    import argparse

    try:
        return runtimes.validated(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("segconform", "segconform conformance harness")
    group.addoption("--cases-dir", type=Path, default=None, help="folder of case files (default: ini segconform_cases)")
    group.addoption("--golden-dir", type=Path, default=None, help="golden masks (default: ini segconform_golden)")
    group.addoption("--report-dir", type=Path, default=None, help="where reports go (default: ini segconform_reports)")
    group.addoption("--data-root", type=Path, default=None,
                    help="folder holding the datasets (ecssd-300/, human-seg-290/, ...); env SEGCONFORM_DATA_ROOT. "
                         "Without it only the synthetic set runs.")
    group.addoption("--weights-dir", type=Path, default=None,
                    help="folder with official checkpoints (u2net.pth, ...); env SEGCONFORM_WEIGHTS_DIR")
    group.addoption("--cache-dir", type=Path, default=None,
                    help="artifact and weight cache; env SEGCONFORM_CACHE_DIR, default the user cache dir")
    group.addoption("--shared-cache", action="append", type=Path, default=None, metavar="PATH",
                    help="a read-only artifact cache shared between shards (another run's <cache-dir>/artifacts "
                         "folder, or a tar archive of it): artifacts found there by content are used, never rebuilt; "
                         "repeat for several")
    group.addoption("--runtime", action="append", default=None, type=_runtime_name,
                    help=f"runtime(s) to test; repeat for several (default: onnxruntime). Known: "
                         f"{', '.join(runtimes.names())}; NAME+FAULT wraps one with an injected fault "
                         f"(e.g. onnxruntime+shift; see harness/runtimes/faults.py)")
    group.addoption("--allow-unavailable-runtime", action="append", default=None, metavar="NAME",
                    help="run even though --runtime NAME cannot be used here (not installed, not configured): its "
                         "items are skipped, each saying why. Without it an unavailable runtime is a usage error, "
                         "since a night that silently skips a runtime has lost its coverage")
    group.addoption("--night", default=os.environ.get("SEGCONFORM_NIGHT") or None, metavar="ID",
                    help="the identity of the night this run belongs to (env SEGCONFORM_NIGHT), the same for every "
                         "shard of it, e.g. the CI pipeline id: `harness merge` refuses a shard of another night. "
                         "Without one a stale shard of the same code and options cannot be told from tonight's")
    group.addoption("--allow-unavailable-weights", action="store_true",
                    help="run even though a model's weights cannot be had (a fetch that failed, a hash that does not "
                         "match, a named checkpoint missing from --weights-dir): its checks are skipped, each saying "
                         "why. Without it they fail, since a night that skips a model has judged nothing of it")
    group.addoption("--update-golden", nargs="?", const="failing", default=None, choices=("failing", "all"),
                    help="rewrite golden sets that fail or are missing (those items still fail); "
                         "=all rewrites every set")
    group.addoption("--strict-data", action="store_true",
                    help="a data problem (unreadable, truncated, unpaired, resized or non-binary mask) fails the check")
    group.addoption("--eval-limit", type=at_least(1, "images per real dataset"), default=None,
                    help="images per real dataset for accuracy, at least 1 (default from ini); --full for all")
    group.addoption("--full", action="store_true", help="evaluate every image of every dataset")
    group.addoption("--calibration-samples", type=at_least(1, "calibration images"), default=None,
                    help="images for static int8 calibration (default 50, like the VACC compiler's sampler)")
    group.addoption("--confidence", type=confidence_level, default=None,
                    help="bootstrap interval level, between 0 and 1 (default from ini: 0.95)")
    group.addoption("--bootstrap-resamples", type=at_least(LEAST_RESAMPLES, "bootstrap draws"), default=None,
                    help=f"bootstrap resamples, at least {LEAST_RESAMPLES} (default from ini: 1000)")
    group.addoption("--localise-builds", type=at_least(0, "builds"), default=8,
                    help="builds fault localisation may spend on a failing fp16/int8 item (0: do not localise)")
    group.addoption("--latency-rounds", type=at_least(1, "rounds"), default=15,
                    help=f"most interleaved rounds per latency ratio gate (fewer, at least {LEAST_ROUNDS}, where "
                         f"they would take over {ROUND_BUDGET_S:g} s)")
    group.addoption("--sustain-seconds", type=positive_seconds, default=None, metavar="SECONDS",
                    help="length of every sustained run (test_sustained: tail, trend, memory growth and drift under "
                         "load), seconds (default: ini segconform_sustain_seconds, else each case's sustained.seconds; "
                         "MLPerf's 600 s is the long form)")
    group.addoption("--ort-providers", default="cpu",
                    help="ONNX Runtime execution providers in order, comma-separated: "
                         "tensorrt, cuda, openvino, dml, cpu")
    group.addoption("--ort-optimization", default="all", choices=("disable", "basic", "extended", "all"),
                    help="ONNX Runtime graph optimisation level of the deployed sessions")
    group.addoption("--vacc-models", type=Path, default=None, help="folder of vamc-compiled models for --runtime vacc")
    group.addoption("--vacc-device", default="0",
                    help="VACC device id, or 'auto': the pytest-xdist worker's index (one card per worker)")
    group.addoption("--vamp-outputs", type=Path, default=None, help="folder of vamp npz outputs for --runtime vamp")
    group.addoption("--int8-scheme", default="case", choices=INT8_SCHEME_CHOICES,
                    help="static int8 builds: each case's scheme (default), or ONNX Runtime's remedy for CPUs whose "
                         "U8S8 kernels saturate: 7-bit weights (reduce_range) or u8 weights (u8u8)")
    group.addoption("--threads", type=at_least(1, "threads"), default=threads_from_environment(),
                    help="intra-op threads for CPU runtimes (default: $OMP_NUM_THREADS, else all cores)")
    group.addoption("--isolation", default="process", choices=("process", "none"),
                    help="process (default): each item's session in a worker process, every call bounded, a crash "
                         "fails the item only; none: in pytest's own process, each call under a watchdog that ends "
                         f"the run (exit status {HUNG_EXIT}) past its bound (see harness/run/watchdog.py)")
    group.addoption("--load-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                    help="bound of loading (compiling) an item's session, seconds (default: the case's "
                         f"load_timeout_s, else {bounds.LOAD_S:g} s); a load that fails is tried once per item")
    group.addoption("--first-call-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                    help="bound of a session's first call (warm-up), seconds (default: the case's "
                         f"first_call_timeout_s, else {bounds.FIRST_CALL_S:g} s)")
    group.addoption("--item-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                    help="bound of every later runtime call, seconds (default: the case's timeout_s, else "
                         f"{bounds.TIMEOUT_FACTOR:g}x the session's fastest call after the first, at least "
                         f"{bounds.TIMEOUT_FLOOR_S:g} s)")
    group.addoption("--retries", type=at_least(0, "retries"), default=0, metavar="N",
                    help="make a runtime call killed by a timeout or a crash again in a new worker process and "
                         "session, up to N times (default 0; --isolation process only); each retried attempt is noted "
                         "on the item's rows")
    group.addoption("--build-timeout", type=positive_seconds, default=bounds.BUILD_S, metavar="SECONDS",
                    help="bound of one artifact build (export, conversion, calibration), seconds; past it the run "
                         f"ends naming the artifact (default {bounds.BUILD_S:g})")
    group.addoption("--resume", action="store_true",
                    help="continue the last incomplete run of the same code (commit and uncommitted changes), case "
                         "files, golden masks, data root, machine and verdict-changing options: skip the checks that "
                         "finished, rerun the rest, complete the same run record; a run that differs is named, with "
                         "what differs, and a new run starts")
    parser.addini("segconform_cases", "folder of case files, relative to the rootdir", default="cases")
    parser.addini("segconform_golden", "folder of golden masks, relative to the rootdir", default="golden")
    parser.addini("segconform_reports", "folder of reports, relative to the rootdir", default="reports")
    parser.addini("segconform_eval_limit", "default --eval-limit", default="100")
    parser.addini("segconform_calibration_samples", "default --calibration-samples", default="50")
    parser.addini("segconform_confidence", "default --confidence", default="0.95")
    parser.addini("segconform_bootstrap_resamples", "default --bootstrap-resamples", default="1000")
    parser.addini("segconform_sustain_seconds", "default --sustain-seconds (empty: each case's sustained.seconds)",
                  default="")


def folder(config: pytest.Config, option: str, ini: str) -> Path:
    """A folder option: as given on the command line (relative to where pytest was started), else the ini value
    relative to the ini file's folder (the rootdir), or to where pytest was started when there is no ini file.

    Not ``config.rootpath`` itself: pytest works the rootdir out before plugins add their options, so the value
    of ``--weights-dir /elsewhere`` (without ``=``) counts as a path there and can move the rootdir above the
    repository.
    """
    given = config.getoption(option)
    if given is not None:
        return given if given.is_absolute() else config.invocation_params.dir / given
    base = config.inipath.parent if config.inipath is not None else config.invocation_params.dir
    path = Path(config.getini(ini))
    return path if path.is_absolute() else base / path


def worker_index() -> int:
    """This pytest-xdist worker's index (``gw3`` -> 3), 0 outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def settings_from(config: pytest.Config, cases_dir: Path) -> Settings:
    option = config.option
    if option.full:
        eval_limit = None
    else:
        eval_limit = option.eval_limit if option.eval_limit is not None else _ini(config, "segconform_eval_limit", 1)
    data_root = option.data_root or _env_path("SEGCONFORM_DATA_ROOT")
    if data_root is not None and not data_root.is_dir():
        raise pytest.UsageError(f"--data-root {data_root}: not a folder")
    device = option.vacc_device
    if device != "auto" and not device.isdigit():
        raise pytest.UsageError(f"--vacc-device {device!r}: a device id or 'auto'")
    confidence = option.confidence
    if confidence is None:
        confidence = _ini(config, "segconform_confidence", 0, confidence_level)
    sustain = option.sustain_seconds
    if sustain is None and str(config.getini("segconform_sustain_seconds")).strip():
        sustain = _ini(config, "segconform_sustain_seconds", 0, positive_seconds)
    return Settings(
        data_root=data_root,
        weights_dir=option.weights_dir or _env_path("SEGCONFORM_WEIGHTS_DIR"),
        cache_dir=option.cache_dir or default_cache_dir(),
        shared_caches=_shared_caches(option.shared_cache or []),
        allow_unavailable_weights=option.allow_unavailable_weights,
        golden_dir=folder(config, "golden_dir", "segconform_golden"),
        report_dir=folder(config, "report_dir", "segconform_reports"),
        eval_limit=eval_limit,
        calibration_samples=(option.calibration_samples if option.calibration_samples is not None
                             else _ini(config, "segconform_calibration_samples", 1)),
        localise_builds=option.localise_builds,
        update_golden=option.update_golden,
        strict_data=option.strict_data,
        bootstrap=Bootstrap(confidence, option.bootstrap_resamples if option.bootstrap_resamples is not None
                            else _ini(config, "segconform_bootstrap_resamples", LEAST_RESAMPLES)),
        latency_rounds=option.latency_rounds,
        sustain_seconds=sustain,
        int8_scheme=option.int8_scheme,
        runtime_config=RuntimeConfig(
            threads=option.threads,
            ort_providers=tuple(p.strip() for p in option.ort_providers.split(",") if p.strip()),
            ort_optimization=option.ort_optimization,
            vacc_device=worker_index() if device == "auto" else int(device),
            vacc_models=option.vacc_models,
            vamp_outputs=option.vamp_outputs,
        ),
        isolation=Isolation(option.isolation == "process", option.item_timeout, option.load_timeout,
                            option.first_call_timeout, option.retries, option.build_timeout,
                            watchdog=option.isolation == "none", on_hang=functools.partial(_end_run, config)),
    )


def _ini(config: pytest.Config, key: str, least: int, parse: Callable[[str], Any] | None = None) -> Any:
    """An ini value checked like its option: a usage error naming the ini file, the key and the problem."""
    import argparse

    text = str(config.getini(key))
    try:
        return (parse or at_least(least, key))(text)
    except argparse.ArgumentTypeError as error:
        raise pytest.UsageError(f"{config.inipath or 'ini'}: {key} = {text}: {error}") from None


def _shared_caches(paths: list[Path]) -> tuple[Path, ...]:
    """``--shared-cache`` values, each checked now: a shared cache that cannot be read is a usage error naming it."""
    for path in paths:
        try:
            SharedCache(path)
        except SharedCacheError as error:
            raise pytest.UsageError(f"--shared-cache: {error}") from None
    return tuple(path.resolve() for path in paths)


def _end_run(config: pytest.Config, message: str) -> None:
    """The watchdog's action past a bound in pytest's own process (``--isolation none``, a build): the terminal shows
    the message (capture suspended), the run journal gets an ``ended`` line saying why and the summary is rewritten
    as an incomplete run's; then the process ends (:func:`harness.run.watchdog.end_run`). Runs in the watchdog's thread
    while the main thread is stuck."""
    try:
        capture = config.pluginmanager.get_plugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)
        journal = config.pluginmanager.get_plugin(JOURNAL)
        if journal is not None and journal.journal is not None:
            journal.journal.append({"kind": "ended", "reason": message,
                                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            journal.write_summary(complete=False)
    finally:
        end_run(message)


def refuse_unavailable(chosen: list[str], allowed: set[str], settings: Settings) -> None:
    """A requested runtime that cannot be used here ends the run before it starts, naming it and why, unless the user
    opted out for it (``--allow-unavailable-runtime NAME``): every item of it skipped is coverage lost."""
    unknown = allowed - set(chosen)
    if unknown:
        raise pytest.UsageError(f"--allow-unavailable-runtime {', '.join(sorted(unknown))}: not a --runtime of this "
                                f"run ({', '.join(chosen)})")
    for name in chosen:
        reason = runtimes.get(name, settings.runtime_config).unavailable
        if reason and name not in allowed:
            raise pytest.UsageError(f"--runtime {name} is unavailable here: {reason}. Its items would all be skipped; "
                                    f"pass --allow-unavailable-runtime {name} to run without it on purpose")
