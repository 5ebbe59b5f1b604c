"""Stage configs: file, flags, dotted overrides, and one-line errors."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from pangu_cli.config import load_config
from pangu_cli.errors import UserError


@dataclass
class Inner:
    lr: float = 1e-3
    name: str = "a"
    mode: Literal["x", "y"] = "x"
    size: int | None = None


@dataclass
class Outer:
    steps: int = 10
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_file_then_flags_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage:\n  steps: 5\n  inner:\n    lr: 0.1\n    name: file\n")
    cfg = load_config(
        Outer, path, ["inner.lr=3e-4", "flag=true"], {"steps": 7, "inner.size": None}, "stage"
    )
    assert cfg == Outer(steps=7, flag=True, inner=Inner(lr=3e-4, name="file"))


def test_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("steps = 3\n[inner]\nmode = 'y'\n")
    assert load_config(Outer, path) == Outer(steps=3, inner=Inner(mode="y"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("inner.nope=1", "unknown key 'inner.nope'"),
        ("steps=abc", "config steps: 'abc' is not a valid int"),
        ("inner.mode=z", "config inner.mode: 'z' is not one of x, y"),
        ("steps", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_config(Outer, None, [override])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(Outer, bad)


def test_stage_command_layers_file_flags_overrides_and_reports(tmp_path):
    """run_stage_command, the body of every stage command: a flag left out (None) keeps the
    file's value, a flag given beats it, an override beats both; then the stage runs and its
    manifest is reported. A user mistake exits 2."""
    import typer

    from pangu_cli.cli import run_stage_command

    path = tmp_path / "c.yaml"
    path.write_text("stage:\n  steps: 5\n  inner:\n    lr: 0.1\n    name: file\n")
    seen = {}

    def stage(cfg: Outer, out, force: bool = False) -> dict:
        seen["cfg"], seen["out"], seen["force"] = cfg, out, force
        return {"steps": cfg.steps}

    def report(manifest: dict, out) -> None:
        seen["report"] = (manifest, out)

    run_stage_command(
        stage, Outer, "stage", out=tmp_path / "run", config=str(path),
        flags={"steps": None, "inner.name": "flag", "inner.lr": 0.2}, overrides=["inner.lr=3e-4"],
        report=report, force=True,
    )  # fmt: skip
    assert seen["cfg"] == Outer(steps=5, inner=Inner(lr=3e-4, name="flag"))
    assert seen["force"] and seen["report"] == ({"steps": 5}, tmp_path / "run")
    with pytest.raises(typer.Exit) as exit_info:
        run_stage_command(
            stage, Outer, "stage", out=tmp_path, config=None, flags={}, overrides=["steps=x"]
        )
    assert exit_info.value.exit_code == 2
