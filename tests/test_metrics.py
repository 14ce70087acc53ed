"""Metrics (:mod:`harness.judge.metrics`) against hand computations and an independent F-measure curve, and the
per-image scores every interval is computed from."""

from __future__ import annotations

import numpy as np
import pytest

from harness.judge.metrics import Scorer, conformance, miou, to_uint8

SALIENCY_KEYS = {"mae", "max_f", "avg_f", "adp_f", "sm", "max_em", "avg_em", "adp_em", "wfm"}


def _saliency(pairs) -> dict[str, float]:
    metrics = Scorer("saliency")
    for prediction, truth in pairs:
        metrics.add(np.asarray(prediction, np.float32), np.asarray(truth, np.float32))
    return metrics.results()


# --------------------------------------------------------------------------- to_uint8


def test_to_uint8_rounds_to_the_nearest_level_and_clips():
    levels = np.array([-0.1, 0.0, 10.4 / 255, 10.6 / 255, 0.2, 254.6 / 255, 1.0, 1.2])
    np.testing.assert_array_equal(to_uint8(levels), [0, 0, 10, 11, 51, 255, 255, 255])
    assert to_uint8(levels).dtype == np.uint8


def test_to_uint8_of_8_bit_levels_is_exact():
    levels = np.arange(256)
    np.testing.assert_array_equal(to_uint8(levels / 255.0), levels)


# --------------------------------------------------------------------------- saliency


def test_mae_of_a_known_map():
    # 8-bit levels 51, 204, 255, 0 against truth 0, 1, 1, 0: |0.2| + |0.2| + 0 + 0 over 4 pixels = 0.1
    results = _saliency([([[0.2, 0.8], [1.0, 0.0]], [[0, 1], [1, 0]])])
    assert results["mae"] == pytest.approx(0.1, abs=1e-9)


def test_mae_is_the_mean_of_per_image_maes():
    # image 1: MAE 0.1 (as above); image 2 (3x2): levels 0, 255, 255, 255, 0, 0 against 0, 0, 1, 1, 0, 0 -> 1/6
    second = ([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], [[0, 0], [1, 1], [0, 0]])
    results = _saliency([([[0.2, 0.8], [1.0, 0.0]], [[0, 1], [1, 0]]), second])
    assert results["mae"] == pytest.approx((0.1 + 1 / 6) / 2, abs=1e-9)


def test_perfect_prediction_scores_best():
    truth = np.zeros((40, 50), np.float32)
    truth[10:30, 12:35] = 1.0
    results = _saliency([(truth, truth)])
    assert set(results) == SALIENCY_KEYS
    assert results["mae"] == 0.0
    assert results["max_f"] == pytest.approx(1.0, abs=1e-6)
    assert results["sm"] == pytest.approx(1.0, abs=1e-6)
    # E-measure divides by (H * W - 1), as the MATLAB original does: a perfect map scores H*W / (H*W - 1)
    assert results["max_em"] == pytest.approx(2000 / 1999, abs=1e-9)
    assert results["wfm"] == pytest.approx(1.0, abs=1e-6)


def test_inverted_prediction_scores_worst():
    truth = np.zeros((40, 50), np.float32)
    truth[10:30, 12:35] = 1.0
    results = _saliency([(1.0 - truth, truth)])
    assert results["mae"] == pytest.approx(1.0)
    # Only threshold 0 (everything foreground) hits the truth: precision p = |truth| / N, recall 1,
    # F = (1 + 0.3) p / (0.3 p + 1); every higher threshold selects background only: F = 0.
    p = float(truth.sum()) / truth.size
    assert results["max_f"] == pytest.approx(1.3 * p / (0.3 * p + 1.0), abs=1e-9)
    assert results["avg_f"] == pytest.approx(results["max_f"] / 256, abs=1e-9)
    assert results["sm"] < 0.1
    assert results["wfm"] == pytest.approx(0.0, abs=1e-6)


def _f_curve(prediction8: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PySODEvalToolkit's F-measure at the 256 thresholds t = 0..255 (foreground: level >= t), beta^2 = 0.3."""
    curve = np.zeros(256)
    positives = truth.sum()
    for t in range(256):
        selected = prediction8 >= t
        hits = np.logical_and(selected, truth).sum()
        if hits == 0:
            continue
        precision, recall = hits / selected.sum(), hits / positives
        curve[t] = 1.3 * precision * recall / (0.3 * precision + recall)
    return curve


def test_avg_and_max_f_match_an_independent_f_measure_curve():
    rng = np.random.default_rng(5)
    pairs, curves = [], []
    for height, width in [(13, 17), (20, 9), (16, 16)]:
        prediction8 = rng.integers(0, 256, (height, width)).astype(np.uint8)
        prediction8.flat[:2] = (0, 255)  # the toolkit min-max normalises each map: keep it at 0..255 already
        truth = rng.random((height, width)) < 0.4
        truth.flat[2] = True
        pairs.append((prediction8 / 255.0, truth.astype(np.float32)))
        curves.append(_f_curve(prediction8, truth))
    dataset_curve = np.mean(curves, axis=0)
    results = _saliency(pairs)
    assert results["max_f"] == pytest.approx(dataset_curve.max(), abs=1e-9)
    assert results["avg_f"] == pytest.approx(dataset_curve.mean(), abs=1e-9)


# --------------------------------------------------------------------------- mIoU


def test_miou_from_a_hand_made_confusion_leaves_out_an_absent_class():
    # rows: truth, columns: prediction; class 2 appears in neither.
    confusion = np.array([[50, 10, 0], [5, 35, 0], [0, 0, 0]])
    background = 50 / (50 + 10 + 5)
    foreground = 35 / (35 + 5 + 10)
    assert miou(confusion) == pytest.approx((background + foreground) / 2)


def test_miou_counts_a_class_present_in_only_one_side_as_zero():
    confusion = np.array([[6, 2], [0, 0]])  # no foreground truth, but 2 pixels predicted foreground
    assert miou(confusion) == pytest.approx((6 / 8 + 0.0) / 2)


def test_segmentation_miou_uses_one_dataset_wide_confusion():
    metrics = Scorer("segmentation")
    # image 1: truth fg [1, 1, 0, 0], prediction (>= 0.5) fg [1, 0, 0, 0]
    metrics.add(np.array([0.9, 0.2, 0.4, 0.0]), np.array([1.0, 1.0, 0.0, 0.0]))
    # image 2: truth fg [0, 0], prediction fg [1, 1] (0.5 counts as foreground)
    metrics.add(np.array([0.5, 0.7]), np.array([0.0, 0.0]))
    # overall: TP fg 1, FN 1, FP 2, TN 2 -> IoU fg 1/4, IoU bg 2/5 (a per-image mean would differ)
    assert metrics.results() == {"miou": pytest.approx((1 / 4 + 2 / 5) / 2)}


def test_segmentation_miou_of_all_background_everywhere_is_one():
    metrics = Scorer("segmentation")
    metrics.add(np.zeros((3, 3)), np.zeros((3, 3)))
    assert metrics.results()["miou"] == 1.0


# --------------------------------------------------------------------------- matting


def test_matting_mse_and_mad_are_means_of_per_image_means():
    metrics = Scorer("matting")
    metrics.add(np.array([[0.5, 0.9]]), np.array([[0.0, 1.0]]))  # squared 0.25, 0.01; absolute 0.5, 0.1
    metrics.add(np.array([[0.8]]), np.array([[1.0]]))  # squared 0.04; absolute 0.2
    results = metrics.results()
    assert results["mse"] == pytest.approx(((0.25 + 0.01) / 2 + 0.04) / 2)
    assert results["mad"] == pytest.approx(((0.5 + 0.1) / 2 + 0.2) / 2)
    # thresholded at 0.5: prediction fg [1, 1] + [1], truth fg [0, 1] + [1]: IoU fg 2/3, IoU bg 0/1
    assert results["miou"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_each_task_gives_the_seed_table_metric_names():
    rng = np.random.default_rng(0)
    names = {}
    for task in ("saliency", "segmentation", "matting"):
        scorer = Scorer(task)
        scorer.add(rng.random((6, 5)), (rng.random((6, 5)) > 0.5).astype(np.float32))
        names[task] = set(scorer.results())
    assert names == {"saliency": SALIENCY_KEYS, "segmentation": {"miou"}, "matting": {"mse", "mad", "miou"}}
    with pytest.raises(ValueError, match="depth"):
        Scorer("depth")


def _random_scores(task: str, images: int = 7):
    rng = np.random.default_rng(11)
    scorer = Scorer(task)
    for index in range(images):
        truth = (rng.random((12, 10)) > 0.6).astype(np.float32)
        scorer.add(np.clip(truth * 0.7 + rng.random((12, 10)) * 0.4, 0, 1), truth, f"s{index}")
    return scorer.scores()


@pytest.mark.parametrize("task", ["saliency", "segmentation", "matting"])
def test_a_resample_weighted_by_counts_equals_the_metric_of_the_repeated_images(task):
    scores = _random_scores(task)
    counts = np.array([[2, 0, 1, 0, 3, 1, 0]], np.float64)
    repeated = [s for s, c in zip(scores.stems, counts[0]) for _ in range(int(c))]
    weighted = {m: float(v[0]) for m, v in scores.weighted(counts).items()}
    # the same images listed as often as the resample drew them, scored the plain way
    assert weighted == pytest.approx(scores.subset(repeated).results(), abs=1e-12)


def test_per_image_values_average_to_the_metric_where_it_is_a_mean():
    scores = _random_scores("saliency")
    results = scores.results()
    for metric in ("mae", "avg_f", "adp_f", "sm", "avg_em", "adp_em", "wfm"):
        assert scores.per_image(metric).mean() == pytest.approx(results[metric], abs=1e-12)
    assert scores.per_image("max_f") is None  # the max of a mean curve is no mean of per-image values


def test_two_class_miou_rows_agree_with_the_confusion_matrix_miou():
    from harness.judge.metrics import _miou_rows

    rng = np.random.default_rng(2)
    rows = rng.integers(0, 20, (50, 4)).astype(np.float64)
    rows[0] = (5, 0, 0, 0)  # no foreground anywhere
    for row, value in zip(rows, _miou_rows(rows)):
        assert value == pytest.approx(miou(row.reshape(2, 2)))


def test_conformance_is_mean_and_max_absolute_difference():
    mean, worst = conformance(np.array([[0.1, 0.5], [1.0, 0.0]]), np.array([[0.0, 0.5], [0.7, 0.2]]))
    assert mean == pytest.approx((0.1 + 0.0 + 0.3 + 0.2) / 4) and worst == pytest.approx(0.3)
    with pytest.raises(ValueError, match="shape"):
        conformance(np.zeros((2, 2)), np.zeros((2, 3)))
