"""Decay analysis against decays known in closed form, the model's own decay_and_key, and the plots' figures."""

from __future__ import annotations

import csv
import json
import math
import random

import numpy as np
import pytest
import torch

from decaylab.analysis import (
    collect_log_decays,
    decay_stats,
    half_life,
    plot_half_life_distribution,
    plot_head_heatmap,
    plot_median_decay_by_layer,
    write_csv,
    write_json,
)
from decaylab.decay.fixed import tnl_log_decay
from decaylab.model import build_model, make_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATS = ("min", "q25", "median", "q75", "max")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster than two on a shared 2-core machine."""
    torch.set_num_threads(1)
    yield


def micro(seed=0, **design):
    torch.manual_seed(seed)
    return build_model(make_config("micro", **design)).eval()


def token_batches(n=3, B=2, T=24, vocab=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (B, T), generator=g) for _ in range(n)]


def zero_projection_sd(p_per_channel: np.ndarray):
    """Vector SD with f = 0: λ = σ(Δ) per channel, Δ set so that λ_c = p_c."""
    model = micro(decay="sd-0.9", decay_granularity="vector")
    with torch.no_grad():
        for block in model.model.layers:
            for lin in block.attn.f_proj:
                lin.weight.zero_()
            block.attn.decay.offset.copy_(torch.from_numpy(np.log(p_per_channel / (1 - p_per_channel))))
    return model


def test_tnl_stats_equal_the_closed_form():
    model = micro(decay="tnl", decay_granularity="scalar")
    cfg = model.config
    stats = decay_stats(model, token_batches(), name="tnl", progress=False)
    assert len(stats.heads) == cfg.num_hidden_layers * cfg.num_heads and stats.num_layers == cfg.num_hidden_layers
    for row in stats.heads:
        g = float(tnl_log_decay(cfg.num_heads, row["layer"], cfg.num_hidden_layers)[row["head"]].float())
        assert row["tokens"] == row["values"] == 3 * 2 * 24
        for s in STATS:
            assert row[f"decay_{s}"] == pytest.approx(math.exp(g), rel=1e-12)
            assert row[f"half_life_{s}"] == pytest.approx(-math.log(2) / g, rel=1e-12)
    for layer, row in enumerate(stats.layers):
        g = tnl_log_decay(cfg.num_heads, layer, cfg.num_hidden_layers).float().double()
        assert row["decay_min"] == pytest.approx(g.min().exp().item()) and row["decay_max"] == pytest.approx(g.max().exp().item())
        assert row["decay_median"] == pytest.approx(np.quantile(g.exp().numpy(), 0.5, method="inverted_cdf"))
        assert row["tokens"] == 144 and row["values"] == 144 * cfg.num_heads


def test_sd_with_zero_projection_has_decay_p_per_channel():
    cfg = make_config("micro")
    H, K = cfg.num_heads, cfg.head_dim
    p = np.linspace(0.5, 0.99, H * K)
    stats = decay_stats(zero_projection_sd(p), token_batches(n=2), name="sd", progress=False)
    tokens = 2 * 2 * 24
    for row in stats.heads:
        expected = np.repeat(p[row["head"] * K:(row["head"] + 1) * K], tokens)
        assert row["values"] == tokens * K
        for s, q in zip(STATS, (0, 0.25, 0.5, 0.75, 1)):
            assert row[f"decay_{s}"] == pytest.approx(np.quantile(expected, q, method="inverted_cdf"), rel=1e-6)
            assert row[f"half_life_{s}"] == pytest.approx(-math.log(2) / math.log(row[f"decay_{s}"]), rel=1e-5)
    assert stats.layers[0]["decay_median"] == pytest.approx(np.quantile(p, 0.5, method="inverted_cdf"), rel=1e-6)
    # the plain SD-p initialization with a zeroed projection decays at exactly p
    model = micro(decay="sd-0.9", decay_granularity="scalar")
    for block in model.model.layers:
        torch.nn.init.zeros_(block.attn.f_proj.weight)
    plain = decay_stats(model, token_batches(n=1), progress=False)
    assert all(row["decay_min"] == pytest.approx(0.9, rel=1e-6) == row["decay_max"] for row in plain.heads)


def test_half_life_is_minus_ln2_over_log_decay():
    lam = np.array([0.5, 0.9, 0.99, 0.999999, 1.0])
    h = half_life(np.log(lam))
    np.testing.assert_allclose(h[:-1], -np.log(2) / np.log(lam[:-1]))
    np.testing.assert_allclose(lam[:-1] ** h[:-1], 0.5)
    assert h[-1] == math.inf
    assert half_life(torch.tensor([-math.log(2)])).item() == pytest.approx(1.0)


@pytest.mark.parametrize("design", [{"decay": "hgrn2", "decay_granularity": "vector"},
                                    {"decay": "gla", "decay_granularity": "scalar", "positional": "tpe"}])
def test_collected_decays_are_what_the_layer_computes(design):
    """The hook sees exactly decay_and_key of the attention input (after TPE, with HGRN2's lower bound)."""
    model = micro(**design)
    batch = token_batches(n=1)[0]
    inputs = []
    hooks = [b.attn_norm.register_forward_hook(lambda m, a, out: inputs.append(out)) for b in model.model.layers]
    collected = collect_log_decays(model, [batch], progress=False)
    for h in hooks:
        h.remove()
    bounds = None if model.model.lower_bounds is None else model.model.lower_bounds()
    with torch.no_grad():
        for layer, (block, x) in enumerate(zip(model.model.layers, inputs)):
            attn = block.attn
            if attn.tpe is not None:
                x = x + attn.tpe(x, None, None, False)[0]
            g, _ = attn.decay_and_key(x, lower_bound=bounds)  # [B, T, H] or [B, T, H, K]
            g = g.reshape(*g.shape[:3], -1).permute(2, 0, 1, 3).reshape(attn.H, -1)
            np.testing.assert_allclose(collected[layer], g.double().numpy(), rtol=1e-6, atol=1e-9)


def test_padding_is_left_out_of_the_statistics():
    model = micro(decay="gla", decay_granularity="vector")
    a, b = torch.randint(0, 512, (1, 10)), torch.randint(0, 512, (1, 6))
    padded = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], dim=1)])
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :4] = 0
    both = collect_log_decays(model, [(padded, mask)], progress=False)
    alone = [np.concatenate(parts, axis=1) for parts in zip(collect_log_decays(model, [a], progress=False),
                                                              collect_log_decays(model, [b], progress=False))]
    for got, want in zip(both, alone):
        assert got.shape == want.shape == (4, 16 * 16)
        np.testing.assert_allclose(np.sort(got, axis=1), np.sort(want, axis=1), rtol=1e-5, atol=1e-7)
    stats = decay_stats(model, [(padded, mask)], progress=False)
    assert stats.layers[0]["tokens"] == 16


def test_writers_and_plots(tmp_path):
    cfg = make_config("micro")
    L, H = cfg.num_hidden_layers, cfg.num_heads
    family = [decay_stats(micro(decay="tnl", decay_granularity="scalar"), token_batches(n=1), name="tnl", progress=False),
              decay_stats(zero_projection_sd(np.full(H * cfg.head_dim, 0.95)), token_batches(n=1), name="sd-0.95", progress=False),
              decay_stats(micro(decay="gla"), token_batches(n=1), name="gla", progress=False)]

    with write_csv(family, tmp_path / "s.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * L * (H + 1)
    tnl_rows = [r for r in rows if r["model"] == "tnl" and r["head"] != "all"]
    for r in tnl_rows:
        g = float(tnl_log_decay(H, int(r["layer"]), L)[int(r["head"])].float())
        assert float(r["decay_median"]) == pytest.approx(math.exp(g), rel=1e-12)
    data = json.loads(write_json(family, tmp_path / "s.json").read_text())
    assert [d["model"] for d in data] == ["tnl", "sd-0.95", "gla"] and len(data[1]["heads"]) == L * H

    fig = plot_median_decay_by_layer(family, tmp_path / "median.png")
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == ["tnl", "sd-0.95", "gla"]
    for line, s in zip(lines, family):
        np.testing.assert_allclose(line.get_ydata(), s.layer_values())
    np.testing.assert_allclose(lines[1].get_ydata(), 0.95, rtol=1e-6)

    heat = plot_head_heatmap(family[0], tmp_path / "heat.png")
    np.testing.assert_allclose(heat.axes[0].images[0].get_array(), family[0].head_matrix())
    assert heat.axes[0].images[0].get_array().shape == (L, H)
    box = plot_half_life_distribution(family[2], tmp_path / "half.png")
    assert [t.get_text() for t in box.axes[0].get_xticklabels()] == [str(i) for i in range(L)]
    for name in ("median.png", "heat.png", "half.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_analyze_command(tmp_path):
    from decaylab.cli import main
    from decaylab.data import prepare_dataset

    rng = random.Random(0)
    (tmp_path / "text").mkdir()
    for i in range(12):
        (tmp_path / "text" / f"d{i}.txt").write_text(" ".join(rng.choice(["a", "the", "of", "cat", "sat", "on", "mat"]) for _ in range(200)))
    data = prepare_dataset(tmp_path / "text", tmp_path / "ds", vocab_size=280, val_fraction=0.25, progress=False)
    dirs = []
    for name, design in [("tnl", {"decay": "tnl", "decay_granularity": "scalar"}), ("gla", {"decay": "gla"}),
                         ("softmax", {"arch": "softmax"})]:
        torch.manual_seed(0)
        build_model(make_config("micro", vocab_size=280, **design)).save_pretrained(tmp_path / name)
        dirs.append(str(tmp_path / name))
    out = tmp_path / "out"
    assert main(["analyze", *dirs, "--data", str(data), "--out", str(out), "--seq-len", "32",
                 "--max-tokens", "128", "--no-progress"]) == 0
    for name in ("decay_stats.csv", "decay_stats.json", "median_decay_by_layer.png", "tnl_half_life.png",
                 "gla_head_median_decay.png"):
        assert (out / name).is_file()
    assert not (out / "softmax_half_life.png").exists()  # no decay: skipped
    with (out / "decay_stats.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "tnl" and r["head"] != "all"]
    for r in rows:
        g = float(tnl_log_decay(4, int(r["layer"]), 2)[int(r["head"])].float())
        assert float(r["decay_q25"]) == pytest.approx(math.exp(g), rel=1e-12)
        assert int(r["tokens"]) >= 128


def test_no_decay_has_infinite_half_life_in_every_writer_and_plot(tmp_path):
    model = zero_projection_sd(np.full(64, 0.9))
    with torch.no_grad():
        for block in model.model.layers:
            block.attn.decay.offset.fill_(200.0)  # log σ(200) underflows to 0: λ = 1 exactly
    stats = decay_stats(model, token_batches(n=1), name="flat", progress=False)
    assert all(r["decay_min"] == 1.0 and r["half_life_min"] == math.inf for r in stats.layers)
    data = json.loads(write_json(stats, tmp_path / "s.json").read_text())
    assert data["layers"][0]["half_life_median"] == "inf"
    with write_csv(stats, tmp_path / "s.csv").open() as f:
        assert float(next(csv.DictReader(f))["half_life_max"]) == math.inf
    plot_half_life_distribution(stats, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC
