"""A checkpoint is data: read by PyTorch's restricted unpickler only (:mod:`harness.build.checkpoint`). A pickle that
asks to run a callable is refused naming the file and the global, and runs nothing; the human_seg trainer's own
containers (its logger, NumPy metric values) still load."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.build.weights import WeightsUnavailable, checkpoint_state_dict


class _RunsCommand:
    """Pickles as a call of ``os.system``: what a hostile checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_checkpoint_that_calls_os_system_runs_nothing_and_is_refused_naming_file_and_global(tmp_path, zip_format):
    marker = tmp_path / "ran"
    path = tmp_path / "u2netp.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _RunsCommand(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(WeightsUnavailable) as refused:
        checkpoint_state_dict(path)
    assert not marker.exists(), "the checkpoint's pickle ran a command"
    message = str(refused.value)
    assert str(path) in message and "posix.system" in message and "refused" in message


def test_the_human_seg_trainers_checkpoint_loads_with_its_logger_and_numpy_metrics(tmp_path, monkeypatch):
    """base_trainer.py saves {arch, epoch, logger: utils.logger.Logger, state_dict, optimizer, monitor_best, config};
    its logged metrics are NumPy scalars. Only those classes are allowed, by name."""
    module = types.ModuleType("utils.logger")

    class Logger:
        def __init__(self) -> None:
            self.entries = {1: {"epoch": 1, "valid_miou": np.float64(0.91), "loss": 0.2}}

    Logger.__module__, Logger.__qualname__ = "utils.logger", "Logger"
    module.Logger = Logger
    monkeypatch.setitem(sys.modules, "utils", types.ModuleType("utils"))
    monkeypatch.setitem(sys.modules, "utils.logger", module)
    weight = torch.arange(4.0)
    path = tmp_path / "unet_resnet18.pth"
    torch.save({"arch": "UNet", "epoch": 3, "logger": Logger(), "state_dict": {"conv.weight": weight},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]},
                "monitor_best": np.float64(0.91), "config": {"name": "UNet", "n_gpu": 1}}, path)
    monkeypatch.delitem(sys.modules, "utils.logger")  # the loader must not need the trainer's code
    state = checkpoint_state_dict(path)
    assert list(state) == ["conv.weight"] and torch.equal(state["conv.weight"], weight)


def test_a_checkpoint_with_an_unknown_class_is_refused_naming_it(tmp_path, monkeypatch):
    module = types.ModuleType("trainer.extras")

    class Scheduler:
        pass

    Scheduler.__module__, Scheduler.__qualname__ = "trainer.extras", "Scheduler"
    module.Scheduler = Scheduler
    monkeypatch.setitem(sys.modules, "trainer", types.ModuleType("trainer"))
    monkeypatch.setitem(sys.modules, "trainer.extras", module)
    path = tmp_path / "trained.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "scheduler": Scheduler()}, path)
    with pytest.raises(WeightsUnavailable, match=r"trained\.pth: refused: .*trainer\.extras\.Scheduler"):
        checkpoint_state_dict(path)
