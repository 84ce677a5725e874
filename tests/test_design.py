"""DESIGN.md stays true to the code: its stage table is the one generated from the stage declarations."""

from __future__ import annotations

from pathlib import Path

from lcmodel.pipeline.describe import BEGIN, END, stage_table

DESIGN = Path(__file__).resolve().parents[1] / "DESIGN.md"


def test_design_stage_table_is_current() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "DESIGN.md lost its stage-table markers"
    current = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == stage_table().strip(), (
        "DESIGN.md's stage table is out of date: run `python -m lcmodel.pipeline.describe --write`"
    )


def test_stage_table_lists_every_stage_and_its_keys() -> None:
    from lcmodel.pipeline import STAGES

    table = stage_table()
    for name, st in STAGES.items():
        assert f"| `{name}` |" in table
        for keys in st.settings.config_keys().values():
            for key in keys:
                assert f"`{key}`" in table
