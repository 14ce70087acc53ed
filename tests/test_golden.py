"""Golden store (:mod:`harness.judge.golden`): 8-bit round trip, whole-folder atomic replacement, fingerprints."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from harness.judge.golden import GoldenStore

HALF_LEVEL = 0.5 / 255


def _maps(stems, seed=0):
    rng = np.random.default_rng(seed)
    maps = {stem: rng.random((9, 7 + i)).astype(np.float32) for i, stem in enumerate(stems)}
    images = {stem: rng.integers(0, 256, (9, 7 + i, 3), dtype=np.uint8) for i, stem in enumerate(stems)}
    return maps, images


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_then_load_round_trips_within_8_bit_quantisation(tmp_path):
    store = GoldenStore(tmp_path)
    maps, images = _maps(["b", "a"])
    maps["a"][0, :3] = [0.0, 1.0, 0.5]
    target = store.write("u2net", "ecssd", maps, images, {"weights": "checkpoint u2net.pth"})
    assert target == tmp_path / "u2net" / "ecssd"
    golden = store.load("u2net", "ecssd")
    assert golden.stems() == ["a", "b"]
    assert golden.meta["weights"] == "checkpoint u2net.pth"
    for stem, expected in maps.items():
        loaded = golden.map(stem)
        assert loaded.shape == expected.shape and loaded.dtype == np.float32
        assert np.abs(loaded - expected).max() <= HALF_LEVEL + 1e-7
    np.testing.assert_array_equal(golden.map("a")[0, :2], [0.0, 1.0])


def test_golden_masks_are_8_bit_pngs(tmp_path):
    maps, images = _maps(["a"])
    folder = GoldenStore(tmp_path).write("m", "d", maps, images, {})
    raw = cv2.imread(str(folder / "a.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.shape == maps["a"].shape
    np.testing.assert_array_equal(raw, np.round(maps["a"].astype(np.float64) * 255).astype(np.uint8))


def test_load_of_a_missing_set_is_none_and_bad_meta_is_named(tmp_path):
    store = GoldenStore(tmp_path)
    assert store.load("m", "d") is None
    (tmp_path / "m" / "d").mkdir(parents=True)
    (tmp_path / "m" / "d" / "meta.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta\.json"):
        store.load("m", "d")


def test_rewrite_replaces_the_whole_folder_and_leaves_no_temporary_folders(tmp_path):
    store = GoldenStore(tmp_path)
    store.write("m", "ecssd", *_maps(["a", "b"]), {"version": 1})
    new_maps, new_images = _maps(["c"], seed=1)
    store.write("m", "ecssd", new_maps, new_images, {"version": 2})
    assert _listing(tmp_path / "m") == ["ecssd"]  # no staging or retired folder left beside it
    assert _listing(tmp_path / "m" / "ecssd") == ["c.png", "meta.json"]
    golden = store.load("m", "ecssd")
    assert golden.stems() == ["c"] and golden.meta["version"] == 2


def test_a_write_failing_midway_leaves_the_old_golden_set_intact(tmp_path, monkeypatch):
    store = GoldenStore(tmp_path)
    old_maps, old_images = _maps(["a", "b"])
    store.write("m", "ecssd", old_maps, old_images, {"version": 1})
    folder = tmp_path / "m" / "ecssd"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    real_imwrite = cv2.imwrite
    calls = []

    def imwrite_failing_on_second_file(path, image):
        calls.append(path)
        return False if len(calls) == 2 else real_imwrite(path, image)

    monkeypatch.setattr(cv2, "imwrite", imwrite_failing_on_second_file)
    with pytest.raises(OSError, match="could not write golden mask"):
        store.write("m", "ecssd", *_maps(["x", "y", "z"], seed=3), {"version": 2})
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert _listing(tmp_path / "m") == ["ecssd"]
    assert json.loads((folder / "meta.json").read_text(encoding="utf-8"))["version"] == 1


def test_image_fingerprint_detects_a_different_image_with_the_same_stem(tmp_path):
    maps, images = _maps(["a"])
    GoldenStore(tmp_path).write("m", "d", maps, images, {})
    golden = GoldenStore(tmp_path).load("m", "d")
    assert golden.matches_image("a", images["a"].copy())
    changed = images["a"].copy()
    changed[4, 3, 1] ^= 1
    assert not golden.matches_image("a", changed)
    assert not golden.matches_image("a", images["a"][:, :, ::-1])
    assert not golden.matches_image("unknown", images["a"])


def test_a_missing_golden_png_is_reported_by_path(tmp_path):
    folder = GoldenStore(tmp_path).write("m", "d", *_maps(["a"]), {})
    (folder / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"a\.png"):
        GoldenStore(tmp_path).load("m", "d").map("a")


# --------------------------------------------------------------------------- the regeneration policy

from harness.judge.golden import Regeneration  # noqa: E402


def _reference(maps, images, weights="w1"):
    calls = []

    def reference():
        calls.append(1)
        return maps, images, {"weights": weights, "made_by": "m-fp32-onnxruntime"}

    return reference, calls


@pytest.mark.parametrize("mode, state, fails, written", [(None, "missing", True, False),
                                                         ("failing", "created", True, True),
                                                         ("all", "written", False, True)])
def test_a_missing_set(tmp_path, mode, state, fails, written):
    maps, images = _maps(["a", "b"])
    reference, _ = _reference(maps, images)
    settled = Regeneration(GoldenStore(tmp_path), mode).settle("m", "d", "w1", reference)
    assert (settled.state, settled.fails) == (state, fails)
    assert (GoldenStore(tmp_path).load("m", "d") is not None) is written


@pytest.mark.parametrize("mode, state, fails, rewritten", [(None, "differs", True, False),
                                                           ("failing", "rewritten", True, True),
                                                           ("all", "written", False, True)])
def test_a_set_the_reference_no_longer_matches(tmp_path, mode, state, fails, rewritten):
    store = GoldenStore(tmp_path)
    maps, images = _maps(["a", "b"])
    store.write("m", "d", maps, images, {"weights": "w1"})
    changed = {stem: np.clip(m + 0.1, 0, 1) for stem, m in maps.items()}
    reference, _ = _reference(changed, images)
    settled = Regeneration(store, mode).settle("m", "d", "w1", reference)
    assert (settled.state, settled.fails) == (state, fails)
    now = store.load("m", "d").map("a")
    assert bool(np.abs(now - changed["a"]).max() <= HALF_LEVEL + 1e-7) == rewritten
    obtained = sorted(p.name for p in (tmp_path / "m" / "d").glob("*.obtained.png"))
    assert obtained == ([] if rewritten else ["a.obtained.png", "b.obtained.png"])  # beside the expected, for review


def test_a_set_made_from_other_inputs_under_the_same_stems_fails_and_says_so(tmp_path):
    store = GoldenStore(tmp_path)
    maps, images = _maps(["a", "b"])
    store.write("m", "d", maps, images, {"weights": "w1"})
    others = {stem: 255 - image for stem, image in images.items()}  # another dataset's files, same stems
    settled = Regeneration(store, None).settle("m", "d", "w1", _reference(maps, others)[0])
    assert settled.state == "differs" and settled.fails and "none of the golden masks" in settled.message
    assert not list((tmp_path / "m" / "d").glob("*.obtained.png"))


def test_a_matching_set_is_left_alone_and_its_stale_obtained_maps_go(tmp_path):
    store = GoldenStore(tmp_path)
    maps, images = _maps(["a"])
    store.write("m", "d", maps, images, {"weights": "w1"})
    store.write_obtained("m", "d", maps)
    before = (tmp_path / "m" / "d" / "a.png").stat().st_mtime_ns
    settled = Regeneration(store, "failing").settle("m", "d", "w1", _reference(maps, images)[0])
    assert settled.state == "matches" and not settled.fails
    assert (tmp_path / "m" / "d" / "a.png").stat().st_mtime_ns == before
    assert not list((tmp_path / "m" / "d").glob("*.obtained.png"))


def test_a_set_of_other_weights_is_skipped_unless_regenerating(tmp_path):
    store = GoldenStore(tmp_path)
    maps, images = _maps(["a"])
    store.write("m", "d", maps, images, {"weights": "seeded"})
    assert Regeneration(store, None).settle("m", "d", "w1", _reference(maps, images)[0]).state == "other-weights"
    assert Regeneration(store, "failing").settle("m", "d", "w1", _reference(maps, images)[0]).state == "rewritten"
    assert store.load("m", "d").meta["weights"] == "w1"


def test_each_set_is_settled_once_per_session_whichever_item_asks_first(tmp_path):
    maps, images = _maps(["a"])
    reference, calls = _reference(maps, images)
    policy = Regeneration(GoldenStore(tmp_path), "failing")
    first = policy.settle("m", "d", "w1", reference)
    second = policy.settle("m", "d", "w1", reference)
    assert first is second and first.state == "created" and len(calls) == 1


def test_a_crash_between_the_two_renames_is_repaired_on_load(tmp_path):
    store = GoldenStore(tmp_path)
    maps, images = _maps(["a"])
    target = store.write("m", "d", maps, images, {"version": 1})
    retired = tmp_path / "m" / ".d-old-x"
    retired.mkdir()
    target.rename(retired / "set")  # as if the process died after retiring the old set
    assert store.load("m", "d").meta["version"] == 1
    assert not retired.exists()


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'some'"):
        Regeneration(GoldenStore(tmp_path), "some")
