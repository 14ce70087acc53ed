"""Reading a PyTorch checkpoint without running anything it says: ``torch.load(weights_only=True)`` and nothing else.

A checkpoint is a pickle, and a pickle can name any Python callable to run as it loads (``os.system`` included).
A checkpoint comes from someone else (a training team, a download), so only PyTorch's restricted unpickler reads
it: tensors, containers and plain values, plus the few globals named in :data:`TRAINER_GLOBALS`, which the
human_seg trainer (``thuyngch/Human-Segmentation-PyTorch``, ``base/base_trainer.py``) pickles beside the weights:
its ``utils.logger.Logger`` (a dict of per-epoch entries) and the NumPy scalars its logged metrics are. The logger
is read into :class:`TrainerLog`, a class of ours that only keeps the state it is given. A checkpoint that needs
any other global is refused, naming the file and the global; there is no fallback to a full unpickle.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any


class CheckpointRefused(ValueError):
    """A checkpoint that cannot be read safely; the message names the file and the reason (the global it wanted)."""


class TrainerLog:
    """Stand-in for the human_seg trainer's ``utils.logger.Logger``: holds the pickled state (``entries``), runs no
    code of the checkpoint's. The harness never reads it; it only lets the weights beside it load."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


def _trainer_globals() -> list[Any]:
    """The globals allowed beyond PyTorch's own, each under the exact name a checkpoint calls it by."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar  # NumPy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar  # NumPy 1.26

    return [(TrainerLog, "utils.logger.Logger"),
            (scalar, "numpy._core.multiarray.scalar"),  # NumPy >= 2 pickles a np.float64 as this call
            (scalar, "numpy.core.multiarray.scalar"),  # NumPy 1's name for it
            (np.dtype, "numpy.dtype"),
            # the dtype classes a pickled dtype's state is set on (never named in a pickle, so not by name)
            *(type(np.dtype(code)) for code in ("f8", "f4", "i8", "i4"))]


#: What :func:`load_checkpoint` allows beyond PyTorch's defaults, by name (for messages and the README).
TRAINER_GLOBALS = ("utils.logger.Logger", "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar",
                   "numpy.dtype")


def load_checkpoint(path: Path) -> Any:
    """The object pickled in ``path``, read by PyTorch's restricted unpickler with :data:`TRAINER_GLOBALS` allowed.
    Raises :class:`CheckpointRefused` naming the file and, for a refused global, which one."""
    import torch

    try:
        with torch.serialization.safe_globals(_trainer_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = _unsafe_globals(path) or re.findall(r"GLOBAL ([\w.]+)", str(error))[:1]
        if wanted:
            raise CheckpointRefused(
                f"{path}: refused: the checkpoint asks to run or build {', '.join(wanted)}, which is not a tensor, "
                f"a container or one of the human_seg trainer's known classes ({', '.join(TRAINER_GLOBALS)}); "
                "segconform never unpickles code from a weight file. Save the state dict alone "
                "(torch.save(model.state_dict(), path)) and use that file") from None
        raise CheckpointRefused(f"{path}: cannot read checkpoint: {_first_line(error)}") from None
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointRefused(f"{path}: cannot read checkpoint: {_first_line(error)}") from None


def _unsafe_globals(path: Path) -> list[str]:
    """The globals the checkpoint names that the allowlist does not hold (read from the pickle, nothing run)."""
    import torch

    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: say what the unpickler said instead
        return []
    return [name for name in found if name not in TRAINER_GLOBALS]


def _first_line(error: BaseException) -> str:
    """The line of an error that says what is wrong: PyTorch's restricted unpickler puts it after a paragraph of
    advice, on the line after "WeightsUnpickler error:"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for index, line in enumerate(lines[:-1]):
        if line.endswith("WeightsUnpickler error:"):
            return lines[index + 1]
    return lines[0] if lines else type(error).__name__
