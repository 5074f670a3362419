"""``--help`` of every analysis command: examples, defaults, units, no reST markup."""

from __future__ import annotations

import argparse

import pytest

from analysis import compare, crossover, curves, frontier, predict, report, scaling_law, trials

PARSERS = {
    "crossover": crossover,
    "frontier": frontier,
    "scaling_law": scaling_law,
    "compare": compare,
    "report": report,
    "curves": curves,
    "trials": trials,
    "predict": predict,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_has_examples_defaults_and_no_markup(name: str) -> None:
    parser: argparse.ArgumentParser = PARSERS[name].build_parser()
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text and ":class:" not in text
    examples = text.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  python -m analysis.{name}") for line in examples)
    for example in examples:  # each example parses as written
        parser.parse_args(example.split("#", 1)[0].split()[3:])
    assert "(default" in text and "most recently run" in text
    for action in parser._actions:  # every option says what it is
        assert action.help, action.option_strings


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("crossover", "SECONDS"),
        ("report", "nats per token"),
        ("curves", "nats per token"),
        ("scaling_law", "SECONDS"),
        ("trials", "held-out loss in nats/token"),
        ("predict", "SECONDS"),
        ("predict", "nats per token"),
    ],
)
def test_help_names_units(name: str, unit: str) -> None:
    assert unit in " ".join(PARSERS[name].build_parser().format_help().split())
