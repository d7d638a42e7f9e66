"""Tests for adlib.claims: the verdict wording, column order and type checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from adlib.claims import COLUMNS, Claim, claims_table


def _claim(holds: object, name: str = "c") -> Claim:
    return Claim(claim=name, source="seed 000, 4.2", measured="0.5 vs 0.4", holds=holds, data="synthetic")


def test_table_columns_and_verdicts() -> None:
    table = claims_table([_claim(True, "a"), _claim(False, "b"), _claim(None, "c")])
    assert list(table.columns) == list(COLUMNS)
    assert table["holds"].tolist() == ["holds", "does not hold", "not checked"]
    assert table["claim"].tolist() == ["a", "b", "c"]
    assert table.loc[0, "source"] == "seed 000, 4.2"
    assert table.loc[0, "data"] == "synthetic"


def test_verdict_computed_from_numbers() -> None:
    a, b = np.float64(0.7), np.float64(0.6)
    claim = _claim(a > b)  # numpy bool, as a notebook comparison gives
    assert claim.holds is True
    assert claims_table([claim])["holds"].tolist() == ["holds"]


def test_empty_table_keeps_columns() -> None:
    table = claims_table([])
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 0


def test_holds_must_be_bool_or_none() -> None:
    with pytest.raises(TypeError, match="holds must be True, False or None"):
        _claim("yes")
    with pytest.raises(TypeError, match="holds must be True, False or None"):
        _claim(1)


def test_claim_is_frozen_and_table_rejects_others() -> None:
    claim = _claim(True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.holds = False  # type: ignore[misc]
    with pytest.raises(TypeError, match="Claim objects"):
        claims_table([{"claim": "x"}])  # type: ignore[list-item]


def test_verdict_helpers_treat_missing_numbers_as_unchecked() -> None:
    from adlib.claims import all_of, data_label, fmt, greater, number

    assert greater(0.7, 0.6) is True
    assert greater(np.float32(0.5), 0.6) is False
    assert greater(None, 0.6) is None
    assert greater(float("nan"), 0.6) is None
    assert number("x") is None and number(np.int64(3)) == 3.0
    assert all_of(True, True) is True
    assert all_of(True, None) is None
    assert all_of(None, False) is False
    assert fmt(None) == "n/a" and fmt(0.12345) == "0.123"
    assert data_label(True, "MVTec", "hazelnut") == "synthetic MVTec hazelnut stand-in"
    assert data_label(False, "DAGM", "Class8") == "real DAGM Class8"


def test_show_displays_every_text_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    from adlib import claims

    seen = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: seen.append(obj.to_html()))
    long = "a claim that is much longer than pandas' default column width of fifty characters"
    claims.show(claims_table([_claim(True, long)]))
    assert long in seen[0]
