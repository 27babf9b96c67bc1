"""monitor.compare's inputs: PERIOD text, the ledger read-only, model versions, bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from monitor.compare import main
from monitor.compare_inputs import CompareError, find_model, parse_period, read_ledger
from monitor.ledger import Ledger

from tests.model_artifacts import MODELS

pytestmark = pytest.mark.unit


def test_period_text() -> None:
    assert parse_period("") == (None, None)
    assert parse_period("2024-01-02..2024-01-31") == ("2024-01-02", "2024-01-31")
    assert parse_period("..2024-01-31") == (None, "2024-01-31")
    assert parse_period("2024-01-02..") == ("2024-01-02", None)
    with pytest.raises(CompareError, match=r"expected <start>\.\.<end>"):
        parse_period("2024-01-02")
    with pytest.raises(CompareError, match="'someday' is not a date"):
        parse_period("someday..2024-01-31")


def test_ledger_is_read_only_and_named_when_missing(tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="no ledger here"):
        read_ledger(tmp_path / "ledger.sqlite")
    Ledger(str(tmp_path / "ledger.sqlite")).close()
    before = (tmp_path / "ledger.sqlite").stat().st_mtime_ns
    signals, fills = read_ledger(tmp_path / "ledger.sqlite")
    assert signals.empty and fills.empty
    assert (tmp_path / "ledger.sqlite").stat().st_mtime_ns == before
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CompareError, match="cannot read the ledger"):
        read_ledger(tmp_path / "junk.sqlite")


def test_model_versions_are_found_by_folder_name(tmp_path: Path) -> None:
    found = find_model([tmp_path, MODELS], "ma-crossover-10-50-v1")
    assert found == MODELS / "baseline" / "ma-crossover-10-50-v1"
    with pytest.raises(CompareError, match=r"'v99'.*restore its artifact folder"):
        find_model([MODELS], "v99")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "tomorrow"], "PERIOD='tomorrow'"),
        (["--costs", '{"spread_bps": -1}'], "CostModel"),
        (["--costs", '{"tip": 1}'], "CostModel"),
        (["--paper-config", "/nonexistent/paper.json"], "paper.json"),
    ],
)
def test_bad_arguments_exit_2_naming_them(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Ledger(str(tmp_path / "ledger.sqlite")).close()
    base = ["--ledger", str(tmp_path / "ledger.sqlite"), "--store", str(tmp_path / "bars.sqlite")]
    assert main([*base, *args]) == 2
    assert message in capsys.readouterr().err


def test_an_empty_ledger_says_there_is_nothing_to_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Ledger(str(tmp_path / "ledger.sqlite")).close()
    args = ["--ledger", str(tmp_path / "ledger.sqlite"), "--store", str(tmp_path / "bars.sqlite")]
    assert main(args) == 2
    assert "no signals recorded" in capsys.readouterr().err
