"""The analysis commands on a small study database built here with Optuna's own API.

The database holds what the study runner stores: complete trials with every user attribute in
``study.schema.TRIAL_ATTRS``, a failed trial with its reason, and rows in the harness tables. Its
numbers follow known laws (tokens/s = c N^-k per device, loss = E + A/N^alpha + B/D^beta), so
the commands' answers can be checked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import crossover, frontier, report, scaling_law
from analysis.commands import run_frontier, run_scaling_law
from analysis.fits import crossover_n
from analysis.load import load_study
from study.config import ModelConfig, TrainConfig
from study.errors import UsageError
from study.schema import TRIAL_ATTRS

REPO = Path(__file__).resolve().parents[1]
BUDGET = 300.0
DEVICES = {  # label -> (device, c, k, sizes used)
    "cpu (2 threads)": ("cpu", 3.17e8, 0.7, None),
    "NVIDIA H100 80GB HBM3": ("cuda", 5.0e10, 0.55, 6),
}
LAW = {"E": 1.2, "A": 60.0, "alpha": 0.3, "B": 100.0, "beta": 0.3}


def law_loss(n: float, d: float) -> float:
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


def count_params(m: ModelConfig) -> tuple[int, int]:
    d = m.d_model
    hidden = (8 * d) // 3 if m.mlp == "swiglu" else 4 * d
    mlp = (3 if m.mlp == "swiglu" else 2) * d * hidden
    body = m.n_layer * (4 * d * d + mlp + 2 * d) + d
    emb = m.vocab_size * d + (m.seq_len * d if m.pos == "learned" else 0)
    return emb + body, body


def make_study_db(path: Path, *, study_name: str = "cpu-300s", seed: int = 0) -> Path:
    """An SQLite file at ``path`` holding :func:`populate_study`'s study."""
    populate_study(url(path), study_name=study_name, seed=seed)
    return path


def populate_study(storage: str, *, study_name: str, seed: int = 0) -> None:
    """A study with 18 CPU trials, 6 GPU trials and one failed trial, and its harness rows."""
    import optuna
    import sqlalchemy as sa
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from study import schema

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="minimize")
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True),
             "pos": CategoricalDistribution(["learned", "rope"])}
    shapes = [(d, layers) for d in (64, 96, 128, 192, 256, 384) for layers in (2, 4, 6)]
    jobs = [(label, shape) for label in DEVICES for shape in shapes[: DEVICES[label][3]]]
    curves: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for i, (label, (d_model, n_layer)) in enumerate(jobs):
        device, c, k, _ = DEVICES[label]
        pos = ("learned", "rope")[i % 2]
        mlp = ("swiglu", "gelu")[(i // 2) % 2]
        lr = float(10 ** rng.uniform(-3.5, -2.5))
        config = TrainConfig(
            model=ModelConfig(n_layer=n_layer, d_model=d_model, n_head=4, pos=pos, mlp=mlp),
            budget=BUDGET, device=device, lr=lr, batch_size=32, seed=seed,
        )
        params, params_ne = count_params(config.model)
        tps = c * params**-k * math.exp(rng.normal(0, 0.03))
        tokens = int(tps * BUDGET)
        val_loss = law_loss(params, tokens) * math.exp(rng.normal(0, 0.005))
        attrs = {
            "config": config.to_dict(), "arch": "gpt", "n_layer": n_layer, "d_model": d_model,
            "n_head": 4, "pos": pos, "mlp": mlp, "lr": lr, "batch_size": 32, "budget": BUDGET,
            "params": params, "params_nonembedding": params_ne, "flops_per_token": 6 * params,
            "tokens_seen": tokens, "tokens_per_second": tps, "train_seconds": BUDGET,
            "steps": tokens // (32 * 256), "epochs": tokens / 5.3e6, "val_loss": val_loss,
            "val_ppl": math.exp(val_loss), "val_bpb": val_loss / math.log(2) / 4.1,
            "val_is_bound": False, "device": device, "device_name": label,
            "versions": {"python": "3.11", "torch": "2.13.0", "study": "0.1.0"}, "seed": seed,
        }
        assert set(attrs) == set(TRIAL_ATTRS)
        trial = optuna.trial.create_trial(
            params={"lr": lr, "pos": pos}, distributions=dists, value=math.exp(val_loss),
            user_attrs=attrs,
        )
        study.add_trial(trial)
        for j, frac in enumerate((0.2, 0.4, 0.6, 0.8, 1.0)):
            seen = int(tokens * frac)
            point = law_loss(params, seen) * math.exp(rng.normal(0, 0.005))
            curves.append({"idx": j, "trial_number": i, "elapsed_s": BUDGET * frac,
                           "tokens": seen, "train_loss": point * 0.98,
                           "val_loss": None if (i == 3 and j == 2) else point})
        samples.append({"trial_number": i, "prompt": "Once upon a time",
                        "text": f"Once upon a time, model {i} said <b>hi</b> & left."})
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"lr": 0.009, "pos": "rope"},
        distributions=dists,
        user_attrs={"fail_reason": "diverged: loss became nan at step 12", "budget": BUDGET},
    ))

    ids = {t.number: t._trial_id for t in study.get_trials(deepcopy=False)}
    engine = sa.create_engine(storage)
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.execute(sa.select(schema.meta.c.key)).first() is None:
            conn.execute(sa.insert(schema.meta), [{"key": "schema_version",
                                                   "value": str(schema.SCHEMA_VERSION)}])
        conn.execute(sa.insert(schema.curve), [
            {**row, "trial_id": ids[int(row["trial_number"])], "study_name": study_name}
            for row in curves
        ])
        conn.execute(sa.insert(schema.sample), [
            {**row, "trial_id": ids[int(row["trial_number"])], "study_name": study_name}
            for row in samples
        ])
    engine.dispose()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module`` the way a user would (fresh interpreter)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=300)


# -------------------------------------------------------------------------------------- loading


def test_load_study_gives_one_row_per_trial_and_curve_point(db: Path) -> None:
    data = load_study(url(db))  # the only study: no name needed
    assert data.study_name == "cpu-300s"
    assert data.direction == "MINIMIZE"
    trials = data.trials
    assert len(trials) == 25
    assert trials["state"].value_counts().to_dict() == {"COMPLETE": 24, "FAIL": 1}
    for name in set(TRIAL_ATTRS) - {"config", "versions"}:
        assert name in trials.columns, name
    assert {"config.model.n_layer", "config.lr", "versions.torch", "param.lr", "fail_reason",
            "trial_id"} <= set(trials.columns)
    first = trials.iloc[0]
    assert first["config.model.d_model"] == first["d_model"] == 64
    assert first["value"] == pytest.approx(first["val_ppl"])
    failed = trials[trials["state"] == "FAIL"].iloc[0]
    assert failed["fail_reason"] == "diverged: loss became nan at step 12"
    assert math.isnan(failed["value"]) and math.isnan(failed["params"])
    assert len(data.complete()) == 24

    assert len(data.curves) == 24 * 5
    assert data.curves["val_loss"].isna().sum() == 1  # the stored null stays null
    assert data.curves.groupby("trial_number")["tokens"].apply(
        lambda s: s.is_monotonic_increasing).all()
    assert set(data.curves["trial_id"]) == set(trials.loc[trials["state"] == "COMPLETE",
                                                          "trial_id"])
    assert len(data.samples) == 24 and data.samples["prompt"].eq("Once upon a time").all()


def test_loading_never_writes_to_the_database(db: Path) -> None:
    before = digest(db)
    listing = sorted(p.name for p in db.parent.iterdir())
    load_study(url(db), "cpu-300s")
    assert digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == listing


def test_missing_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(UsageError, match="no study database"):
        load_study(url(missing))
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("this is not a database\n" * 20)
    before = digest(text)
    with pytest.raises(UsageError, match="not an SQLite database"):
        load_study(url(text))
    assert digest(text) == before


def test_database_without_optuna_tables_is_refused_untouched(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table things (x integer)")
    before = digest(other)
    with pytest.raises(UsageError, match="holds no Optuna study"):
        load_study(url(other))
    assert digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_study_name_is_required_when_several_and_must_exist(tmp_path: Path) -> None:
    import optuna

    path = make_study_db(tmp_path / "two.db")
    optuna.create_study(study_name="gpu-300s", storage=url(path))
    with pytest.raises(UsageError, match="2 studies.*--study-name: cpu-300s, gpu-300s"):
        load_study(url(path))
    with pytest.raises(UsageError, match="no study named 'nope'.*cpu-300s, gpu-300s"):
        load_study(url(path), "nope")
    assert load_study(url(path), "gpu-300s").trials.empty


def test_newer_harness_schema_is_refused(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from study import schema

    path = make_study_db(tmp_path / "newer.db")
    engine = sa.create_engine(url(path))
    with engine.begin() as conn:
        conn.execute(sa.update(schema.meta).where(schema.meta.c.key == "schema_version")
                     .values(value=str(schema.SCHEMA_VERSION + 1)))
    engine.dispose()
    with pytest.raises(UsageError, match="newer study"):
        load_study(url(path))


def test_load_from_a_postgresql_server() -> None:
    """The same reader on a real server (``.ci/run`` sets the URL; skipped where none is)."""
    import uuid

    import optuna
    import sqlalchemy as sa

    from study import schema

    server = os.environ.get("STUDY_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("STUDY_TEST_POSTGRES_URL is not set")
    name = f"analysis-test-{uuid.uuid4().hex[:12]}"
    try:
        populate_study(server, study_name=name)
        data = load_study(server, name)
        assert len(data.trials) == 25 and len(data.curves) == 120 and len(data.samples) == 24
        assert "N* (20 tokens/param, 300 s) on cpu" in run_frontier(storage=server, study_name=name)
    finally:
        optuna.delete_study(study_name=name, storage=server)
        engine = sa.create_engine(server)
        with engine.begin() as conn:
            for table in (schema.curve, schema.sample):
                conn.execute(sa.delete(table).where(table.c.study_name == name))
        engine.dispose()


# ------------------------------------------------------------------------------------ crossover


def test_crossover_on_study_writes_json_and_plot(db: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_png = tmp_path / "cross.json", tmp_path / "cross.png"
    out_tput = tmp_path / "throughput.png"
    crossover.main(["--storage", url(db), "--device", "cpu", "--json", str(out_json),
                    "--plot", str(out_png), "--throughput-plot", str(out_tput)])
    printed = capsys.readouterr().out
    assert out_png.stat().st_size > 10_000 and out_tput.stat().st_size > 10_000
    result = json.loads(out_json.read_text())
    assert {"n_star", "tokens_at_n_star", "c", "k", "n_star_low", "n_star_high"} <= set(result)
    assert result["device"] == "cpu" and result["budget"] == BUDGET
    # Consistent with its own fit, and close to the law the trials were drawn from.
    assert result["n_star"] == pytest.approx(
        crossover_n(result["c"], result["k"], budget=BUDGET, ratio=20.0))
    truth = crossover_n(3.17e8, 0.7, budget=BUDGET, ratio=20.0)
    assert result["n_star"] == pytest.approx(truth, rel=0.05)
    assert result["n_star_low"] <= result["n_star"] <= result["n_star_high"]
    assert result["k"] == pytest.approx(0.7, abs=0.03)
    assert result["tokens_at_n_star"] == pytest.approx(20 * result["n_star"])
    assert f"N* = {result['n_star']:.4g}" in printed
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000


def test_crossover_on_csv_matches_hand_solved_case(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "machine.csv"
    n = np.geomspace(1e5, 1e7, 6)
    csv.write_text("params,tokens_per_second\n"
                   + "".join(f"{a:.17g},{2e8 * a**-0.5:.17g}\n" for a in n))
    out_json = tmp_path / "x.json"
    crossover.main(["--csv", str(csv), "--budget", "100", "--json", str(out_json)])
    result = json.loads(out_json.read_text())
    assert result["n_star"] == pytest.approx(1e6, rel=1e-9)
    assert result["tokens_at_n_star"] == pytest.approx(2e7, rel=1e-9)
    assert "N* = 1e+06" in capsys.readouterr().out


def test_crossover_needs_a_device_when_the_study_has_several(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "never.json"
    with pytest.raises(SystemExit) as exit_info:
        crossover.main(["--storage", url(db), "--json", str(out_json)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--device" in err
    assert "--device: NVIDIA H100 80GB HBM3, cpu\n" in err
    assert not out_json.exists()


# ------------------------------------------------------------------------------------- frontier


def test_frontier_plots_perplexity_and_bits_per_byte(db: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ppl, bpb = tmp_path / "frontier.png", tmp_path / "frontier_bpb.svg"
    frontier.main(["--storage", url(db), "--plot", str(ppl)])
    text = capsys.readouterr().out
    frontier.main(["--storage", url(db), "--plot", str(bpb), "--metric", "bpb",
                   "--color-by", "pos"])
    assert ppl.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and ppl.stat().st_size > 10_000
    assert b"<svg" in bpb.read_bytes()[:2000]
    # The printed frontier gets strictly better as models grow, and holds the best trial.
    data = load_study(url(db))
    best = data.complete().sort_values("value").iloc[0]
    rows = [line.split() for line in text.splitlines()[2:] if line.split()[0].isdigit()]
    ppls = [float(r[2]) for r in rows]
    assert ppls == sorted(ppls, reverse=True) and len(set(ppls)) == len(ppls)
    assert int(rows[-1][0]) == int(best["number"])
    assert "N* (20 tokens/param, 300 s) on cpu" in text


def test_frontier_on_one_device_only(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_frontier(storage=url(db), device="cpu")
    assert "of 18 complete trials" in run and "NVIDIA" not in run


# ---------------------------------------------------------------------------------- scaling law


def test_scaling_law_on_study_uses_finals_and_curves(db: Path, tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "law.json", tmp_path / "law.png"
    text = run_scaling_law(storage=url(db), json_path=out_json, plot_path=out_png,
                           grid="coarse")
    result = json.loads(out_json.read_text())
    assert list(result) == ["E", "A", "B", "alpha", "beta", "a", "b"]
    # 24 finals + 24 * 5 curve points, less the one stored null.
    assert "on 143 points (119 curve, 24 final)" in text
    assert result["E"] == pytest.approx(LAW["E"], abs=0.2)
    assert result["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)
    assert result["beta"] == pytest.approx(LAW["beta"], abs=0.05)
    assert result["a"] == pytest.approx(result["beta"] / (result["alpha"] + result["beta"]))
    # A prediction per device, beside the 20x heuristic.
    assert text.count("loss-optimal N = ") == 2 and "20x heuristic N* = " in text
    assert out_png.stat().st_size > 10_000


def test_scaling_law_on_csv_prints_the_seven_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e7, 6), np.geomspace(1e6, 1e8, 6)))
    loss = np.array([law_loss(a, b) for a, b in zip(n, d, strict=True)])
    loss *= np.exp(rng.normal(0, 0.003, n.size))
    csv = tmp_path / "points.csv"
    csv.write_text("params,tokens,loss\n" + "".join(
        f"{a:.17g},{b:.17g},{c:.17g}\n" for a, b, c in zip(n, d, loss, strict=True)))
    out_json = tmp_path / "law.json"
    scaling_law.main(["--csv", str(csv), "--json", str(out_json), "--grid", "coarse"])
    result = json.loads(out_json.read_text())
    assert set(result) == {"E", "A", "B", "alpha", "beta", "a", "b"}
    assert result["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)


# ---------------------------------------------------------------------------------------- report


def test_report_is_one_self_contained_page(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    report.main(["--storage", url(db), "--out", str(out), "--grid", "coarse"])
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Frontier (ppl, bpb, by pos), throughput, a crossover per device, the loss law.
    assert page.count('src="data:image/png;base64,') == 7
    assert "src=\"http" not in page and "<script" not in page
    for heading in ("Summary", "Frontier", "Throughput and the Chinchilla crossover",
                    "Loss law", "Samples from the best trials", "Epochs per trial",
                    "Trials that did not complete", "Commands that made this page"):
        assert f"<h2>{heading}" in page, heading
    assert "said &lt;b&gt;hi&lt;/b&gt; &amp; left." in page  # samples, escaped
    assert "diverged: loss became nan at step 12" in page
    assert "python -m analysis.report --storage" in page
    assert "loss-optimal N" in page


# ------------------------------------------------------------------------------------ bad input


BAD_INPUTS = {
    "missing_column": ("analysis.crossover", "--csv", "{tmp}/bad.csv", "--budget", "60",
                       "--json", "{tmp}/out.json", "lacks column(s) tokens_per_second"),
    "unknown_study": ("analysis.scaling_law", "--storage", "{db}", "--study-name", "nope",
                      "--json", "{tmp}/out.json", "no study named 'nope'"),
    "not_a_database": ("analysis.frontier", "--storage", "sqlite:///{tmp}/junk.db", "--plot",
                       "{tmp}/f.png", "is not an SQLite database"),
    "missing_database": ("analysis.report", "--storage", "sqlite:///{tmp}/missing.db", "--out",
                         "{tmp}/r.html", "no study database"),
    "csv_and_storage": ("analysis.crossover", "--csv", "{tmp}/bad.csv", "--storage", "{db}",
                        "--budget", "1", "either --csv or --storage"),
    "bad_plot_suffix": ("analysis.crossover", "--storage", "{db}", "--device", "cpu", "--plot",
                        "{tmp}/cross.txt", "must end in one of: .png, .svg, .pdf"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, db: Path, tmp_path: Path
) -> None:
    (tmp_path / "bad.csv").write_text("params,tok_per_s\n1e6,1e4\n2e6,6e3\n")
    (tmp_path / "junk.db").write_bytes(b"\x00garbage" * 100)
    module, *args, expect = BAD_INPUTS[case]
    args = [a.format(tmp=tmp_path, db=url(db)) for a in args]
    db_digest = digest(db)
    result = run_cli(module, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert expect in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "junk.db"]
    assert digest(db) == db_digest


def test_trials_without_a_steady_state_rate_are_left_out_and_named() -> None:
    import pandas as pd

    from analysis.commands import crossover_for, crossover_text, throughput_points

    frame = pd.DataFrame({"number": [0, 1, 2, 3, 4], "params": [1e5, 2e5, 4e5, 8e5, 1.6e6],
                          "tokens_per_second": [3e4, 2.1e4, 0.0, 1.05e4, float("nan")]})
    n, t, left_out = throughput_points(frame)
    assert n.tolist() == [1e5, 2e5, 8e5] and left_out == (2, 4)
    text = crossover_text(crossover_for("cpu", n, t, budget=60.0, ratio=20.0, left_out=left_out))
    assert "left out trial(s) 2, 4: no steady-state tokens/s" in text


def test_scaling_law_max_epochs_leaves_out_repeated_data(db: Path) -> None:
    from analysis.commands import complete_trials, loss_points

    data = load_study(url(db), None)
    trials = complete_trials(data)
    every = loss_points(data, trials)
    fresh = loss_points(data, trials, max_epochs=1.0)
    assert 0 < len(fresh) < len(every)
    # The corpus of the synthetic study holds 5.3e6 tokens: no kept point saw more.
    assert fresh["tokens"].max() <= 5.3e6 * (1 + 1e-9)
    assert (every["tokens"] > 5.3e6).any()
    with pytest.raises(UsageError, match="max-epochs"):
        run_scaling_law(storage=url(db), max_epochs=1e-12, grid="coarse")


def test_cpu_thread_counts_do_not_split_a_device() -> None:
    import pandas as pd

    from analysis.commands import complete_trials

    class Data:
        study_name = "s"

        def complete(self) -> pd.DataFrame:
            return pd.DataFrame({"device": ["cpu", "cpu", "cuda"],
                                 "device_name": ["cpu x86_64 (1 threads)", "cpu x86_64 (2 threads)",
                                                 "NVIDIA H100 80GB HBM3"]})

    labels = complete_trials(Data()).loc[:, "device_label"].tolist()  # type: ignore[arg-type]
    assert labels == ["cpu x86_64", "cpu x86_64", "NVIDIA H100 80GB HBM3"]


# Seven trials on one CPU and one on a GPU, by hand: (number, layers, width, pos, mlp, val_ppl).
# Trial 6 lost its val_ppl attribute and is read from the trial's value (29).
CHOICES = [(0, 2, 64, "learned", "gelu", 30.0), (1, 2, 64, "rope", "gelu", 28.0),
           (2, 2, 64, "rope", "swiglu", 27.0), (3, 4, 64, "learned", "swiglu", 25.0),
           (4, 4, 64, "rope", "gelu", 26.0), (5, 1, 32, "learned", "gelu", 40.0),
           (6, 3, 64, "rope", "swiglu", float("nan")), (7, 2, 64, "rope", "gelu", 9.0)]


class ChoiceData:
    study_name = "choices"

    def complete(self) -> Any:
        import pandas as pd

        rows = [{"number": n, "arch": "gpt", "n_layer": layers, "d_model": d, "pos": pos,
                 "mlp": mlp, "val_ppl": ppl, "value": 29.0 if n == 6 else ppl,
                 "params": 1e4 * layers * d, "lr": 1e-3 * (n + 1),
                 "device": "cuda" if n == 7 else "cpu",
                 "device_name": "NVIDIA H100" if n == 7 else "cpu x86_64"}
                for n, layers, d, pos, mlp, ppl in CHOICES]
        return pd.DataFrame(rows)


def test_compare_by_scheme_and_at_equal_size_matches_the_hand_count() -> None:
    from analysis.groups import compare_for, compare_text

    [pos] = compare_for(ChoiceData(), by="pos")  # type: ignore[arg-type]
    assert pos.device == "cpu x86_64"  # the GPU tried rope only: nothing to compare there
    learned, rope = pos.groups
    assert (learned.value, learned.trials, learned.best, learned.best_trial, learned.median) == (
        "learned", 3, 25.0, 3, 30.0)
    assert (rope.value, rope.trials, rope.best, rope.best_trial, rope.median) == (
        "rope", 4, 26.0, 4, 27.5)
    assert rope.best_lr == pytest.approx(5e-3) and rope.best_params == 4 * 64 * 1e4
    assert pos.shapes == (("gpt 4x64", {"learned": 25.0, "rope": 26.0}),
                          ("gpt 2x64", {"learned": 30.0, "rope": 27.0}))
    assert pos.wins == {"learned": 1, "rope": 1}
    text = compare_text(pos)
    assert "best at equal size: learned at 1 of 2, rope at 1 of 2" in text

    [mlp] = compare_for(ChoiceData(), by="mlp")  # type: ignore[arg-type]
    assert [(g.value, g.best, g.best_trial) for g in mlp.groups] == [
        ("swiglu", 25.0, 3), ("gelu", 26.0, 4)]
    assert mlp.wins == {"swiglu": 2, "gelu": 0}
    assert "best at equal size: swiglu at 2 of 2" in compare_text(mlp)

    [cell] = compare_for(ChoiceData(), by="cell")  # type: ignore[arg-type]
    assert [g.value for g in cell.groups] == [
        "learned+swiglu", "rope+gelu", "rope+swiglu", "learned+gelu"]
    assert dict(cell.shapes)["gpt 2x64"] == {"learned+gelu": 30.0, "rope+gelu": 28.0,
                                             "rope+swiglu": 27.0}


def test_compare_refuses_a_study_with_one_choice_only() -> None:
    from analysis.groups import compare_for

    with pytest.raises(UsageError, match="no positional scheme to compare"):
        compare_for(ChoiceData(), by="pos", device="cuda")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--by must be one of"):
        compare_for(ChoiceData(), by="depth")  # type: ignore[arg-type]


def test_compare_cli_on_a_study_writes_json(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "pos.json"
    result = run_cli("analysis.compare", "--storage", url(db), "--by", "pos", "--device", "cpu",
                     "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "Held-out perplexity by positional scheme on" in result.stdout
    payload = json.loads(out.read_text())
    [c] = payload["comparisons"]
    assert {g["value"] for g in c["groups"]} == {"learned", "rope"}
    assert sum(g["trials"] for g in c["groups"]) == 18  # the CPU trials of the fixture
    bad = run_cli("analysis.compare", "--storage", url(db), "--by", "pos", "--json",
                  str(tmp_path / "missing" / "x.json"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
