"""``analysis.views.compare`` and ``python -m analysis.compare``: held-out quality by positional scheme or
MLP, per device and at equal size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from analysis_db import make_study_db, run_cli, url

from study.errors import UsageError


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


# Seven trials on one CPU and one on a GPU, by hand: (number, layers, width, pos, mlp, val_ppl).
# Trial 6 lost its val_ppl attribute and is read from the trial's value (29).
CHOICES = [
    (0, 2, 64, "learned", "gelu", 30.0),
    (1, 2, 64, "rope", "gelu", 28.0),
    (2, 2, 64, "rope", "swiglu", 27.0),
    (3, 4, 64, "learned", "swiglu", 25.0),
    (4, 4, 64, "rope", "gelu", 26.0),
    (5, 1, 32, "learned", "gelu", 40.0),
    (6, 3, 64, "rope", "swiglu", float("nan")),
    (7, 2, 64, "rope", "gelu", 9.0),
]


class ChoiceData:
    study_name = "choices"

    def complete(self) -> Any:
        import pandas as pd

        rows = [
            {
                "number": n,
                "arch": "gpt",
                "n_layer": layers,
                "d_model": d,
                "pos": pos,
                "mlp": mlp,
                "val_ppl": ppl,
                "value": 29.0 if n == 6 else ppl,
                "params": 1e4 * layers * d,
                "lr": 1e-3 * (n + 1),
                "device": "cuda" if n == 7 else "cpu",
                "device_name": "NVIDIA H100" if n == 7 else "cpu x86_64",
            }
            for n, layers, d, pos, mlp, ppl in CHOICES
        ]
        return pd.DataFrame(rows)


def test_compare_by_scheme_and_at_equal_size_matches_the_hand_count() -> None:
    from analysis.views.compare import compare_for, compare_text

    [pos] = compare_for(ChoiceData(), by="pos")  # type: ignore[arg-type]
    assert pos.device == "cpu x86_64"  # the GPU tried rope only: nothing to compare there
    learned, rope = pos.groups
    assert (learned.value, learned.trials, learned.best, learned.best_trial, learned.median) == (
        "learned",
        3,
        25.0,
        3,
        30.0,
    )
    assert (rope.value, rope.trials, rope.best, rope.best_trial, rope.median) == (
        "rope",
        4,
        26.0,
        4,
        27.5,
    )
    assert rope.best_lr == pytest.approx(5e-3) and rope.best_params == 4 * 64 * 1e4
    assert pos.shapes == (
        ("gpt 4x64", {"learned": 25.0, "rope": 26.0}),
        ("gpt 2x64", {"learned": 30.0, "rope": 27.0}),
    )
    assert pos.wins == {"learned": 1, "rope": 1}
    text = compare_text(pos)
    assert "best at equal size: learned at 1 of 2, rope at 1 of 2" in text

    [mlp] = compare_for(ChoiceData(), by="mlp")  # type: ignore[arg-type]
    assert [(g.value, g.best, g.best_trial) for g in mlp.groups] == [
        ("swiglu", 25.0, 3),
        ("gelu", 26.0, 4),
    ]
    assert mlp.wins == {"swiglu": 2, "gelu": 0}
    assert "best at equal size: swiglu at 2 of 2" in compare_text(mlp)

    [cell] = compare_for(ChoiceData(), by="cell")  # type: ignore[arg-type]
    assert [g.value for g in cell.groups] == [
        "learned+swiglu",
        "rope+gelu",
        "rope+swiglu",
        "learned+gelu",
    ]
    assert dict(cell.shapes)["gpt 2x64"] == {
        "learned+gelu": 30.0,
        "rope+gelu": 28.0,
        "rope+swiglu": 27.0,
    }


def test_compare_refuses_a_study_with_one_choice_only() -> None:
    from analysis.views.compare import compare_for

    with pytest.raises(UsageError, match="no positional scheme to compare"):
        compare_for(ChoiceData(), by="pos", device="cuda")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--by must be one of"):
        compare_for(ChoiceData(), by="depth")  # type: ignore[arg-type]


@pytest.mark.slow
def test_compare_cli_on_a_study_writes_json(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "pos.json"
    result = run_cli(
        "analysis.compare",
        "--storage",
        url(db),
        "--by",
        "pos",
        "--device",
        "cpu",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "Held-out perplexity by positional scheme on" in result.stdout
    payload = json.loads(out.read_text())
    [c] = payload["comparisons"]
    assert {g["value"] for g in c["groups"]} == {"learned", "rope"}
    assert sum(g["trials"] for g in c["groups"]) == 18  # the CPU trials of the fixture
    bad = run_cli(
        "analysis.compare",
        "--storage",
        url(db),
        "--by",
        "pos",
        "--json",
        str(tmp_path / "missing" / "x.json"),
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


class RegData:
    """Two shapes, each tried at three regularisation settings; trial 4's config predates
    dropout (read as 0) and trial 5 stored no config at all (left out)."""

    study_name = "reg"

    def complete(self) -> Any:
        import pandas as pd

        # (number, width, weight decay, dropout, val_bpb)
        cells = [
            (0, 128, 1.0, 0.0, 0.668),
            (1, 128, 1.0, 0.1, 0.650),
            (2, 128, 3.0, 0.0, 0.690),
            (3, 192, 1.0, 0.0, 0.825),
            (4, 192, 0.1, None, 1.100),
            (5, 192, None, None, 0.5),
            (6, 192, 1.0, 0.1, 0.700),
        ]
        rows = [
            {
                "number": n,
                "arch": "gpt",
                "n_layer": 4,
                "d_model": d,
                "pos": "rope",
                "mlp": "swiglu",
                "val_bpb": bpb,
                "value": bpb,
                "params": 1e4 * d,
                "lr": 3e-3,
                "device": "cuda",
                "device_name": "NVIDIA H200",
                "config.weight_decay": wd,
                "config.model.dropout": do,
            }
            for n, d, wd, do, bpb in cells
        ]
        return pd.DataFrame(rows)


def test_compare_by_regularisation_reads_weight_decay_and_dropout_from_the_config() -> None:
    from analysis.views.compare import compare_for, compare_text

    [reg] = compare_for(RegData(), by="reg", metric="bpb")  # type: ignore[arg-type]
    assert [(g.value, g.trials, g.best, g.best_trial) for g in reg.groups] == [
        ("wd1 do0.1", 2, 0.650, 1),
        ("wd1 do0", 2, 0.668, 0),
        ("wd3 do0", 1, 0.690, 2),
        ("wd0.1 do0", 1, 1.100, 4),
    ]
    assert dict(reg.shapes) == {
        "gpt 4x128": {"wd1 do0": 0.668, "wd1 do0.1": 0.650, "wd3 do0": 0.690},
        "gpt 4x192": {"wd0.1 do0": 1.100, "wd1 do0": 0.825, "wd1 do0.1": 0.700},
    }
    assert reg.wins == {"wd1 do0.1": 2, "wd1 do0": 0, "wd3 do0": 0, "wd0.1 do0": 0}
    assert "by regularisation (weight decay, dropout)" in compare_text(reg)


class LadderData:
    """The ladder the grid is compared against: the same two shapes without dropout, and one
    shape the grid never tried."""

    study_name = "ladder"

    def complete(self) -> Any:
        import pandas as pd

        cells = [(0, 128, 0.640), (1, 192, 0.900), (2, 256, 0.400)]  # (number, width, val_bpb)
        rows = [
            {
                "number": n,
                "arch": "gpt",
                "n_layer": 4,
                "d_model": d,
                "pos": "rope",
                "mlp": "swiglu",
                "val_bpb": bpb,
                "value": bpb,
                "params": 1e4 * d,
                "lr": 2e-3,
                "device": "cuda",
                "device_name": "NVIDIA H200",
                "config.weight_decay": 1.0,
                "config.model.dropout": 0.0,
            }
            for n, d, bpb in cells
        ]
        return pd.DataFrame(rows)


def test_compare_with_another_study_pools_its_trials_and_names_their_study() -> None:
    from analysis.views.compare import compare_for, compare_text

    [reg] = compare_for(
        RegData(),  # type: ignore[arg-type]  # duck-typed: only .trials and .study_name are read
        by="reg",
        metric="bpb",
        also=[LadderData()],  # type: ignore[list-item]
    )
    assert reg.studies == ("reg", "ladder")
    # wd1 do0 now holds the grid's trials 0 and 3 and the ladder's three; its best is the
    # ladder's 256-wide trial 2, which no other setting tried.
    assert [(g.value, g.trials, g.best, g.best_trial, g.best_study) for g in reg.groups] == [
        ("wd1 do0", 5, 0.400, 2, "ladder"),
        ("wd1 do0.1", 2, 0.650, 1, "reg"),
        ("wd3 do0", 1, 0.690, 2, "reg"),
        ("wd0.1 do0", 1, 1.100, 4, "reg"),
    ]
    assert dict(reg.shapes)["gpt 4x128"]["wd1 do0"] == 0.640  # the ladder's, better than 0.668
    assert "gpt 4x256" not in dict(reg.shapes)  # tried with one setting only
    assert reg.wins == {"wd1 do0": 1, "wd1 do0.1": 1, "wd3 do0": 0, "wd0.1 do0": 0}
    text = compare_text(reg)
    assert "(9 complete trials of 2 studies)" in text  # trial 5 has no config
    assert text.splitlines()[2].endswith("ladder")
    with pytest.raises(UsageError, match="named twice"):
        compare_for(RegData(), by="reg", also=[RegData()])  # type: ignore[arg-type,list-item]


@pytest.mark.slow
def test_compare_cli_refuses_a_missing_with_study_in_one_line(db: Path) -> None:
    bad = run_cli("analysis.compare", "--storage", url(db), "--by", "pos", "--with", "no-such")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "no-such" in bad.stderr
