"""`make train` never narrows what the running system trades without saying so.

The export writes ``paper_trading/paper_trading_config.json``; execution reads that file (or the
example next to it when it does not exist). The new file must keep every symbol execution traded
before, add the model's, print each change and keep the replaced file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from trainer import paper_export

from shared.paper_config import dump_paper_config, load_paper_config, parse_paper_config
from tests.model_artifacts import baseline_folder

pytestmark = pytest.mark.unit

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "paper_trading" / "paper_trading_config.example.json"
)


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(paper_export, "say", lambda stage, text, **kw: lines.append(text))
    return lines


def _artifact(tmp_path: Path, name: str = "model_20260101000000") -> Path:
    folder = tmp_path / "best_models" / name
    shutil.copytree(baseline_folder(), folder)
    return folder


def test_first_export_keeps_the_example_symbols_and_says_what_changed(
    tmp_path: Path, said: list[str]
) -> None:
    root = tmp_path / "paper_trading"
    root.mkdir()
    shutil.copyfile(EXAMPLE, root / EXAMPLE.name)
    traded_before = load_paper_config(EXAMPLE).symbols  # what execution trades without the file
    target, path, changes = paper_export.write_paper_trading(root, _artifact(tmp_path), "AAPL")
    config = load_paper_config(path)
    assert config.symbols == traded_before  # AAPL was already there: NVDA is not dropped
    assert config.model_dir == f"paper_trading/models/{target.name}"
    assert changes == [f'model_dir: "" -> "paper_trading/models/{target.name}"']
    assert any("model_dir" in line and "next start" in line for line in said)


def test_new_symbol_is_added_never_replacing_and_the_old_file_is_kept(
    tmp_path: Path, said: list[str]
) -> None:
    root = tmp_path / "paper_trading"
    root.mkdir()
    old = parse_paper_config(b'{"symbols": ["NVDA", "MSFT"], "max_position": 7}')
    (root / "paper_trading_config.json").write_bytes(dump_paper_config(old))
    _, path, changes = paper_export.write_paper_trading(root, _artifact(tmp_path), "AAPL")
    config = load_paper_config(path)
    assert config.symbols == ["NVDA", "MSFT", "AAPL"] and config.max_position == 7
    assert 'symbols: ["NVDA", "MSFT"] -> ["NVDA", "MSFT", "AAPL"]' in changes
    assert load_paper_config(root / "paper_trading_config.previous.json") == old
    assert any("symbols" in line and "AAPL" in line for line in said)


def test_same_model_symbol_and_folder_again_is_reported_unchanged(
    tmp_path: Path, said: list[str]
) -> None:
    root = tmp_path / "paper_trading"
    artifact = _artifact(tmp_path)
    paper_export.write_paper_trading(root, artifact, "AAPL")
    before = json.loads((root / "paper_trading_config.json").read_text())
    _, path, changes = paper_export.write_paper_trading(root, artifact, "AAPL")
    assert changes == [] and json.loads(path.read_text()) == before
    assert said[-1].endswith("unchanged")
