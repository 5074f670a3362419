"""Every command README.md and docs/*.md show works as written on the shipped ``study.db``.

The analysis commands run, each from a fresh interpreter, on a copy of ``study.db`` (only the
path ``study.db`` is rewritten to the copy; relative output paths land beside it), and so do the
commands that use a kept model of the shipped studies (``study.generate``, ``study.evaluate`` with
``--storage sqlite:///study.db``), the copy's ``study.checkpoints/`` beside it. The training
commands (``study.run``, ``study.train``) are only parsed by their own argument parsers, since
running them trains. A command that names a study the shipped database does not hold fails here,
so a study renamed or dropped cannot leave a command behind that no longer works.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from analysis_db import REPO, run_cli

SHIPPED = REPO / "study.db"
SHIPPED_URL = "sqlite:///study.db"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TRAINING = ("study.run", "study.train")
KEPT = ("study.generate", "study.evaluate")  # read a study's kept model
CHECKPOINTS = REPO / "study.checkpoints"


@dataclass(frozen=True)
class Block:
    """One fenced shell block of a document: its commands, in order, as argument lists."""

    doc: str
    index: int
    commands: tuple[tuple[str, ...], ...]


def shell_blocks() -> list[Block]:
    """The ``python -m`` lines of every ``bash`` block, continuation lines joined."""
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for index, body in enumerate(re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)):
            commands = []
            for line in body.replace("\\\n", " ").splitlines():
                for part in line.split(" && "):  # pip install -e . && python -m ...
                    part = part.strip()
                    if part.startswith("python -m "):  # other lines (SQL) may not split
                        words = shlex.split(part, comments=True)
                        if len(words) > 2 and words[-2] == ">":  # stdout into a file: run as is
                            words = words[:-2]
                        commands.append(tuple(words))
            if commands:
                blocks.append(Block(str(path.relative_to(REPO)), index, tuple(commands)))
    return blocks


def trained_here(block: Block, command: tuple[str, ...]) -> bool:
    """Whether ``command`` reads a study that a ``study.run`` of its own block makes."""
    made = {n for c in block.commands if c[2] == "study.run" for n in values_of(c, "--study-name")}
    names = set(values_of(command, "--study-name"))
    return bool(names) and names <= made


def runs_on_shipped(block: Block, command: tuple[str, ...]) -> bool:
    if command[2] in KEPT:
        return values_of(command, "--storage") == [SHIPPED_URL]
    return command[2].startswith("analysis.") and not trained_here(block, command)


def analysis_blocks() -> list[Block]:
    return [b for b in shell_blocks() if any(runs_on_shipped(b, c) for c in b.commands)]


def training_commands() -> list[tuple[str, ...]]:
    return [c for b in shell_blocks() for c in b.commands if c[2] in TRAINING]


def shipped_studies() -> set[str]:
    import optuna

    summaries = optuna.get_all_study_summaries(f"sqlite:///{SHIPPED}")
    return {s.study_name for s in summaries}


def values_of(command: tuple[str, ...], flag: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == flag]


def in_repo(word: str) -> str:
    """A relative path to a file of the repository (``study/sample/valid.txt.xz``), made
    absolute, since the commands run beside the database's copy; any other word as it is."""
    return str(REPO / word) if "/" in word and (REPO / word).is_file() else word


def block_id(block: Block) -> str:
    return f"{block.doc}#{block.index}"


def test_the_docs_show_commands_of_the_headline_studies() -> None:
    commands = [c for b in analysis_blocks() for c in b.commands]
    assert len(commands) >= 20
    names = {name for c in commands for name in values_of(c, "--study-name")}
    assert {"recipe-ladder-cpu-300s", "recipe-h200-300s", "ladder-gpu-h200-300s"} <= names
    readme = [b for b in analysis_blocks() if b.doc == "README.md"]
    assert readme, "the README shows no analysis command"
    assert len(training_commands()) >= 5


def test_every_doc_command_names_shipped_studies_and_storage() -> None:
    shipped = shipped_studies()
    for block in shell_blocks():
        for command in block.commands:
            line = " ".join(command)
            assert not any(w.startswith("[") or "<" in w or ">" in w for w in command), line
            names = values_of(command, "--study-name") + values_of(command, "--with")
            if command[2].startswith("analysis.") and trained_here(block, command):
                # a first look: the block trains this study (in runs/study.db), then reads it
                assert "--storage" not in command, line
            elif command[2].startswith("analysis."):
                # the analysis commands' default storage is not where the shipped studies are
                if names or "--storage" in command:
                    assert values_of(command, "--storage") == [SHIPPED_URL], line
                assert set(names) <= shipped, f"{block.doc}: {line}: not in study.db"
            elif runs_on_shipped(block, command):  # a kept model of a shipped study
                assert set(names) <= shipped, f"{block.doc}: {line}: not in study.db"
            elif command[2] in TRAINING:
                # a study started from the docs must never join a shipped one
                assert not set(names) & shipped, f"{block.doc}: {line}: reuses a shipped study"


@pytest.mark.parametrize("command", training_commands(), ids=lambda c: " ".join(c[2:6]))
def test_a_training_command_parses(command: tuple[str, ...]) -> None:
    from sweeps import available

    module = importlib.import_module(command[2])
    args = module.build_parser().parse_args(list(command[3:]))
    sweep = getattr(args, "sweep", None)
    if sweep is not None and not sweep.endswith(".py"):
        assert sweep in available(), sweep


@pytest.mark.slow
@pytest.mark.parametrize("block", analysis_blocks(), ids=block_id)
def test_an_analysis_block_runs_on_the_shipped_database(
    block: Block, tmp_path: Path, cache_dir: Path
) -> None:
    shutil.copy(SHIPPED, tmp_path / "study.db")
    if CHECKPOINTS.is_dir():
        shutil.copytree(CHECKPOINTS, tmp_path / CHECKPOINTS.name)
    copy_url = f"sqlite:///{tmp_path / 'study.db'}"
    for command in block.commands:
        if not runs_on_shipped(block, command):
            continue
        args = [in_repo(copy_url if word == SHIPPED_URL else word) for word in command[3:]]
        before = set(tmp_path.iterdir())
        result = run_cli(command[2], *args, cwd=tmp_path)
        line = " ".join(command)
        assert result.returncode == 0, f"{block.doc}: {line}\n{result.stderr}"
        assert result.stdout.strip() or set(tmp_path.iterdir()) - before, line
        for flag in ("--plot", "--out", "--json", "--throughput-plot"):
            for name in values_of(command, flag):
                written = tmp_path / name
                assert written.is_file() and written.stat().st_size > 0, f"{line}: {flag}"


@pytest.mark.parametrize(
    ("study_name", "number"), [("recipe-ladder-cpu-300s", 6), ("recipe-h200-300s", 0)]
)
def test_each_device_s_best_model_ships_with_its_study(study_name: str, number: int) -> None:
    """The README's samples come from these: the best trial of each answer study, found
    beside the cloned database although it was recorded on the machine that trained it."""
    from study.kept.model import find, read_trials

    kept = find(f"sqlite:///{SHIPPED}", study_name)
    values = {t.number: t.value for t in read_trials(f"sqlite:///{SHIPPED}", study_name)}
    best = min((n for n, v in values.items() if v is not None), key=lambda n: values[n] or 0.0)
    assert kept.number == best == number
    assert kept.stem.parent == CHECKPOINTS / study_name
    assert kept.stem.with_suffix(".safetensors").stat().st_size < 25 * 2**20
