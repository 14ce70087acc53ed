"""Fault injection: any runtime wrapped with one named, deterministic fault, the proof that the checks fail a
broken one.

Selected like any runtime, as ``BASE+FAULT`` (``--runtime onnxruntime+shift``, ``--runtime openvino+bgr``); the
item id then reads ``isnet-int8-kl_divergence-onnxruntime+shift`` and the item is judged exactly like a healthy
runtime's: against the fp32 reference on plain ONNX Runtime, the golden masks and the seed's values.
``python -m harness sensitivity MODEL`` (:mod:`harness.diagnose.sensitivity`) runs the control (``identity``) and every
fault through those checks and says which check caught which fault.

Each fault is modelled on a real device-runtime or driver bug, and is deterministic: the same calls give the same
outputs, so a verdict on a faulty runtime is as repeatable as one on a healthy runtime.

:data:`SUSTAINED_FAULTS` (``tail``, ``throttle``, ``leak``, ``drift``) change what a session does as it is used: the
latency of some calls, its trend, its memory, its outputs after many calls. Only the sustained check
(``test_sustained``) can see them, and it is the only check ``harness sensitivity`` runs them through.

:data:`PROCESS_FAULTS` (``hang``, ``abort``, ``raise``) do not change outputs: they take the call itself away, as a
driver that never returns, a native crash or an error code do, on one call of the session (``hang`` on its 2nd call,
``abort`` on its 3rd, ``raise`` on its 2nd; ``hang@5`` on its 5th). ``load_hang`` takes the load away,
``warmup_hang`` makes the first call slow (a compile on first run) and then hangs, and ``abort_once`` crashes in the
item's first worker process only (a flaky device, for ``--retries``). They prove that a night survives its device
(:mod:`harness.run.isolation`); sensitivity does not run them, since they leave no output to judge.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..data.channels import CHANNEL_ORDERS, reordered
from .base import ATTEMPT_ENV, Artifact, RunInput, Runtime, Session

if TYPE_CHECKING:
    from ..data.cases import Item, Variant

SEPARATOR = "+"

#: Every calibration-free setting a fault uses, in one place (what the README's fault table shows).
MEAN_OFFSET = 0.015  # normalisation mean 0.485 where the recipe says 0.5 (ImageNet's red mean in a non-ImageNet recipe)
NOISE_SHARE = 0.03  # Gaussian noise, sigma as a share of the output's range
SATURATION_LEVEL = 0.8  # outputs clipped at this share of their range (an output scale calibrated too small)
STALE_EVERY = 4  # every 4th call returns the previous call's outputs
DROPOUT_EVERY = 5  # every 5th call returns zeros / NaN
SLOW_SHARE = 1.5  # int8 calls take 150% longer (2.5x): a fallback to a slow kernel path
KERNEL_NOISE_SHARE = 0.1  # the deployed kernels' noise, sigma as a share of the output's range
INT8_PRECISIONS = ("int8", "int8_dynamic")
#: Which call of a session each process fault takes away by default (``FAULT@N`` picks another).
HANG_AT, ABORT_AT, RAISE_AT = 2, 3, 2
WARMUP_S = 1.5  # how much longer ``warmup_hang``'s first call takes (a compile on first run)
#: The sustained faults (judged by ``test_sustained`` alone: what a few seconds of a fresh session cannot show).
TAIL_EVERY, TAIL_FACTOR = 10, 3.0  # every 10th call takes 3x as long (a queue flushed, a clock domain switched)
THROTTLE_PER_S = 0.01  # each call 1% slower per second since the session's first call (thermal throttling)
LEAK_BYTES = 8 * 2**20  # 8 MB kept (and written, so resident) per call: a driver buffer never freed
DRIFT_EVERY, DRIFT_SHARE = 20, 0.001  # from call 20 on, outputs move 0.1% of their range more every 20 calls


@dataclass
class _Context:
    """What a fault may look at: the item's precision and recipe, the call count, the previous call's outputs."""

    precision: str
    mean: np.ndarray
    std: np.ndarray
    calls: int = 0
    previous: list[np.ndarray] | None = None
    started: float | None = None  #: when the session's first call began (``throttle`` counts from it)
    kept: list[np.ndarray] = dataclasses.field(default_factory=list)  #: what ``leak`` holds on to


@dataclass(frozen=True)
class Fault:
    """One named fault: what real bug it stands for, and the input and output changes that reproduce it."""

    name: str
    models: str
    on_input: Callable[[RunInput, _Context], RunInput] | None = None
    on_output: Callable[[list[np.ndarray], _Context], list[np.ndarray]] | None = None
    slows_int8: float = 0.0
    deployed_only: bool = False  #: acts only on a deployed twin that computes apart from the judged session
    #: Process faults: what happens instead of the call numbered ``at_call`` (1-based) of the session.
    on_call: Callable[[int], None] | None = None
    at_call: int = 0
    on_load: Callable[[], None] | None = None  #: what happens instead of loading the session
    first_call_s: float = 0.0  #: how much longer the session's first call takes
    #: Sustained faults: seconds added after a call that took ``elapsed`` (``tail``, ``throttle``), bytes kept per call
    #: (``leak``). ``sustained``: judged by the sustained check alone (``harness sensitivity`` runs only it on them).
    delay: Callable[[float, _Context], float] | None = None
    keeps_bytes: int = 0
    sustained: bool = False


# --------------------------------------------------------------------------- input faults


def _reorder_channels(order: str, batch: RunInput, context: _Context) -> RunInput:
    """The image's colour channels fed in ``order`` (:data:`harness.data.channels.CHANNEL_ORDERS`), before the recipe's
    per-channel normalisation."""
    if batch.tensor is not None:
        mean, std = (v[:, None, None].astype(np.float32) for v in (context.mean, context.std))
        image = batch.tensor * std + mean  # undo the normalisation, reorder, normalise again
        changed = (image[:, list(CHANNEL_ORDERS[order])] - mean) / std
        return dataclasses.replace(batch, tensor=np.ascontiguousarray(changed, dtype=batch.tensor.dtype))
    return dataclasses.replace(batch, images=[reordered(image, order) for image in batch.images])


def _offset_mean(batch: RunInput, context: _Context) -> RunInput:
    if batch.tensor is not None:  # (x - 0.485) / std == (x - 0.5) / std + 0.015 / std
        offset = (MEAN_OFFSET / context.std).astype(np.float32)
        return dataclasses.replace(batch, tensor=batch.tensor + offset[None, :, None, None])
    # A device that normalises itself sees 8-bit images: the same offset in grey levels.
    shifted = [np.clip(image.astype(np.int16) + round(MEAN_OFFSET * 255), 0, 255).astype(image.dtype)
               for image in batch.images]
    return dataclasses.replace(batch, images=shifted)


# --------------------------------------------------------------------------- output faults (element 0: the prediction)


def _map_prediction(outputs: list[np.ndarray], change: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    prediction = np.asarray(outputs[0])
    return [change(prediction.copy()), *outputs[1:]]


def _shift_one_pixel(outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    def change(prediction: np.ndarray) -> np.ndarray:
        prediction[..., 1:] = prediction[..., :-1].copy()  # an off-by-one in the last resize: one column right
        return prediction

    return _map_prediction(outputs, change)


def _half_resolution(outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    import cv2

    def change(prediction: np.ndarray) -> np.ndarray:
        height, width = prediction.shape[-2:]
        planes = prediction.reshape(-1, height, width).astype(np.float32)
        for index, plane in enumerate(planes):
            low = cv2.resize(plane, (max(width // 2, 1), max(height // 2, 1)), interpolation=cv2.INTER_AREA)
            planes[index] = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
        return planes.reshape(prediction.shape).astype(prediction.dtype)

    return _map_prediction(outputs, change)


def _gaussian_noise(share: float, outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    """Noise of sigma ``share`` of the prediction's range, seeded by the call count (deterministic)."""
    rng = np.random.default_rng(context.calls)

    def change(prediction: np.ndarray) -> np.ndarray:
        spread = float(prediction.max() - prediction.min())
        return (prediction + rng.normal(0.0, share * spread, prediction.shape)).astype(prediction.dtype)

    return _map_prediction(outputs, change)


def _saturate(outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    def change(prediction: np.ndarray) -> np.ndarray:
        low, high = float(prediction.min()), float(prediction.max())
        return np.minimum(prediction, low + SATURATION_LEVEL * (high - low)).astype(prediction.dtype)

    return _map_prediction(outputs, change)


def _stale(outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    if context.calls % STALE_EVERY == 0 and context.previous is not None:
        return [o.copy() for o in context.previous]
    return outputs


def _fill_every_nth(fill: float, outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    if context.calls % DROPOUT_EVERY == 0:
        return _map_prediction(outputs, lambda p: np.full_like(p, fill))
    return outputs


def _every_nth(fill: float) -> Callable[[list[np.ndarray], _Context], list[np.ndarray]]:
    """A module-level partial, not a closure: a fault travels pickled to the session's worker process."""
    return functools.partial(_fill_every_nth, fill)


def _reverse_batch(outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    """Rows handed back in reverse order. The harness runs one image per call, so this fault plays a batcher that
    pairs each request with the previous one and returns the pair reversed: each image gets the previous one's."""
    if outputs and np.asarray(outputs[0]).shape[0] > 1:
        return [np.asarray(o)[::-1].copy() for o in outputs]
    if context.previous is not None:
        return [o.copy() for o in context.previous]
    return outputs


def _tail(elapsed: float, context: _Context) -> float:
    return (TAIL_FACTOR - 1.0) * elapsed if context.calls % TAIL_EVERY == 0 else 0.0


def _throttle(elapsed: float, context: _Context) -> float:
    now = time.perf_counter()
    return elapsed * THROTTLE_PER_S * (now - (now if context.started is None else context.started))


def _drift(outputs: list[np.ndarray], context: _Context) -> list[np.ndarray]:
    """From call :data:`DRIFT_EVERY` on, an offset of :data:`DRIFT_SHARE` of the range more every that many calls (a
    stale buffer accumulating, a clock-dependent kernel): the same image's output moves as the session is used."""
    steps = context.calls // DRIFT_EVERY
    if steps == 0:
        return outputs

    def change(prediction: np.ndarray) -> np.ndarray:
        spread = float(prediction.max() - prediction.min()) or 1.0
        return (prediction + steps * DRIFT_SHARE * spread).astype(prediction.dtype)

    return _map_prediction(outputs, change)


FAULTS: dict[str, Fault] = {fault.name: fault for fault in (
    Fault("identity", "the control: the runtime as it is, through the wrapper"),
    Fault("bgr", "input channel order swapped (RGB read as BGR by a driver's colour conversion)",
          on_input=functools.partial(_reorder_channels, "BGR")),
    Fault("gbr", "input planes rotated (GBR: a planar layout read from the wrong plane offset)",
          on_input=functools.partial(_reorder_channels, "GBR")),
    Fault("replicate", "one input plane fed to all three (the red plane: a driver handing a single plane to a "
                       "three-plane input)", on_input=functools.partial(_reorder_channels, "RRR")),
    Fault("mean_offset", "input normalisation off by a small constant (mean 0.485 instead of 0.5)",
          on_input=_offset_mean),
    Fault("shift", "output shifted by one pixel (an off-by-one in the device's resize)", on_output=_shift_one_pixel),
    Fault("half_res", "output computed at half resolution (a fast path at the wrong scale)",
          on_output=_half_resolution),
    Fault("noise", f"output noise (sigma {NOISE_SHARE:.0%} of the range: an uninitialised accumulator tile)",
          on_output=functools.partial(_gaussian_noise, NOISE_SHARE)),
    Fault("saturate", f"output saturated at {SATURATION_LEVEL:.0%} of its range (output scale calibrated too small)",
          on_output=_saturate),
    Fault("stale", f"stale output buffer: every {STALE_EVERY}th image gets the previous image's output",
          on_output=_stale),
    Fault("zero", f"an all-zero output on one image in {DROPOUT_EVERY} (a DMA that did not complete)",
          on_output=_every_nth(0.0)),
    Fault("nan", f"a NaN output on one image in {DROPOUT_EVERY} (a kernel reading uninitialised memory)",
          on_output=_every_nth(float("nan"))),
    Fault("batch_reverse", "batch order reversed (a batcher handing rows back in reverse)", on_output=_reverse_batch),
    Fault("slow", f"the int8 path {SLOW_SHARE:.0%} slower (a fallback to a reference kernel)", slows_int8=SLOW_SHARE),
    Fault("kernels", f"the deployed int8 kernels compute apart from the build's exact arithmetic (noise, sigma "
                     f"{KERNEL_NOISE_SHARE:.0%} of the range: a kernel dispatched wrongly on this CPU)",
          on_output=functools.partial(_gaussian_noise, KERNEL_NOISE_SHARE), deployed_only=True),
)}

#: Faults a few seconds of a fresh session cannot show: only the sustained check (``test_sustained``) judges them.
SUSTAINED_FAULTS: dict[str, Fault] = {fault.name: fault for fault in (
    Fault("tail", f"every {TAIL_EVERY}th call {TAIL_FACTOR:g}x as long (a queue flushed, a clock domain switched)",
          delay=_tail, sustained=True),
    Fault("throttle", f"calls {THROTTLE_PER_S:.0%} slower per second of use (thermal throttling)", delay=_throttle,
          sustained=True),
    Fault("leak", f"{LEAK_BYTES // 2**20} MB kept per call (a driver buffer never freed)", keeps_bytes=LEAK_BYTES,
          sustained=True),
    Fault("drift", f"outputs move {DRIFT_SHARE:.1%} of their range every {DRIFT_EVERY} calls from call "
                   f"{DRIFT_EVERY} on (a stale buffer accumulating)", on_output=_drift, sustained=True),
)}


# --------------------------------------------------------------------------- process faults: the call itself goes


class InjectedRuntimeError(RuntimeError):
    """What the ``raise`` fault raises: a driver call that returned an error code."""


def _hang(call: int) -> None:
    """Never return, as a driver call waiting on a device that will not answer (only a kill ends it)."""
    threading.Event().wait()


def _abort(call: int) -> None:
    """SIGABRT, as a native assertion in a driver does: the whole process goes, no Python handler runs."""
    os.abort()


def _raise(call: int) -> None:
    raise InjectedRuntimeError(f"injected fault: the runtime returned an error on call {call}")


def _hang_loading() -> None:
    _hang(0)


def _abort_once(call: int) -> None:
    """SIGABRT in the item's first worker process only (harness.run.isolation numbers them): a flaky device that works
    once restarted, which ``--retries`` is for."""
    if os.environ.get(ATTEMPT_ENV, "1") == "1":
        os.abort()


PROCESS_FAULTS: dict[str, Fault] = {fault.name: fault for fault in (
    Fault("hang", "a call that never returns (a driver waiting on a device that does not answer)", on_call=_hang,
          at_call=HANG_AT),
    Fault("abort", "a native crash (SIGABRT from a driver's assertion)", on_call=_abort, at_call=ABORT_AT),
    Fault("raise", "a call that raises (a driver returning an error code)", on_call=_raise, at_call=RAISE_AT),
    Fault("load_hang", "a load that never returns (a compiler or driver waiting on a device that does not answer)",
          on_load=_hang_loading),
    Fault("warmup_hang", f"a first call {WARMUP_S:g} s slower (compiling on first run), then a call that never "
                         "returns", on_call=_hang, at_call=HANG_AT, first_call_s=WARMUP_S),
    Fault("abort_once", "a native crash in the item's first worker process only (a flaky device that a restart "
                        "cures)", on_call=_abort_once, at_call=ABORT_AT),
)}


def _process_fault(text: str) -> Fault | None:
    """``hang`` or ``hang@5`` -> the process fault, taking the call it names; None when ``text`` names none."""
    name, _, at = text.partition("@")
    if name not in PROCESS_FAULTS or (at and not (at.isdigit() and int(at) >= 1)):
        return None
    fault = PROCESS_FAULTS[name]
    return dataclasses.replace(fault, name=text, at_call=int(at)) if at else fault


def split(name: str) -> tuple[str, Fault | None]:
    """``"onnxruntime+shift"`` -> ("onnxruntime", the shift fault); a plain name -> (name, None)."""
    if SEPARATOR not in name:
        return name, None
    base, fault = name.split(SEPARATOR, 1)
    found = FAULTS.get(fault) or SUSTAINED_FAULTS.get(fault) or _process_fault(fault)
    if found is None:
        raise ValueError(f"runtime {name!r}: unknown fault {fault!r}; known faults: {', '.join(FAULTS)}, "
                         f"{', '.join(SUSTAINED_FAULTS)} (judged by the sustained check), and "
                         f"{', '.join(PROCESS_FAULTS)} (optionally @N: on the session's Nth call)")
    return base, found


def output_fault(name: str, precision: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """An output fault as a function of one call's outputs, counting calls as a wrapped session does: for outputs
    computed where no session of this process runs them (the deployed session on an emulated CPU,
    :mod:`harness.diagnose.emulated_int8`), so the same fault reaches them as through ``RUNTIME+FAULT``."""
    fault = FAULTS.get(name)
    if fault is None or fault.on_output is None or fault.on_input is not None:
        raise ValueError(f"{name!r} is not an output fault; those are: "
                         f"{', '.join(f.name for f in FAULTS.values() if f.on_output and not f.on_input)}")
    context = _Context(precision, np.zeros(3), np.ones(3))
    change = fault.on_output

    def apply(outputs: list[np.ndarray]) -> list[np.ndarray]:
        context.calls += 1
        clean = [np.asarray(o).copy() for o in outputs]
        changed = change(outputs, context)
        context.previous = clean
        return changed

    return apply


class _ExactOutputs:
    """What the exact-arithmetic twins of one build computed, by input, shared by every fault wrapper of that build in
    this process (``harness sensitivity``: up to 16 wrappers of ISNet's int8 build, each through the same images).

    Such a twin is never timed (latency times the deployed twin), computes the same on the same input in any session
    of the same build and settings, and is the costly one (ISNet int8: 0.32 s a call, against 0.07 s deployed): an
    output or deployed-kernel fault, the control and the healthy path all feed it the same images, so it runs once per
    image, and only an input fault (``bgr``, ``mean_offset``, ...) makes it run again. Copies go in and out, so a
    fault never changes what the next wrapper gets. The oldest entries go past ``limit_bytes``."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[tuple[str, str], list[np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def run(self, build: str, inner: Session, batch: RunInput) -> list[np.ndarray]:
        if batch.tensor is None:  # a runtime that takes images has no exact twin of this kind
            return inner.run(batch)
        tensor = np.ascontiguousarray(batch.tensor)
        key = (build, hashlib.sha256(tensor.tobytes() + repr((tensor.shape, tensor.dtype.str)).encode()).hexdigest())
        with self._lock:
            found = self._entries.get(key)
        if found is not None:
            return [o.copy() for o in found]
        outputs = inner.run(batch)
        kept = [np.array(o, copy=True) for o in outputs]  # the caller gets the session's own arrays, the store its copy
        with self._lock:
            if key not in self._entries:
                self._entries[key] = kept
                self._bytes += sum(o.nbytes for o in kept)
                while self._bytes > self.limit_bytes and len(self._entries) > 1:
                    self._bytes -= sum(o.nbytes for o in self._entries.popitem(last=False)[1])
        return outputs


#: Bounded so that a night of faulty runtimes on 1024x1024 models (24 MB a call) cannot grow without end.
EXACT_OUTPUTS = _ExactOutputs(limit_bytes=512 * 2**20)


class FaultySession(Session):
    """A session whose calls go through one fault; its deployed twin (what latency times) carries the same fault.

    A ``deployed_only`` fault leaves the session itself untouched (``active`` False) and acts on its deployed twin
    alone, where the two compute apart (static int8 on ONNX Runtime's CPU: exact arithmetic vs fused kernels).
    Where the inner session is such an exact twin of a build (``build``: the artifact and the session's settings),
    its outputs come through :data:`EXACT_OUTPUTS`, shared with the other wrappers of the build."""

    def __init__(self, inner: Session, fault: Fault, context: _Context, active: bool = True,
                 build: str | None = None) -> None:
        self._inner, self._fault, self._context, self._active = inner, fault, context, active
        self.provider = f"{inner.provider} + fault {fault.name}"
        self.live = inner.live
        self._deployed: Session | None = None
        self._build = build if inner.deployed is not inner else None  # only an exact twin, never a timed session

    def _inner_run(self, batch: RunInput) -> list[np.ndarray]:
        if self._build is None:
            return self._inner.run(batch)
        return EXACT_OUTPUTS.run(self._build, self._inner, batch)

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        if not self._active:
            return self._inner_run(batch)
        context, fault = self._context, self._fault
        context.calls += 1
        if context.calls == 1:
            context.started = time.perf_counter()
            time.sleep(fault.first_call_s)
        if fault.on_call is not None and context.calls == fault.at_call:
            fault.on_call(context.calls)
        if fault.on_input is not None:
            batch = fault.on_input(batch, context)
        started = time.perf_counter()
        outputs = self._inner_run(batch)
        elapsed = time.perf_counter() - started
        clean = [np.asarray(o).copy() for o in outputs] if fault.on_output is not None else outputs
        if fault.on_output is not None:
            outputs = fault.on_output(outputs, context)
        context.previous = clean
        if fault.slows_int8 and context.precision in INT8_PRECISIONS:
            time.sleep(fault.slows_int8 * elapsed)
        if fault.delay is not None:
            time.sleep(fault.delay(elapsed, context))
        if fault.keeps_bytes:
            context.kept.append(np.ones(fault.keeps_bytes, dtype=np.uint8))
        return outputs

    def covers(self, stem: str) -> bool:
        return self._inner.covers(stem)

    def notes(self) -> list[str]:
        return [*self._inner.notes(), f"fault injected: {self._fault.name} ({self._fault.models})"]

    def settings(self) -> dict[str, Any]:
        return {**self._inner.settings(), "fault": self._fault.name}

    def memory(self) -> dict[str, int | None]:
        return self._inner.memory()

    @property
    def deployed(self) -> Session:
        inner = self._inner.deployed
        if inner is self._inner:
            return self
        if self._deployed is None:
            self._deployed = FaultySession(inner, self._fault, dataclasses.replace(self._context, calls=0, kept=[]))
        return self._deployed

    def _close(self) -> None:
        self._inner.close()


class FaultyRuntime(Runtime):
    """``base`` with ``fault`` applied to every call. Not registered by name: :func:`harness.runtimes.get` builds
    it from ``BASE+FAULT``, so every runtime, a third-party one included, can be wrapped."""

    def __init__(self, base: Runtime, fault: Fault) -> None:
        super().__init__(base.config)
        self.base, self.fault = base, fault
        self.name = f"{base.name}{SEPARATOR}{fault.name}"  # type: ignore[misc]
        self.takes_images = base.takes_images  # type: ignore[misc]
        self.artifact = base.artifact  # type: ignore[misc]

    def _unavailable(self) -> str | None:
        return self.base.unavailable

    def _unsupported(self, variant: "Variant") -> str | None:
        return self.base.unsupported(variant)

    def _load(self, item: "Item", artifact: Artifact | None) -> Session:
        if self.fault.on_load is not None:
            self.fault.on_load()
        inner = self.base.load(dataclasses.replace(item, runtime=self.base.name), artifact)
        build = None if artifact is None else \
            f"{self.base.name} {artifact.path} {json.dumps(inner.settings(), sort_keys=True, default=str)}"
        return FaultySession(inner, self.fault, _Context(item.variant.precision, *_normalisation(item)),
                             active=not self.fault.deployed_only, build=build)

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "runtime": self.name, "fault": self.fault.name}


def _normalisation(item: "Item") -> tuple[np.ndarray, np.ndarray]:
    """The per-channel mean and std of the item's normalisation (0 and 1 where the recipe does not normalise)."""
    for op in item.model.preprocess:
        if op.op == "normalize":
            mean, std = (np.broadcast_to(np.asarray(op.args[k], dtype=np.float64).reshape(-1), (3,)).copy()
                         for k in ("mean", "std"))
            return mean, std
    return np.zeros(3), np.ones(3)
