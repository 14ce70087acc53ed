"""vamp offline path: npz inputs for the device's batch runner, and its npz outputs evaluated as a runtime.

Hosts without ``vaststreamx`` can still judge a device (vacc-interfaces.md §4): the harness writes the
inputs, the hardware box runs ``vamp --datalist ... --path_output ...``, and this runtime reads the
outputs back exactly as if the device had been called in-process.

Inputs, written by ``python -m harness vamp-inputs MODEL DATA --out IN [--outputs OUT]``::

    IN/<stem>.npz             key ``input_0``: the image as RGB, CHW, uint8, original size
    IN/npz_datalist.txt       absolute paths of those files, one per line, sorted

Outputs, read with ``--runtime vamp --vamp-outputs OUT``::

    OUT/npz_datalist.txt         the datalist the outputs were made from (``--outputs OUT`` puts a copy here)
    OUT/<name>/*.npz             one item's outputs: ``vamp ... --path_output OUT/<name>``;
                                 key ``output_0`` (then ``output_1``, ...), shape (1, C, h, w)
    OUT/<name>/npz_datalist.txt  optional: this item's own datalist, used instead of the shared one

``<name>`` is :func:`harness.build.vamc.artifact_name` of the item (``isnet_int8_kl_divergence``), the same
name as the compiled model's folder, so one ``OUT`` holds the outputs of every selected item. An item
whose folder is absent or holds no ``.npz`` yet is unavailable (skipped with the path it looked in), not failed.

vamp's output files, sorted by name, follow the datalist's lines. When they are named after the inputs
(``<stem>.npz``) they are matched by name and must be exactly the datalist's stems in its order;
otherwise they are matched by position and their count must equal the datalist's. Anything else is a
:class:`VampError` naming the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..build.vamc import artifact_name, unbuildable
from ..build.vdsp import rgb_planar
from .base import Artifact, RunInput, Runtime, RuntimeUnavailable, Session

if TYPE_CHECKING:
    from ..data.cases import Item, Variant

DATALIST = "npz_datalist.txt"
INPUT_KEY = "input_0"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: How many names an error lists before it says "and N more".
_SHOWN = 10


class VampError(ValueError):
    """A vamp inputs or outputs folder that does not fit the layout above; the message names the files."""


# --------------------------------------------------------------------------- inputs


def image_files(folder: Path) -> list[Path]:
    """The images of a dataset folder (``folder/images`` when it exists, else ``folder``), sorted by name."""
    source = folder / "images" if (folder / "images").is_dir() else folder
    if not source.is_dir():
        raise VampError(f"{folder}: not a folder")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VampError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)})")
    stems = [p.stem for p in files]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise VampError(f"{source}: several images share a stem, their npz files would collide: {_names(repeated)}")
    return files


def write_inputs(images: Sequence[Path], out: Path) -> Path:
    """One ``<stem>.npz`` per image (key ``input_0``, RGB CHW uint8, original size) and the datalist; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if decoded is None:
            raise VampError(f"{path}: cannot decode image")
        target = (out / f"{path.stem}.npz").resolve()
        np.savez(target, **{INPUT_KEY: rgb_planar(decoded)})
        written.append(str(target))
    datalist = out / DATALIST
    datalist.write_text("".join(f"{line}\n" for line in sorted(written)), encoding="utf-8")
    return datalist


# --------------------------------------------------------------------------- outputs


def read_datalist(path: Path) -> list[str]:
    """The input stems a datalist names, in its order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise VampError(f"{path}: cannot read datalist: {error.strerror}") from error
    stems = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        if not line.endswith(".npz"):
            raise VampError(f"{path}:{number}: expected the path of an .npz file, got {line!r}")
        stems.append(Path(line).stem)
    if not stems:
        raise VampError(f"{path}: empty datalist")
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise VampError(f"{path}: inputs listed more than once: {_names(repeated)}")
    return stems


def match_outputs(stems: list[str], outputs: list[Path], folder: Path, datalist: Path) -> dict[str, Path]:
    """Map each datalist stem to its output file (see the module docstring for the two ways)."""
    names = [p.stem for p in outputs]
    known, produced = set(stems), set(names)
    if known & produced:
        missing = [s for s in stems if s not in produced]
        extra = [n for n in names if n not in known]
        if missing or extra:
            problems = ([f"no output for {_names(missing)}"] if missing else []) + (
                [f"not in the datalist: {_names(extra)}"] if extra else []
            )
            raise VampError(f"{folder}: outputs do not match {datalist}: {'; '.join(problems)}")
        wrong = [(i, s, n) for i, (s, n) in enumerate(zip(stems, names), start=1) if s != n]
        if wrong:
            shown = ", ".join(f"line {i}: datalist {s!r}, output {n!r}" for i, s, n in wrong[:_SHOWN])
            raise VampError(
                f"{folder}: outputs are not in the order of {datalist} (vamp's outputs sort by name, "
                f"the datalist must be sorted too): {shown}"
            )
        return {p.stem: p for p in outputs}
    if len(outputs) != len(stems):
        if len(outputs) > len(stems):
            detail = f"extra outputs {_names([p.name for p in outputs[len(stems):]])}"
        else:
            detail = f"no outputs for the last inputs {_names(stems[len(outputs):])}"
        raise VampError(
            f"{folder}: {len(outputs)} output files for {len(stems)} lines of {datalist} "
            f"(matched by position): {detail}"
        )
    return dict(zip(stems, outputs))


class VampSession(Session):
    """A folder of one item's vamp outputs, served per requested stem as if the device had just run."""

    live = False

    def __init__(self, files: dict[str, Path], folder: Path, datalist: Path) -> None:
        self.provider = f"vamp outputs {folder}"
        self.files = files
        self.folder = folder
        self.datalist = datalist

    def covers(self, stem: str) -> bool:
        """Whether the device produced an output for this image: vamp only ran what ``vamp-inputs`` wrote."""
        return stem in self.files

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        """The outputs of ``batch.stems``, concatenated along the batch dimension, ``output_0`` first."""
        if not batch.stems:
            raise ValueError("the vamp runtime finds outputs by image stem: RunInput.stems is empty")
        per_image = [self._outputs(stem) for stem in batch.stems]
        counts = {len(outputs) for outputs in per_image}
        if len(counts) != 1:
            raise VampError(f"{self.folder}: output files hold different numbers of outputs in one batch")
        return [np.concatenate([outputs[k] for outputs in per_image]) for k in range(counts.pop())]

    def _outputs(self, stem: str) -> list[np.ndarray]:
        if stem not in self.files:
            raise VampError(f"{self.folder}: no output for input {stem!r}: it is not in {self.datalist}")
        path = self.files[stem]
        with np.load(path) as npz:
            keys = set(npz.files)
            if "output_0" not in keys:
                raise VampError(f"{path}: no key 'output_0' (keys: {sorted(keys)})")
            arrays = []
            while f"output_{len(arrays)}" in keys:
                arrays.append(npz[f"output_{len(arrays)}"])
        for k, array in enumerate(arrays):
            if array.ndim != 4 or array.shape[0] != 1:
                raise VampError(f"{path}: output_{k} has shape {array.shape}, expected (1, C, h, w)")
        return [array.astype(np.float32) for array in arrays]


class VampRuntime(Runtime):
    name = "vamp"
    takes_images = True
    artifact = None

    def _unavailable(self) -> str | None:
        outputs = self.config.vamp_outputs
        if outputs is None:
            return "--vamp-outputs is not given: point it at the folder holding <name>/ per item"
        if not outputs.is_dir():
            return f"--vamp-outputs {outputs} is not a folder"
        return None

    def _unsupported(self, variant: "Variant") -> str | None:
        return unbuildable(variant, "vamp")

    def _load(self, item: "Item", artifact: Artifact | None) -> VampSession:
        root = self.config.vamp_outputs
        assert root is not None
        folder = root / artifact_name(item.model.name, item.variant)
        outputs = sorted(folder.glob("*.npz"))
        if not outputs:
            raise RuntimeUnavailable(f"{item.id}: no vamp outputs in {folder}")
        datalist = next((p for p in (folder / DATALIST, root / DATALIST) if p.is_file()), None)
        if datalist is None:
            raise VampError(f"{folder}: no {DATALIST} here or in {root}: outputs cannot be matched to inputs")
        files = match_outputs(read_datalist(datalist), outputs, folder, datalist)
        return VampSession(files, folder, datalist)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
