"""The induction experiment's data (repeated spans) and probe (repeated random tokens), on a model
whose previous-token and induction heads are planted by setting its weights."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.attention import MultiHeadAttention
from attnlab.errors import InputError
from attnlab.tasks.lm.probe import (
    ProbeRecord,
    phase_change,
    read_probe,
    repeat_probe,
    repeated_tokens,
)
from attnlab.tasks.lm.repeats import RepeatedSpans, repeated_window

V, P = 64, 40  # vocabulary (large: few chance repeats), positions
D = V + P + V + V  # token | position | previous token (written by L0) | copied token (by L1)


class PlantedCopier(nn.Module):
    """Attention only, causal. L0.H0 attends to the previous position and writes its token into
    the third slot; L1.H0 matches the current token against it and copies the token found into
    the fourth slot, which the logits read: a perfect induction circuit. Heads 1 are uniform."""

    def __init__(self, c: float = 12.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList([MultiHeadAttention(D, 2, d_k=P, d_v=V, bias=False),
                                     MultiHeadAttention(D, 2, d_k=V, d_v=V, bias=False)])
        with torch.no_grad():
            for layer in self.layers:
                for proj in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
                    proj.weight.zero_()
            prev, ind = self.layers
            prev.q_proj.weight[:P, V:V + P] = c * torch.eye(P)  # q_i = c e_i
            prev.k_proj.weight[1:P, V:V + P - 1] = c * torch.eye(P - 1)  # k_j = c e_(j+1)
            prev.v_proj.weight[:V, :V] = torch.eye(V)  # the token
            prev.out_proj.weight[V + P:V + P + V, :V] = torch.eye(V)  # into the third slot
            ind.q_proj.weight[:V, :V] = c * torch.eye(V)  # the current token
            ind.k_proj.weight[:V, V + P:V + P + V] = c * torch.eye(V)  # the previous token
            ind.v_proj.weight[:V, :V] = torch.eye(V)  # the token found
            ind.out_proj.weight[V + P + V:, :V] = torch.eye(V)  # into the fourth slot

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        x = torch.cat([F.one_hot(ids, V).float(),  # (B, L, V)
                       F.one_hot(torch.arange(n), P).float().expand(len(ids), n, P),
                       torch.zeros(len(ids), n, 2 * V)], -1)  # (B, L, D)
        for layer in self.layers:
            x = x + layer(x, is_causal=True).output  # (B, L, D)
        return 8.0 * x[..., V + P + V:]  # (B, L, V): the copied token


def test_repeated_window_copies_a_span_to_a_later_random_place():
    generator = torch.Generator().manual_seed(0)
    pool = torch.arange(100, 1100)  # 1000 tokens: chance repeats are rare
    gaps = set()
    for _ in range(50):
        w = repeated_window(pool, 65, generator)
        assert w.shape == (65,) and bool(((w >= 100) & (w < 1100)).all())
        # the longest span seen twice, and how far apart
        best = (0, 0)
        for i in range(65):
            for j in range(i + 1, 65):
                k = 0
                while j + k < 65 and w[i + k] == w[j + k] and i + k < j:
                    k += 1
                best = max(best, (k, j - i))
        assert 65 // 8 <= best[0] < 65 // 2 + 1
        gaps.add(best[1])
    assert len(gaps) > 10  # the distance changes from window to window


def _windows(n: int, C: int) -> list[dict[str, torch.Tensor]]:
    x = torch.arange(n * (C + 1)).view(n, C + 1) % 7
    return [{"input_ids": x[:, :-1], "labels": x[:, 1:]}]


def test_repeated_spans_replace_a_share_of_rows_deterministically():
    batches = _windows(400, 16)
    mixed = RepeatedSpans(batches, 0.25, range(50, 60), seed=3)
    first = next(iter(mixed))
    assert torch.equal(first["input_ids"], next(iter(mixed))["input_ids"])  # same epoch: same
    replaced = (first["input_ids"] >= 50).all(-1)  # (B,)
    assert 0.15 < replaced.float().mean() < 0.35
    assert torch.equal(first["input_ids"][~replaced], batches[0]["input_ids"][~replaced])
    # labels stay the next tokens of the replaced rows
    assert torch.equal(first["input_ids"][replaced][:, 1:], first["labels"][replaced][:, :-1])
    mixed.set_epoch(1)
    assert not torch.equal(first["input_ids"], next(iter(mixed))["input_ids"])
    assert torch.equal(next(iter(RepeatedSpans(batches, 0.0, [1, 2])))["input_ids"],
                       batches[0]["input_ids"])
    with pytest.raises(InputError, match="repeat share must be a number in \\[0, 1\\], got 1.5"):
        RepeatedSpans(batches, 1.5, [1, 2])


def test_probe_finds_the_planted_circuit_and_its_losses():
    model = PlantedCopier()
    half, pool = 12, list(range(V))
    record = repeat_probe(model, pool, half=half, sequences=8, seed=1, step=7)
    assert record.step == 7
    assert record.induction_head == "L1.H0" and record.induction > 0.85
    assert record.previous_head == "L0.H0" and record.previous > 0.95
    # the losses, computed here from the model's logits on the same tokens
    ids = repeated_tokens(pool, half, 8, seed=1)
    assert torch.equal(ids[:, :half], ids[:, half:])
    with torch.no_grad():
        logits = model(ids)  # (B, 2·half, V)
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    assert record.first_half_loss == pytest.approx(float(loss[:, :half - 1].mean()), rel=1e-5)
    assert record.repeat_loss == pytest.approx(float(loss[:, half:].mean()), rel=1e-5)
    assert record.repeat_loss < 0.5 < 4.0 < record.first_half_loss


def test_in_context_score_of_the_probe_is_late_minus_early_loss():
    model = PlantedCopier()
    natural = repeated_tokens(list(range(V)), 17, 4, seed=2)[:, :33]  # (4, 33): C = 32
    record = repeat_probe(model, list(range(V)), half=8, sequences=2, natural=natural)
    with torch.no_grad():
        logits = model(natural[:, :-1])  # (4, 32, V)
    loss = F.cross_entropy(logits.transpose(1, 2), natural[:, 1:], reduction="none")  # (4, 32)
    assert record.in_context == pytest.approx(float(loss[:, 31].mean() - loss[:, 4].mean()),
                                              abs=1e-5)
    assert record.in_context < 0  # the last position is inside the repeat: copied


def test_phase_change_and_reading_back(tmp_path):
    rows = [ProbeRecord(s, x, "L1.H0", 0.9, "L0.H0", 4.1, 4.0, None, s / 10)
            for s, x in ((100, 0.1), (200, 0.49), (300, 0.5), (300, 0.6), (400, 0.9))]
    (tmp_path / "probe.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    read = read_probe(tmp_path)
    assert [r.step for r in read] == [100, 200, 300, 400] and read[2].induction == 0.6
    assert phase_change(read).step == 300
    assert phase_change(read[:2]) is None
    assert read_probe(tmp_path / "none") == []


# --- the experiment, end to end on a tiny text -------------------------------------------------

def test_induction_experiment_runs_trains_probes_and_reports(tmp_path, capsys):
    from attnlab.cli.dispatch import main

    text = tmp_path / "tiny.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    out = tmp_path / "exp"
    code = main(["experiment", "induction", "--data", str(text), "--out", str(out),
                 "--seeds", "2", "--max-steps", "12", "--probe-every", "5", "--quiet",
                 "--d-model", "16", "--context", "16"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "layers-1" in printed and "layers-2" in printed and "goal (a two-layer" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [v["name"] for v in summary["variants"]] == ["layers-1", "layers-2"]
    for variant in summary["variants"]:
        assert variant["options"] == {"n_layers": int(variant["name"][-1])}
        for run in variant["runs"]:
            curve = run["probe_curve"]
            assert [row[0] for row in curve] == [5, 10, 12]  # every 5 steps and at the end
            assert run["induction"] == curve[-1][2]
    config = json.loads((out / "layers-2" / "seed1" / "last" / "config.json").read_text())
    assert config["model"]["attention_only"] and config["data"]["repeat_share"] == 1.0
    assert (out / "induction.png").stat().st_size > 0 and (out / "report.md").exists()
    # a second call reuses every finished run
    assert main(["experiment", "induction", "--data", str(text), "--out", str(out),
                 "--seeds", "2", "--max-steps", "12", "--probe-every", "5", "--quiet",
                 "--d-model", "16", "--context", "16"]) == 0
    assert capsys.readouterr().err.count("(reused)") == 4


def test_the_experiment_kind_and_a_command_only_one_task_offers_pick_the_task(tmp_path):
    from attnlab.cli.dispatch import task_of

    assert task_of(["experiment", "induction", "--out", "x"])[0].name == "lm"
    assert task_of(["experiment", "heads", "--data", "sst2"])[0].name == "classification"
    assert task_of(["experiment", "heads", "--task", "translation"])[0].name == "translation"
    assert task_of(["generate", str(tmp_path), "ROMEO:"])[0].name == "lm"
    assert task_of(["translate", str(tmp_path), "Ein Hund"])[0].name == "translation"
