"""``analysis.predict`` reads a ladder as one network per size: the best configuration of each
size stands for it (its seeds together), and a study that is not a ladder is refused."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from analysis_db import count_params, trial_attrs, url

from analysis import predict
from analysis.figures import plots
from analysis.figures.ladder_plot import ladder_figure, size_points
from analysis.figures.seeds import SEED_LABEL
from analysis.load import StudyData, load_study
from study.config import ModelConfig
from study.errors import UsageError

# (d_model, lr, pos, seed, final held-out loss): five rungs; the largest tried at two learning
# rates (3e-3 is better), the 96-wide one with two seeds.
LADDER = [
    (64, 3e-3, "rope", 0, 3.4),
    (96, 3e-3, "rope", 0, 3.1),
    (96, 3e-3, "rope", 1, 3.3),
    (128, 3e-3, "rope", 0, 2.9),
    (192, 3e-3, "rope", 0, 2.7),
    (256, 1e-3, "rope", 0, 2.6),
    (256, 3e-3, "rope", 0, 2.2),
]


def study_of(path: Path, rows: list[tuple[int, float, str, int, float]]) -> StudyData:
    storage = url(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="ladder", storage=storage)
    rng = np.random.default_rng(0)
    for i, (d_model, lr, pos, seed, loss) in enumerate(rows):
        attrs: dict[str, Any] = trial_attrs(
            i, "cpu (2 threads)", d_model=d_model, n_layer=2, seed=seed, rng=rng
        )
        model = {**attrs["config"]["model"], "pos": pos, "mlp": "swiglu"}
        attrs["config"] = {**attrs["config"], "model": model, "lr": lr}
        params, body = count_params(ModelConfig(**model))
        attrs.update(lr=lr, pos=pos, mlp="swiglu", params=params, params_nonembedding=body)
        attrs.update(val_loss=loss, val_ppl=math.exp(loss))
        study.add_trial(optuna.trial.create_trial(value=attrs["val_ppl"], user_attrs=attrs))
    return load_study(storage, "ladder")


def test_the_best_configuration_of_a_size_stands_for_it(tmp_path: Path) -> None:
    data = study_of(tmp_path / "ladder.db", LADDER)
    [(label, (frame, picks))] = predict.ladders(data).items()
    assert sorted(frame["number"]) == [0, 1, 2, 3, 4, 6]  # trial 5 (lr 1e-3) is not fitted
    big = picks[-1]
    assert (big.trials, big.configurations, big.others) == ((6,), 2, (5,))
    assert big.loss == pytest.approx(2.2)
    seeds = picks[1]
    assert seeds.trials == (1, 2) and seeds.loss == pytest.approx(3.2)  # the mean of 2 seeds
    [res] = predict.predict_for(data, k=1, grid="coarse").values()
    assert not isinstance(res, str)
    # The held-out largest size is measured as its best configuration, not the mean of both
    # learning rates (2.4), and so is the 96-wide size (3.2, its two seeds' mean).
    assert [h.measured for h in res.held_out] == [pytest.approx(2.2)]
    text = predict.predict_text({label: res}, {label: picks})
    assert "trial 6, loss 2.2000, best of 2 configurations (also tried: trials 5)" in text
    assert "trials 1, 2 (mean of 2 seeds), loss 3.2000" in text


def test_a_study_that_is_not_a_ladder_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The 128-wide size tried with two positional schemes (rope and ALiBi: one size, two
    # networks), as a positions grid or a random search would.
    rows = [*LADDER[:4], (128, 3e-3, "alibi", 0, 2.8), *LADDER[4:]]
    data = study_of(tmp_path / "grid.db", rows)
    with pytest.raises(UsageError, match="is not a ladder on cpu"):
        predict.ladders(data)
    out = tmp_path / "predict.json"
    with pytest.raises(SystemExit) as exc:
        predict.main(["--storage", data.storage, "--grid", "coarse", "--json", str(out)])
    assert exc.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "size 918k holds 2 networks (model.pos is alibi, rope)" in err[0], err[0]
    one = study_of(tmp_path / "one.db", [LADDER[0]])
    with pytest.raises(UsageError, match="have 1 size, a law of size needs several"):
        predict.ladders(one)


def test_the_ladder_figure_draws_a_size_at_its_mean_over_seeds(tmp_path: Path) -> None:
    data = study_of(tmp_path / "ladder.db", LADDER)
    [(label, (frame, _))] = predict.ladders(data).items()
    points = predict.ladder_points(data, frame)
    finals = points[points["final"]]
    sizes = size_points(finals)
    two = sizes[sizes["n"].eq(2)].iloc[0]
    assert two["y"] == pytest.approx(3.2) and two["sd"] == pytest.approx(math.sqrt(0.02))
    assert sizes["n"].tolist() == [1, 2, 1, 1, 1]
    [res] = predict.predict_for(data, k=1, grid="coarse").values()
    assert not isinstance(res, str)
    fig = ladder_figure(finals, res, label=label)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]  # type: ignore[union-attr]
    assert SEED_LABEL in legend
    out = tmp_path / "ladder.png"
    plots.save(fig, out)
    assert out.stat().st_size > 10_000
    assert isinstance(size_points(pd.DataFrame({"params": [], "loss": []})), pd.DataFrame)
