"""Tests for adlib.threshold_rules (validation-only rule choice) and its use in experiment.evaluate."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from adlib import experiment, metrics, thresholds
from adlib import threshold_rules as R
from adlib.data.types import Split


def _maps(n: int, seed: int, kind: str = "exp", size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    draw = rng.exponential if kind == "exp" else (lambda s, shape: np.abs(rng.normal(0, s, shape)))
    return np.stack([gaussian_filter(draw(1.0, (size, size)), 1.0) for _ in range(n)]).astype(np.float32)


def test_fit_rules_match_the_estimators() -> None:
    val = _maps(8, 0)
    spec = R.RuleSpec(rate=0.01, min_area=6, region_q=0.75)
    fitted = R.fit_rules(val, spec)
    assert list(fitted) == list(R.RULES)
    assert fitted["quantile"] == thresholds.threshold_from_normal(val, method="quantile", q=0.99)
    assert fitted["k_sigma"].value == pytest.approx(val.mean(dtype=np.float64) + spec.k * val.std(dtype=np.float64))
    assert spec.k == pytest.approx(2.3263, abs=1e-3)  # Gaussian 0.99 quantile
    assert fitted["tail"] == thresholds.threshold_from_normal_tail(val, rate=0.01)
    assert fitted["region"] == thresholds.threshold_from_normal_regions(val, min_area=6, q=0.75)
    per_image = thresholds.region_scores(val, min_area=6)
    assert R.fit_rules(val, spec, per_image=per_image)["region"] == fitted["region"]
    with pytest.raises(thresholds.ThresholdError, match="unknown rule"):
        R.fit_rules(val, spec, rules=("oracle",))
    with pytest.raises(thresholds.ThresholdError, match=r"\(N, H, W\)"):
        R.fit_rules(val[0], spec)


def test_spec_for_maps_sizes_the_region() -> None:
    spec = R.RuleSpec.for_maps((5, 64, 64), rate=0.01)
    assert spec.min_area == round(0.002 * 64 * 64) and spec.rate == 0.01
    assert R.RuleSpec.for_maps((5, 8, 8)).min_area == 2


def test_choice_has_no_place_for_labels_or_masks() -> None:
    for fn in (R.choose_rule, R.all_thresholds, R.fit_rules):
        names = set(inspect.signature(fn).parameters)
        assert not names & {"masks", "labels", "test_maps", "test_masks"}, fn.__name__


def test_a_miscalibrated_rule_is_not_chosen() -> None:
    # heavy (exponential) tails: mean + k sd with a Gaussian k flags far more than the rate
    val = _maps(12, 1, size=64)
    spec = R.RuleSpec.for_maps(val.shape, rate=0.01)
    choice = R.choose_rule(val, spec, seed=0)
    assert choice.rule != "k_sigma"
    assert choice.errors["k_sigma"] > 3 * min(choice.errors["quantile"], choice.errors["tail"])
    flagged = float((val > R.fit_rules(val, spec)["k_sigma"].value).mean())
    assert flagged > 2 * spec.rate  # the reason: it misses its promise on its own data too
    assert set(choice.errors) == set(R.AUTO_RULES) and choice.n_splits == R.N_SPLITS
    assert R.choose_rule(val, spec, seed=0) == choice  # deterministic for a seed


def test_image_max_keeps_defect_free_images_free_of_defect_pixels() -> None:
    val = _maps(21, 8, size=48)
    maxima = val.reshape(len(val), -1).max(axis=1)
    spec = R.RuleSpec.for_maps(val.shape, rate=0.01, image_q=0.9)
    t = R.fit_rules(val, spec)["image_max"]
    assert t.value == pytest.approx(np.quantile(maxima, 0.9)) and t.source == "normal-validation:image-max-q0.9"
    assert (maxima > t.value).mean() == pytest.approx(0.1, abs=0.05)  # ~1 - image_q of the images
    assert t.value > R.fit_rules(val, spec)["quantile"].value  # far stricter than a 1 % pixel rate
    assert R.image_max_threshold(val, 1.0).value == pytest.approx(maxima.max())
    assert "image_max" not in R.choose_rule(val, spec).errors  # not an auto candidate
    checked = R.choose_rule(val, spec, rules=("quantile", "image_max"))  # but checkable as one
    assert set(checked.errors) == {"quantile", "image_max"} and np.isfinite(checked.errors["image_max"])


def test_few_images_fall_back_to_the_first_rule() -> None:
    choice = R.choose_rule(_maps(3, 2), R.RuleSpec())
    assert choice.rule == R.RULES[0] and choice.errors == {}


def test_all_thresholds_auto_is_the_chosen_rule() -> None:
    val = _maps(10, 3, "normal")
    fitted, choice = R.all_thresholds(val, R.RuleSpec.for_maps(val.shape))
    assert set(fitted) == {*R.RULES, "auto"}
    assert fitted["auto"].value == fitted[choice.rule].value
    assert fitted["auto"].source.startswith(fitted[choice.rule].source) and "auto" in fitted["auto"].source
    assert all(t.source.startswith("normal-validation") for t in fitted.values())


def test_rule_table_reports_test_f1_beside_the_oracle() -> None:
    val, test = _maps(8, 4), _maps(6, 5)
    masks = np.zeros(test.shape, bool)
    masks[:3, 10:16, 10:16] = True
    test[masks] += 3.0
    fitted, choice = R.all_thresholds(val, R.RuleSpec.for_maps(val.shape))
    oracle = thresholds.oracle_best_f1_threshold(test, masks)
    oracle_f1 = metrics.pixel_prf(test, masks, oracle.value).f1
    table = R.rule_table(test, masks, fitted, choice, oracle_f1)
    for rule, row in table.items():
        f1 = metrics.pixel_prf(test, masks, fitted[rule].value).f1
        assert row["pixel_f1"] == pytest.approx(f1) and row["threshold"] == fitted[rule].value
        assert row["f1_over_oracle"] == pytest.approx(f1 / oracle_f1)
        assert row["f1_over_oracle"] <= 1 + 1e-9  # nothing honest beats the oracle
    assert table["auto"]["transfer_error"] == choice.errors[choice.rule]


def _evaluate(val: np.ndarray, test: np.ndarray, masks: np.ndarray, **kw) -> experiment.Evaluation:
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(int)
    return experiment.evaluate(
        "toy", scores=test.reshape(len(test), -1).max(axis=1), labels=labels,
        defects=["crack" if y else "good" for y in labels], paths=[f"t{i}.png" for i in range(len(test))],
        val_scores=val.reshape(len(val), -1).max(axis=1), maps=test, masks=masks, val_maps=val, n_boot=0, **kw)


@pytest.fixture()
def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    val, test = _maps(10, 6), _maps(6, 7)
    masks = np.zeros(test.shape, bool)
    masks[:3, 4:12, 4:12] = True
    test[masks] += 2.5
    return val, test, masks


def test_experiment_records_every_rule_and_uses_auto_on_request(toy, tmp_path: Path) -> None:
    val, test, masks = toy
    plain = _evaluate(val, test, masks)  # default: the 0.999 quantile for the results, rules recorded
    assert plain.pixel_threshold.source == "normal-validation:quantile-0.999"
    assert set(plain.rule_table) == {*R.RULES, "auto"}
    auto = _evaluate(val, test, masks, pixel_rule="auto")
    assert auto.pixel_threshold == auto.pixel_thresholds["auto"]
    assert auto.pixel_threshold.value == auto.rule_table["auto"]["threshold"]
    assert auto.metrics["pixel_f1"] == pytest.approx(auto.rule_table["auto"]["pixel_f1"])
    assert set(auto.pixel_thresholds) == {*R.RULES, "auto"}
    params = auto.threshold_params()
    assert params["threshold_rule_auto"] == auto.rule_choice.rule
    assert params["pixel_f1_over_oracle"] == pytest.approx(auto.metrics["pixel_f1"] / auto.oracle_pixel_f1)
    split = Split(dataset="mvtec", category="toy", root=tmp_path, train=[], test=[], has_masks=True, channels=1)
    path = experiment.save(auto, results_dir=tmp_path, notebook="01_toy", split=split, synthetic=True,
                           profile="smoke", seed=0, run="s0-abcdef", train_seconds=None, params={})
    saved = json.loads(Path(path).read_text())["params"]
    assert saved["threshold_rules"]["auto"]["pixel_f1"] == pytest.approx(auto.metrics["pixel_f1"])
    assert saved["threshold_rule_auto"] == auto.rule_choice.rule
    off = _evaluate(val, test, masks, compare_rules=False)
    assert off.rule_table == {} and "threshold_rules" not in off.threshold_params()


def test_test_masks_never_move_the_honest_thresholds(toy) -> None:
    val, test, masks = toy
    a = _evaluate(val, test, masks, pixel_rule="auto")
    other = np.zeros_like(masks)
    other[3:, 20:28, 20:28] = True
    b = _evaluate(val, test, other, pixel_rule="auto")
    assert {k: t.value for k, t in a.pixel_thresholds.items()} == {k: t.value for k, t in b.pixel_thresholds.items()}
    assert a.rule_choice == b.rule_choice


def test_experiment_can_report_the_image_max_rule(toy) -> None:
    val, test, masks = toy
    ev = _evaluate(val, test, masks, pixel_rule="image_max",
                   rule_spec=R.RuleSpec.for_maps(val.shape, image_q=0.9))
    assert ev.pixel_threshold == R.image_max_threshold(val, 0.9)
    assert ev.metrics["pixel_f1"] == pytest.approx(ev.rule_table["image_max"]["pixel_f1"])
    assert ev.rule_table["image_max"]["transfer_error"] is None  # auto never weighed it
    assert set(ev.pixel_thresholds) == {*R.RULES, "auto"}
