from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from study.merge import main, merge
from study.storage import schema, store
from study.storage.optuna_store import SharedStudy


def make_study(url: str, name: str, n: int) -> None:
    storage = store.open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name)
    for i in range(n):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": float(i)},
                distributions={"x": optuna.distributions.FloatDistribution(0, 10)},
                value=10.0 - i,
                user_attrs={"params": 1000 * (i + 1)},
            )
        )
    shared = SharedStudy.load(url, name)
    with storage.engine.begin() as conn:
        for t in study.get_trials():
            conn.execute(
                schema.curve.insert(),
                [
                    {
                        "trial_id": shared.trial_id(t.number),
                        "idx": k,
                        "study_name": name,
                        "trial_number": t.number,
                        "elapsed_s": float(k),
                        "tokens": 100 * k,
                        "train_loss": 5.0 - k,
                        "val_loss": 6.0 - k + t.number,
                    }
                    for k in range(3)
                ],
            )
            conn.execute(
                schema.sample.insert().values(
                    trial_id=shared.trial_id(t.number),
                    study_name=name,
                    trial_number=t.number,
                    prompt="Once",
                    text=f"Once {t.number}",
                )
            )


def rows(url: str, name: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = conn.execute(
            sa.select(schema.curve.c.trial_number, schema.curve.c.idx, schema.curve.c.val_loss)
            .where(schema.curve.c.study_name == name)
            .order_by(schema.curve.c.trial_number, schema.curve.c.idx)
        ).all()
    engine.dispose()
    return [tuple(r) for r in out]


@pytest.mark.slow
def test_merge_copies_trials_and_rows(tmp_path: Path) -> None:
    src, dst = f"sqlite:///{tmp_path / 'gpu.db'}", f"sqlite:///{tmp_path / 'main.db'}"
    make_study(src, "gpu", 3)
    make_study(dst, "cpu", 2)  # ids 1..2 taken in dst, so copied trials get new ids
    assert merge(src, dst) == [("gpu", 3)]
    copied = optuna.load_study(study_name="gpu", storage=dst).get_trials()
    assert [t.value for t in copied] == [10.0, 9.0, 8.0]
    assert rows(dst, "gpu") == rows(src, "gpu")
    engine = sa.create_engine(dst)
    with engine.connect() as conn:
        ids = {
            r[0]
            for r in conn.execute(
                sa.select(schema.sample.c.trial_id).where(schema.sample.c.study_name == "gpu")
            )
        }
    shared = SharedStudy.load(dst, "gpu")
    assert ids == {shared.trial_id(t.number) for t in copied}
    assert ids.isdisjoint({SharedStudy.load(dst, "cpu").trial_id(n) for n in range(2)})


def test_merge_refuses_existing_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    make_study(src, "same", 1)
    make_study(dst, "same", 1)
    before = (tmp_path / "b.db").read_bytes()
    with pytest.raises(SystemExit) as exc:
        main([src, dst])
    assert exc.value.code == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "b.db").read_bytes() == before
