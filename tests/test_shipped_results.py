"""The README's Results commands run on the shipped ``study.db`` as they are written: no training,
every study they name present, every file they name written."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from analysis_db import REPO, run_cli

README = REPO / "README.md"
SHIPPED = REPO / "study.db"


def results_commands() -> list[list[str]]:
    """The ``python -m analysis.*`` lines of the bash blocks in the README's Results section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("python -m analysis."):
                commands.append(shlex.split(line))
    return commands


def test_the_results_section_names_commands_of_shipped_studies() -> None:
    commands = results_commands()
    assert len(commands) >= 4
    names = {cmd[cmd.index("--study-name") + 1] for cmd in commands if "--study-name" in cmd}
    assert {"ladder-dense-cpu-300s", "ladder-gpu-h200-300s"} <= names


@pytest.mark.parametrize("command", results_commands(), ids=lambda c: " ".join(c[2:5]))
@pytest.mark.slow
def test_a_results_command_runs_on_the_shipped_database(command: list[str], tmp_path: Path) -> None:
    shutil.copy(SHIPPED, tmp_path / "study.db")  # the default storage, as in a fresh clone
    before = set(tmp_path.iterdir())
    result = run_cli(command[2], *command[3:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() or set(tmp_path.iterdir()) - before
    for flag in ("--plot", "--out", "--json", "--csv", "--throughput-plot"):
        if flag in command:
            written = tmp_path / command[command.index(flag) + 1]
            assert written.is_file() and written.stat().st_size > 0, flag
