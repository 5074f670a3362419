"""Analysis commands that show per-token perplexity or loss over trials of several vocabularies
say, in one note line, that those numbers do not compare across vocabularies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import analysis_db
import pandas as pd
import pytest
from analysis_db import make_study_db, url

from analysis.selection import vocab_note
from analysis.views.compare import run_compare
from analysis.views.curves import run_curves
from analysis.views.frontier import run_frontier
from analysis.views.scaling_law import run_scaling_law

NOTE = "per-token loss and perplexity do not compare across vocabularies"


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("vocabs")
    one = url(make_study_db(folder / "one.db"))
    plain = analysis_db.trial_attrs

    def two_vocabularies(i: int, label: str, **kwargs: Any) -> dict[str, Any]:
        attrs = plain(i, label, **kwargs)
        attrs["config"]["model"]["vocab_size"] = (1024, 4096)[i % 2]
        return attrs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analysis_db, "trial_attrs", two_vocabularies)
        mixed = url(make_study_db(folder / "mixed.db"))
    return {"one": one, "mixed": mixed}


def test_the_note_names_the_vocabularies() -> None:
    trials = pd.DataFrame({"config.model.vocab_size": [1024, 4096, 1024, None]})
    note = vocab_note(trials)
    assert note is not None and note.startswith("note: these trials use 2 vocabularies")
    assert "(1024, 4096)" in note and NOTE in note
    assert vocab_note(trials.iloc[[0, 2]]) is None
    assert vocab_note(pd.DataFrame({"number": [1]})) is None  # trials without a config


def test_commands_note_mixed_vocabularies_in_per_token_metrics(
    dbs: dict[str, str], tmp_path: Path
) -> None:
    for study, expected in (("one", False), ("mixed", True)):
        storage = dbs[study]
        texts = {
            "compare": run_compare(storage=storage, study_name="cpu-300s", baseline=False),
            "frontier": run_frontier(storage=storage, study_name="cpu-300s", baseline=False),
            "curves": run_curves(
                storage=storage,
                study_name="cpu-300s",
                plot_path=tmp_path / f"{study}.png",
                baseline=False,
            ),
            "law": run_scaling_law(storage=storage, study_name="cpu-300s", grid="coarse"),
        }
        for name, text in texts.items():
            assert (NOTE in text) is expected, (study, name)
    bpb = run_compare(storage=dbs["mixed"], study_name="cpu-300s", metric="bpb", baseline=False)
    assert NOTE not in bpb  # bits per byte compare across vocabularies: no note
    front = run_frontier(storage=dbs["mixed"], study_name="cpu-300s", metric="bpb", baseline=False)
    assert NOTE not in front
