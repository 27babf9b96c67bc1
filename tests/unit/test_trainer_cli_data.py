"""The pipeline and tune CLIs turn --symbols/--source/--path into TrainConfig overrides alike."""

from __future__ import annotations

import argparse

import pytest
from trainer.config import add_source_args, cli_data_overrides

pytestmark = pytest.mark.unit


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", default=None)
    parser.add_argument("--source", default=None)
    add_source_args(parser)
    return parser.parse_args(list(argv))


def test_symbols_set_the_list_and_the_first_symbol() -> None:
    out = cli_data_overrides(_args("--symbols", "NVDA, AAPL"), {"lr": 0.1})
    assert out == {"lr": 0.1, "symbol": "NVDA", "symbols": ["NVDA", "AAPL"]}


def test_a_packaged_source_name_passes_through_and_the_input_is_not_mutated() -> None:
    given = {"seed": 3}
    out = cli_data_overrides(_args("--source", "bokeh"), given)
    assert out == {"seed": 3, "source": "bokeh"} and given == {"seed": 3}


def test_a_file_source_without_a_path_is_refused() -> None:
    with pytest.raises(SystemExit, match="--source file needs --path"):
        cli_data_overrides(_args("--source", "file"), {})
