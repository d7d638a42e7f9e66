"""Results files (GUIDE section 2): write, validate, read, collect into comparison tables.

Each model notebook ends with :func:`save_results`, which writes
``RESULTS_DIR/<notebook>/<method>-<dataset>-<category>-<run_id>.json`` and, beside it,
``.scores.csv`` (``path,label,defect,score``; one row per test image). ``run_id`` is
``s<seed>-<hash of the settings>`` (:func:`adlib.experiment.run_id`), so runs that differ in seed
or settings never overwrite each other; the record also carries the adlib version (with the git
commit when known) and a UTC timestamp. Everything is validated before anything is written, and
both files are written atomically (temporary file + ``os.replace``).

Files written before run identities existed (no ``run_id``) still load: their run fields are
``None`` and the comparison marks them as older runs.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adlib import metrics as M
from adlib.bootstrap import CI_KEYS, check_intervals
from adlib.config import PROFILES

__all__ = [
    "ResultsError", "METRIC_KEYS", "PER_DEFECT_KEYS", "RESULT_KEYS", "RUN_KEYS", "OPTIONAL_KEYS", "CI_COLUMNS",
    "results_name", "version_string", "THRESHOLD_SOURCES", "save_results", "load_results", "load_scores",
    "validate_results", "collect_results", "results_table", "image_metrics_from_scores", "metrics_summary",
]

METRIC_KEYS: tuple[str, ...] = (
    "image_auroc", "image_aupr", "pixel_auroc", "aupro", "pixel_f1", "pixel_precision", "pixel_recall",
)
PER_DEFECT_KEYS: tuple[str, ...] = ("pixel_f1", "pixel_precision", "pixel_recall")
RESULT_KEYS: tuple[str, ...] = (
    "notebook", "method", "dataset", "category", "synthetic", "profile", "seed", *METRIC_KEYS,
    "threshold", "threshold_source", "per_defect", "train_seconds", "params",
    "run_id", "adlib_version", "created",
)
RUN_KEYS: tuple[str, ...] = ("run_id", "adlib_version", "created")
"""The run identity (required when writing; ``None`` in files written before it existed)."""
OPTIONAL_KEYS: tuple[str, ...] = ("model_bundle", "ci95", "bootstrap")
"""Keys a record may carry beyond :data:`RESULT_KEYS`; ``ci95`` (``{metric: [lo, hi]}``) and ``bootstrap``
(n, seed, level, stratified_by, unit) come together (:mod:`adlib.bootstrap`)."""
CI_COLUMNS: tuple[str, ...] = tuple(f"{k}_{end}" for k in CI_KEYS for end in ("lo", "hi"))
""":func:`collect_results` flattens ``ci95`` into these columns (NaN where a file has none)."""
_RUN_ID = re.compile(r"^s-?\d+-[0-9a-f]{6,16}$")
THRESHOLD_SOURCES: tuple[str, ...] = ("normal-validation", "oracle-test", "fixed")
"""Allowed prefixes of ``threshold_source`` (e.g. ``"normal-validation:quantile-0.99"``,
``"fixed:tau=0.2"``, ``"oracle-test"``)."""
SCORE_COLUMNS: tuple[str, ...] = ("path", "label", "defect", "score")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_AUROC_TOL = 1e-4


class ResultsError(ValueError):
    """A results file (or the data for one) does not follow GUIDE section 2."""


# --------------------------------------------------------------------------- validation


def _fraction(name: str, value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ResultsError(f"{where}: {name} must be a number in [0, 1] or None, got {value!r}.")
    v = float(value)
    if math.isnan(v):
        return None
    if not 0.0 <= v <= 1.0:
        hint = " It looks like a percentage: store fractions (0.91, not 91)." if 1 < v <= 100 else ""
        raise ResultsError(f"{where}: {name} = {v} is outside [0, 1].{hint}")
    return v


def _name(key: str, value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ResultsError(
            f"{where}: {key} must be a non-empty name of letters, digits, '_', '.', '+', '-' "
            f"(it becomes part of a file name), got {value!r}."
        )
    return value


def _jsonable(obj: Any, where: str, path: str = "params") -> Any:
    """Convert numpy scalars / Paths / tuples to JSON types; reject the rest."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) else f
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, where, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, where, f"{path}[{i}]") for i, v in enumerate(obj)]
    raise ResultsError(f"{where}: {path} holds a {type(obj).__name__}, which JSON cannot store.")


def validate_results(record: Mapping[str, Any], where: str = "results") -> dict[str, Any]:
    """Check a results record against GUIDE section 2 and return it normalised (key order, NaN->None).

    Raises:
        ResultsError: naming the first problem found (missing/unknown keys, types, ranges).
    """
    record = {**{k: None for k in RUN_KEYS if k not in record}, **record}  # older files
    missing = [k for k in RESULT_KEYS if k not in record]
    unknown = [k for k in record if k not in RESULT_KEYS and k not in OPTIONAL_KEYS]
    if missing or unknown:
        raise ResultsError(
            f"{where}: missing keys {missing} / unknown keys {unknown}; expected exactly {list(RESULT_KEYS)}."
        )
    out: dict[str, Any] = {}
    for key in ("notebook", "method", "dataset", "category"):
        out[key] = _name(key, record[key], where)
    if not isinstance(record["synthetic"], (bool, np.bool_)):
        raise ResultsError(f"{where}: synthetic must be true/false, got {record['synthetic']!r}.")
    out["synthetic"] = bool(record["synthetic"])
    if record["profile"] not in PROFILES:
        raise ResultsError(f"{where}: profile must be one of {PROFILES}, got {record['profile']!r}.")
    out["profile"] = record["profile"]
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ResultsError(f"{where}: seed must be an integer, got {seed!r}.")
    out["seed"] = int(seed)
    for key in METRIC_KEYS:
        out[key] = _fraction(key, record[key], where)
    thr, src = record["threshold"], record["threshold_source"]
    if thr is not None:
        if isinstance(thr, bool) or not isinstance(thr, (int, float, np.integer, np.floating)):
            raise ResultsError(f"{where}: threshold must be a number or None, got {thr!r}.")
        thr = float(thr)
        if not math.isfinite(thr):
            raise ResultsError(f"{where}: threshold must be finite, got {thr}.")
        if not isinstance(src, str) or not src.startswith(THRESHOLD_SOURCES):
            raise ResultsError(
                f"{where}: threshold_source must start with one of {THRESHOLD_SOURCES} "
                f"(thresholds tuned on test data are 'oracle-test'), got {src!r}."
            )
    elif src is not None:
        raise ResultsError(f"{where}: threshold_source {src!r} given without a threshold.")
    if thr is None and any(out[k] is not None for k in ("pixel_f1", "pixel_precision", "pixel_recall")):
        raise ResultsError(f"{where}: pixel F1/precision/recall need the threshold they were computed at.")
    out["threshold"], out["threshold_source"] = thr, src
    per_defect = record["per_defect"]
    if not isinstance(per_defect, Mapping):
        raise ResultsError(f"{where}: per_defect must be a dict {{defect: {{pixel_f1, ...}}}}, got {per_defect!r}.")
    pd_out: dict[str, dict[str, float | None]] = {}
    for defect, vals in per_defect.items():
        if not isinstance(vals, Mapping) or set(vals) != set(PER_DEFECT_KEYS):
            raise ResultsError(
                f"{where}: per_defect[{defect!r}] must have exactly the keys {list(PER_DEFECT_KEYS)}, got {vals!r}."
            )
        pd_out[str(defect)] = {k: _fraction(f"per_defect[{defect!r}].{k}", vals[k], where) for k in PER_DEFECT_KEYS}
    out["per_defect"] = pd_out
    ts = record["train_seconds"]
    if ts is not None:
        if isinstance(ts, bool) or not isinstance(ts, (int, float, np.integer, np.floating)) or not ts >= 0:
            raise ResultsError(f"{where}: train_seconds must be a number >= 0 or None, got {ts!r}.")
        ts = float(ts)
    out["train_seconds"] = ts
    if not isinstance(record["params"], Mapping):
        raise ResultsError(f"{where}: params must be a dict, got {record['params']!r}.")
    out["params"] = _jsonable(record["params"], where)
    run, version, created = (record[k] for k in RUN_KEYS)
    if run is not None and (not isinstance(run, str) or not _RUN_ID.match(run)):
        raise ResultsError(f"{where}: run_id must look like 's0-3f9a1c' (seed and settings hash), got {run!r}.")
    if run is not None and not run.startswith(f"s{out['seed']}-"):
        raise ResultsError(f"{where}: run_id {run!r} does not match seed {out['seed']}.")
    for key, value in (("adlib_version", version), ("created", created)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ResultsError(f"{where}: {key} must be a non-empty string or None, got {value!r}.")
    if created is not None:
        try:
            datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            raise ResultsError(f"{where}: created must be an ISO 8601 time, got {created!r}.") from None
    out["run_id"], out["adlib_version"], out["created"] = run, version, created
    if record.get("model_bundle") is not None:
        out["model_bundle"] = _name("model_bundle", record["model_bundle"], where)
    if (record.get("ci95") is None) != (record.get("bootstrap") is None):
        raise ResultsError(f"{where}: ci95 and bootstrap (how the intervals were computed) come together.")
    if record.get("ci95") is not None:
        try:
            out["ci95"], out["bootstrap"] = check_intervals(record["ci95"], _jsonable(record["bootstrap"], where))
        except ValueError as exc:
            raise ResultsError(f"{where}: {exc}") from None
    return out


def _validate_scores(scores: pd.DataFrame, where: str) -> pd.DataFrame:
    if not isinstance(scores, pd.DataFrame):
        raise ResultsError(f"{where}: scores must be a pandas DataFrame with columns {list(SCORE_COLUMNS)}.")
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ResultsError(f"{where}: scores lacks columns {missing}; expected {list(SCORE_COLUMNS)}.")
    df = scores.loc[:, list(SCORE_COLUMNS)].copy()
    if df.empty:
        raise ResultsError(f"{where}: scores has no rows (one per test image expected).")
    if not df["label"].isin([0, 1]).all():
        raise ResultsError(f"{where}: scores.label must be 0 (good) or 1 (defective).")
    df["label"] = df["label"].astype(int)
    score = pd.to_numeric(df["score"], errors="coerce")
    if not np.isfinite(score.to_numpy(dtype=float)).all():
        raise ResultsError(f"{where}: scores.score must be finite numbers (found NaN/inf/text).")
    df["score"] = score.astype(float)
    df["path"] = df["path"].astype(str)
    df["defect"] = df["defect"].astype(str)
    bad = df[(df["label"] == 0) != (df["defect"] == "good")]
    if len(bad):
        raise ResultsError(
            f"{where}: label 0 must go with defect 'good' and label 1 with a defect name; "
            f"first offending row: {bad.iloc[0].to_dict()}."
        )
    return df


def _check_consistency(rec: Mapping[str, Any], df: pd.DataFrame, where: str) -> None:
    """The stored image AUROC/AUPR must be recomputable from the scores CSV."""
    again = image_metrics_from_scores(df)
    for key in ("image_auroc", "image_aupr"):
        a, b = rec[key], again[key]
        if a is None:
            continue
        if b is None or abs(a - b) > _AUROC_TOL:
            raise ResultsError(
                f"{where}: {key} = {a} but the scores give {b}; save the scores the metric was computed from."
            )


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- public API


def save_results(
    results_dir: str | os.PathLike,
    *,
    notebook: str, method: str, dataset: str, category: str,
    synthetic: bool, profile: str, seed: int,
    metrics: Mapping[str, Any],
    scores: pd.DataFrame,
    threshold: float | None = None,
    threshold_source: str | None = None,
    per_defect: Mapping[str, Mapping[str, float | None]] | None = None,
    train_seconds: float | None = None,
    params: Mapping[str, Any] | None = None,
    run_id: str,
    created: str | None = None,
    ci95: Mapping[str, Any] | None = None, bootstrap: Mapping[str, Any] | None = None,
    model_bundle: str | None = None,
) -> Path:
    """Validate, then write the results JSON and its scores CSV (GUIDE section 2).

    Args:
        results_dir: the notebook's ``RESULTS_DIR``.
        notebook: notebook stem, e.g. ``"01_hazelnut_autoencoder"``.
        method, dataset, category: identify the run (``conv-ae-l2``, ``mvtec``, ``hazelnut``).
        synthetic: True if the synthetic stand-in data were used.
        profile: ``"smoke" | "cpu" | "paper"``.
        seed: random seed.
        metrics: the seven metric keys (:data:`METRIC_KEYS`), fractions or None; a ``"per_defect"``
            entry (as returned by :func:`metrics_summary`) is used when ``per_defect`` is not given.
        scores: one row per test image, columns ``path, label, defect, score``.
        threshold: the threshold behind the pixel F1/precision/recall (a float or a
            :class:`adlib.thresholds.Threshold`, whose source is then used).
        threshold_source: e.g. ``"normal-validation:quantile-0.99"``.
        per_defect: ``{defect: {pixel_f1, pixel_precision, pixel_recall}}``.
        train_seconds: training wall time.
        params: the run's settings (epochs, image_size, ...); JSON-serialisable.
        run_id: ``s<seed>-<settings hash>`` (:func:`adlib.experiment.run_id`); part of the
            file name.
        created: ISO 8601 UTC time of the run (default: now).
        ci95, bootstrap: optional 95 % intervals ``{metric: (lo, hi) | None}`` and their description
            (:func:`adlib.bootstrap.evaluation_intervals`); both or neither.
        model_bundle: file name of the model bundle beside the JSON (:mod:`adlib.bundle`).

    Returns:
        Path of the JSON file.
    """
    where = f"save_results({notebook}/{method}-{dataset}-{category}-{run_id})"
    m = dict(metrics)
    if "per_defect" in m:
        pd_from_metrics = m.pop("per_defect")
        per_defect = per_defect if per_defect is not None else pd_from_metrics
    unknown = sorted(set(m) - set(METRIC_KEYS))
    missing = sorted(set(METRIC_KEYS) - set(m))
    if unknown or missing:
        raise ResultsError(
            f"{where}: metrics has unknown keys {unknown} and lacks {missing}; expected {list(METRIC_KEYS)} "
            "(None where not computable)."
        )
    if hasattr(threshold, "source") and hasattr(threshold, "value"):
        threshold_source = threshold_source or threshold.source
        threshold = threshold.value
    record = {
        "notebook": notebook, "method": method, "dataset": dataset, "category": category,
        "synthetic": synthetic, "profile": profile, "seed": seed, **m,
        "threshold": threshold, "threshold_source": threshold_source,
        "per_defect": per_defect if per_defect is not None else {},
        "train_seconds": train_seconds, "params": params if params is not None else {},
        "run_id": run_id, "adlib_version": version_string(),
        "created": created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **({"ci95": ci95, "bootstrap": bootstrap} if ci95 is not None or bootstrap is not None else {}),
        **({"model_bundle": model_bundle} if model_bundle is not None else {}),
    }
    if run_id is None:
        raise ResultsError(f"{where}: run_id is required (adlib.experiment.run_id(seed, settings)).")
    rec = validate_results(record, where)
    df = _validate_scores(scores, where)
    _check_consistency(rec, df, where)
    json_path = Path(results_dir) / notebook / results_name(method, dataset, category, run_id, ".json")
    _atomic_write(json_path.with_name(json_path.stem + ".scores.csv"), df.to_csv(index=False))
    _atomic_write(json_path, json.dumps(rec, indent=2, allow_nan=False) + "\n")
    return json_path


def results_name(method: str, dataset: str, category: str, run_id: str, suffix: str = ".json") -> str:
    """``<method>-<dataset>-<category>-<run_id><suffix>``: the file name of one run's results."""
    return f"{method}-{dataset}-{category}-{run_id}{suffix}"


@lru_cache(maxsize=1)
def version_string() -> str:
    """adlib's version, with ``+g<commit>`` (and ``.dirty``) when running from a git checkout."""
    import adlib
    from adlib.config import repo_root

    version = adlib.__version__
    top = repo_root()
    if top is None or not (top / ".git").exists():
        return version
    try:
        commit = subprocess.run(["git", "-C", str(top), "rev-parse", "--short=7", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(top), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}" if commit else version


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one results JSON (raises :class:`ResultsError` naming the file)."""
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{p}: cannot read results JSON ({exc}).") from exc
    if not isinstance(record, dict):
        raise ResultsError(f"{p}: expected a JSON object.")
    return validate_results(record, str(p))


def load_scores(path: str | os.PathLike) -> pd.DataFrame:
    """Read the ``.scores.csv`` of a results JSON (pass either file's path)."""
    p = Path(path)
    csv = p if p.name.endswith(".scores.csv") else p.with_name(p.stem + ".scores.csv")
    if not csv.is_file():
        raise ResultsError(f"{csv}: scores file missing (every results JSON needs one beside it).")
    df = pd.read_csv(csv, dtype={"path": str, "defect": str}, keep_default_na=False)
    return _validate_scores(df, str(csv))


def image_metrics_from_scores(scores: pd.DataFrame | str | os.PathLike) -> dict[str, float | None]:
    """Recompute image AUROC/AUPR from a scores table or ``.scores.csv`` file."""
    df = scores if isinstance(scores, pd.DataFrame) else load_scores(scores)
    return {
        "image_auroc": M.image_auroc(df["score"].to_numpy(float), df["label"].to_numpy(int)),
        "image_aupr": M.image_aupr(df["score"].to_numpy(float), df["label"].to_numpy(int)),
    }


def collect_results(results_dir: str | os.PathLike, errors: str = "raise") -> pd.DataFrame:
    """One row per results JSON under ``results_dir`` (any depth), metric keys as columns.
    ``ci95`` becomes the :data:`CI_COLUMNS` (NaN without it); ``bootstrap``, ``model_bundle`` stay in the JSON.

    Args:
        results_dir: folder to search.
        errors: ``"raise"`` on an invalid file, or ``"skip"`` it with a warning.
    """
    import warnings

    rows = []
    for p in sorted(Path(results_dir).rglob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            rec = load_results(p)
        except ResultsError as exc:
            if errors == "raise":
                raise
            warnings.warn(str(exc), stacklevel=2)
            continue
        row = {k: v for k, v in rec.items() if k not in ("per_defect", "params", *OPTIONAL_KEYS)}
        for key in CI_KEYS:
            lo, hi = (rec.get("ci95") or {}).get(key) or (np.nan, np.nan)
            row[f"{key}_lo"], row[f"{key}_hi"] = lo, hi
        row["per_defect"] = rec["per_defect"]
        row["params"] = rec["params"]
        row["file"] = str(p)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*RESULT_KEYS, *CI_COLUMNS, "file"])


def results_table(
    df: pd.DataFrame,
    dataset: str | None = None,
    category: str | None = None,
    profile: str | None = None,
    metrics: Sequence[str] = METRIC_KEYS,
    decimals: int = 3,
) -> pd.DataFrame:
    """Comparison table: one row per (dataset, category, method, notebook), chosen metric columns.

    Args:
        df: from :func:`collect_results`.
        dataset, category, profile: optional filters.
        metrics: metric columns to show (``None`` values shown as NaN).
        decimals: rounding for display.
    """
    sel = df
    for key, val in (("dataset", dataset), ("category", category), ("profile", profile)):
        if val is not None:
            sel = sel[sel[key] == val]
    cols = ["dataset", "category", "method", "notebook", "synthetic", "profile", "threshold_source"]
    out = sel.loc[:, cols + list(metrics)].copy()
    for m in metrics:
        out[m] = pd.to_numeric(out[m], errors="coerce").round(decimals)
    return out.sort_values(["dataset", "category", "method", "notebook"]).reset_index(drop=True)


def metrics_summary(
    *,
    scores=None,
    labels=None,
    maps=None,
    masks=None,
    threshold=None,
    defects: Sequence[str] | None = None,
    fpr_limit: float = 0.3,
    n_bins: int = 10_000,
) -> dict[str, Any]:
    """The whole GUIDE metric set in one call, ``None`` for what the inputs cannot support.

    Args:
        scores, labels: (N,) image scores and 0/1 labels -> image AUROC/AUPR.
        maps, masks: (N, H, W) maps and ground truth (None if the dataset has no masks) ->
            pixel AUROC, AUPRO.
        threshold: float or :class:`adlib.thresholds.Threshold` -> pixel F1/precision/recall
            (and per defect when ``defects`` is given).
        defects: (N,) defect names, ``"good"`` for defect-free images.
        fpr_limit: AUPRO integration limit.
        n_bins: pixel threshold grid for large inputs (see :mod:`adlib.metrics`).

    Returns:
        dict with :data:`METRIC_KEYS` and ``"per_defect"``; ready for :func:`save_results`.
    """
    out: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    out["per_defect"] = {}
    if scores is not None and labels is not None:
        out["image_auroc"] = M.image_auroc(scores, labels)
        out["image_aupr"] = M.image_aupr(scores, labels)
    if maps is not None and masks is not None:
        out["pixel_auroc"] = M.pixel_auroc(maps, masks, n_bins=n_bins)
        out["aupro"] = M.aupro(maps, masks, fpr_limit=fpr_limit, n_bins=n_bins)
        if threshold is not None:
            t = float(threshold)
            out.update(M.pixel_prf(maps, masks, t).as_dict("pixel_"))
            if defects is not None:
                out["per_defect"] = M.per_defect_prf(maps, masks, defects, t)
    return out
