"""``analysis.frontier --color-by``: the points coloured by dropout, weight decay or any swept
parameter (a legend for few values, a colour bar for many numbers); an unknown name refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from analysis_db import trial_attrs, url

from analysis import frontier
from analysis.load import StudyData, load_study
from analysis.views.frontier import color_column, frontier_for
from study.errors import UsageError


def regularised_study(path: Path, *, lrs: int = 1) -> StudyData:
    """Two rungs at dropout 0, 0.1 and 0.2 (weight decay 1.0, or 3.0 at dropout 0.2), each
    tried ``lrs`` times: 6 x ``lrs`` trials, every one with a learning rate of its own."""
    storage = url(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="reg", storage=storage)
    rng = np.random.default_rng(0)
    i = 0
    for d_model in (64, 128):
        for dropout in (0.0, 0.1, 0.2):
            for _ in range(lrs):
                lr = 1e-3 * 1.25**i
                attrs = trial_attrs(
                    i, "cpu (2 threads)", d_model=d_model, n_layer=2, seed=0, rng=rng
                )
                model = {**attrs["config"]["model"], "dropout": dropout}
                weight_decay = 3.0 if dropout == 0.2 else 1.0
                attrs["config"] = {
                    **attrs["config"],
                    "model": model,
                    "lr": float(lr),
                    "weight_decay": weight_decay,
                }
                attrs.update(lr=float(lr), val_bpb=1.0 + 0.1 * i, val_ppl=math.exp(1.0 + i))
                study.add_trial(optuna.trial.create_trial(value=attrs["val_ppl"], user_attrs=attrs))
                i += 1
    return load_study(storage, "reg")


def _legend(fig: object) -> list[str]:
    legend = fig.axes[0].get_legend()  # type: ignore[attr-defined]
    return [t.get_text() for t in legend.get_texts()]


def test_colour_by_dropout_and_weight_decay_names_each_value(tmp_path: Path) -> None:
    data = regularised_study(tmp_path / "reg.db")
    o = frontier_for(data, metric="bpb", color_by="dropout", budget=None, ratio=20.0, device=None)
    assert o.color_column == "config.model.dropout"
    labels = _legend(o.figure())
    assert {"dropout 0", "dropout 0.1", "dropout 0.2"} <= set(labels)
    o = frontier_for(
        data, metric="bpb", color_by="weight_decay", budget=None, ratio=20.0, device=None
    )
    assert {"weight_decay 1", "weight_decay 3"} <= set(_legend(o.figure()))
    # Any swept config field by its name: lr is config.lr, n_head config.model.n_head.
    assert color_column(o.trials, "lr") == "config.lr"
    assert color_column(o.trials, "n_head") == "config.model.n_head"
    with pytest.raises(UsageError, match=r"a parameter the study sweeps \(d_model, dropout, "):
        color_column(o.trials, "nope")


def test_many_numeric_values_go_on_a_colour_bar(tmp_path: Path) -> None:
    few = regularised_study(tmp_path / "few.db")  # six learning rates: named in the legend
    named = frontier_for(few, metric="bpb", color_by="lr", budget=None, ratio=20.0, device=None)
    assert len(named.figure().axes) == 1
    assert sum(t.startswith("lr 0.00") for t in _legend(named.figure())) == 6
    many = regularised_study(tmp_path / "many.db", lrs=2)  # twelve: on a colour bar
    fig = frontier_for(
        many, metric="bpb", color_by="lr", budget=None, ratio=20.0, device=None
    ).figure()
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "lr"
    assert fig.axes[1].xaxis.get_scale() == "log"  # 1e-3 to 1.2e-2: a decade
    assert not any(t.startswith("lr ") for t in _legend(fig))


def test_an_unknown_colour_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = regularised_study(tmp_path / "reg.db")
    plot = tmp_path / "f.png"
    with pytest.raises(SystemExit) as exc:
        frontier.main(["--storage", data.storage, "--color-by", "colour", "--plot", str(plot)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --color-by must be one of depth, ")
    assert "got 'colour'" in err[0] and not plot.exists()


def test_the_report_refuses_an_unknown_colour_before_writing(tmp_path: Path) -> None:
    from analysis.page.report import run_report

    data = regularised_study(tmp_path / "reg.db")
    out = tmp_path / "report.html"
    with pytest.raises(UsageError, match="got 'colour'"):
        run_report(storage=data.storage, out=out, color_by="colour")
    assert not out.exists()
