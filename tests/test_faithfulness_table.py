"""scripts/faithfulness_table.py: mean ± sample std over runs, and the 10–90 % deletion drop."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "faithfulness_table.py"


def load_script():
    spec = importlib.util.spec_from_file_location("faithfulness_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_result(comp: float, curve: list[float]) -> dict:
    method = {"comprehensiveness": comp, "sufficiency": 0.1, "naopc_comprehensiveness": 0.5,
              "kendall_tau_loo": 0.2, "deletion_curve": curve}
    return {"curve": [0, 10, 50, 90, 100], "methods": {"grad_input": method},
            "seconds": {"total": 12.0}}


def test_mean_std_and_drop_over_runs(tmp_path, capsys):
    table = load_script()
    for i, comp in enumerate((0.2, 0.4)):
        folder = tmp_path / f"seed{i}" / "faithfulness"
        folder.mkdir(parents=True)
        (folder / "faithfulness.json").write_text(json.dumps(
            fake_result(comp, [0.9, 0.7, 0.5, 0.3, 0.5])))
    assert table.main(["--group", "m", str(tmp_path / "seed0"), str(tmp_path / "seed1")]) == 0
    out = capsys.readouterr().out
    # comprehensiveness: mean 0.3, sample std sqrt(((0.1)^2 * 2) / 1) = 0.1414
    assert "| m | grad_input | 0.300 ± 0.141 |" in out
    # drop over 10, 50, 90 %: mean of 0.9-0.7, 0.9-0.5, 0.9-0.3 = 0.4 (0 and 100 % left out)
    summary = table.summarise([fake_result(0.2, [0.9, 0.7, 0.5, 0.3, 0.5])])
    assert summary["grad_input"]["drop_10_90"] == pytest.approx((0.4, 0.0))


def test_missing_json_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="no faithfulness.json"):
        load_script().main(["--group", "m", str(tmp_path)])
