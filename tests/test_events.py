"""study.events: each kind is written as one JSON line, kind first, with exactly its TypedDict's
fields, and the parent's reader gets back what the child wrote."""

from __future__ import annotations

import io
import json
import typing
from pathlib import Path

from study import events as ev
from study.orchestra.event_reader import EventReader
from study.result import CurvePoint


def fields(event_type: type) -> set[str]:
    return set(typing.get_type_hints(event_type))


def test_each_kind_has_exactly_its_fields_kind_first() -> None:
    stream = io.StringIO()
    writer = ev.Events(stream)
    point = CurvePoint(elapsed_s=1.5, tokens=512, train_loss=4.0, val_loss=4.1, eval_tokens=256)
    writer.emit(ev.progress(elapsed_s=0.5, budget=2.0, step=3, train_loss=2.5, lr=1e-3, tok_s=9.0))
    writer.emit(ev.curve(frac=0.25, point=point, val_bpb=1.9))
    writer.emit(ev.final(val_loss=2.25, val_bpb=1.0))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["kind"] for e in lines] == [ev.PROGRESS, ev.CURVE, ev.FINAL]
    assert all(next(iter(e)) == "kind" for e in lines)
    for event, kind in zip(lines, (ev.ProgressEvent, ev.CurveEvent, ev.FinalEvent), strict=True):
        assert set(event) == fields(kind)
    assert lines[1] == {"kind": "curve", "frac": 0.25, **point, "val_bpb": 1.9}
    ev.Events().emit(ev.final(val_loss=1.0, val_bpb=1.0))  # no stream: nothing written, no error


def test_a_curve_point_of_an_older_result_has_no_eval_tokens() -> None:
    old = CurvePoint(elapsed_s=1.0, tokens=8, train_loss=3.0, val_loss=None)
    assert set(ev.curve(frac=1.0, point=old)) == fields(ev.CurveEvent) - {"eval_tokens", "val_bpb"}


def test_the_parent_reads_what_the_child_wrote(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    reader = EventReader(path)
    with open(path, "w") as f:
        ev.Events(f).emit(ev.final(val_loss=2.0, val_bpb=0.9))
    assert reader.read() == [{"kind": "final", "val_loss": 2.0, "val_bpb": 0.9}]
