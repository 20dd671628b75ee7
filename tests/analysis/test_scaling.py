"""The ring all-reduce model: its formula, its fit on synthetic timings, and its predictions."""

import math

import pandas as pd
import pytest

from kpbench.analysis.scaling import (
    cluster_fits,
    fit_alpha_beta,
    measured_speedups,
    predicted_speedup,
    prediction_latency,
    reference_step_s,
    ring_allreduce_s,
)
from kpbench.train.collective import gradient_bytes, sweep_sizes

GRAD = gradient_bytes(7_266_494)


def test_ring_allreduce_moves_two_n_minus_one_over_n_of_the_gradients():
    assert GRAD == 29_065_976
    assert ring_allreduce_s(1, GRAD, 1e9) == 0.0
    assert ring_allreduce_s(2, GRAD, 1e9) == pytest.approx(GRAD / 1e9)
    assert ring_allreduce_s(4, GRAD, 1e9, latency_s=1e-4) == pytest.approx(1.5 * GRAD / 1e9 + 6e-4)


def _sweep(workers, bandwidth, latency, noise=None):
    sizes = sweep_sizes(GRAD)
    noise = noise or [1.0] * len(sizes)
    return [{"bytes": m, "median_s": ring_allreduce_s(workers, m, bandwidth, latency) * k}
            for m, k in zip(sizes, noise)]


def test_the_sweep_doubles_from_4_kib_to_the_gradient_size():
    sizes = sweep_sizes(GRAD)
    assert sizes[0] == 4096 and sizes[-1] == GRAD and sizes[-2] == 4096 * 2 ** 12
    assert all(b == 2 * a for a, b in zip(sizes[:-2], sizes[1:-1]))


@pytest.mark.parametrize("workers", [2, 4])
def test_fit_recovers_bandwidth_and_latency_from_one_cluster_size(workers):
    bandwidth, latency = 2.5e9 / 8, 3e-4  # 2.5 Gbit/s, 300 µs
    fit = fit_alpha_beta(_sweep(workers, bandwidth, latency), workers)
    assert fit["latency_resolved"] and fit["bandwidth_resolved"]
    assert fit["bandwidth_bytes_s"] == pytest.approx(bandwidth, rel=1e-6)
    assert fit["latency_s"] == pytest.approx(latency, rel=1e-6)
    assert fit["residual_rms"] == pytest.approx(0.0, abs=1e-9)


def test_fit_with_noise_stays_close_and_reports_its_residual():
    noise = [1.05, 0.95, 1.02, 0.98, 1.04, 0.96, 1.0, 1.03, 0.97, 1.01, 0.99, 1.02, 0.98, 1.0]
    fit = fit_alpha_beta(_sweep(2, 10e9 / 8, 1e-4, noise), 2)
    assert fit["bandwidth_bytes_s"] == pytest.approx(10e9 / 8, rel=0.1)
    assert fit["latency_s"] == pytest.approx(1e-4, rel=0.1)
    assert 0.005 < fit["residual_rms"] < 0.06


def test_honest_but_unhelpful_sweeps_are_answered_not_refused():
    # Times that grow faster than the size: the latency is below resolution (the fitted intercept is
    # negative), so the bandwidth comes from a slope through zero.
    steep = [{"bytes": 4096, "median_s": 1e-6}, {"bytes": 8192, "median_s": 3e-6}, {"bytes": 16384, "median_s": 9e-6}]
    fit = fit_alpha_beta(steep, 2)
    assert not fit["latency_resolved"] and fit["latency_s"] == 0.0 and fit["bandwidth_resolved"]
    # Flat times: no bandwidth can be read from them.
    flat = [{"bytes": m, "median_s": 1e-3} for m in (4096, 8192, 16384)]
    fit = fit_alpha_beta(flat, 2)
    assert fit["latency_resolved"] and not fit["bandwidth_resolved"] and fit["bandwidth_bytes_s"] is None
    # Zero, NaN or missing times are left out; fewer than two points fit nothing.
    junk = [{"bytes": 4096, "median_s": 0.0}, {"bytes": 8192, "median_s": float("nan")},
            {"bytes": 16384, "median_s": None}, {"bytes": 32768, "median_s": 1e-3}]
    fit = fit_alpha_beta(junk, 2)
    assert fit["points"] == 1 and fit["latency_s"] is None and fit["bandwidth_bytes_s"] is None


def test_cluster_fits_pair_each_sweep_with_its_physical_reference():
    sweep = {"workers": 2, "sizes": _sweep(2, 1e9, 1e-4), "memcpy_bytes_s": 8e9}
    runs = [{"instance": {"name": "local-2w", "backend": "local-cluster"}, "repeat": 1,
             "cluster": {"workers": 2, "allreduce": sweep}},
            {"instance": {"name": "2x g4dn", "backend": "ec2-cluster", "network_gbps": 5}, "repeat": 1,
             "cluster": {"workers": 2, "allreduce": {**sweep, "sizes": _sweep(2, 0.5e9, 5e-5)}}},
            {"instance": {"name": "old-2w", "backend": "local-cluster"}, "cluster": {"workers": 2}}]
    fits = cluster_fits(runs)
    assert [f["instance"] for f in fits] == ["local-2w", "2x g4dn"]
    assert fits[0]["reference_kind"] == "memory copy" and fits[0]["share_of_reference"] == pytest.approx(1e9 / 8e9)
    assert fits[1]["reference_bytes_s"] == pytest.approx(5e9 / 8)
    # Predictions take the latency of the networked cluster before the loopback one.
    assert prediction_latency(fits) == (pytest.approx(5e-5), "network")
    assert prediction_latency(fits[:1]) == (pytest.approx(1e-4), "loopback")
    assert prediction_latency([]) == (0.0, None)


def test_predicted_speedup_approaches_n_on_fast_links():
    compute = 0.0595
    slow, fast = predicted_speedup(4, compute, GRAD, 5), predicted_speedup(4, compute, GRAD, 100)
    assert slow < fast < 4
    assert fast == pytest.approx(4 * compute / (compute + 1.5 * GRAD / 12.5e9))
    assert predicted_speedup(1, compute, GRAD, 5) == 1.0


def _summary():
    rows = [("original study", "g4dn.xlarge", 1, 595.34), ("original study", "2x g4dn.xlarge", 2, 696.12),
            ("original study", "4x g4dn.xlarge", 4, 438.22), ("kpbench", "local", 1, None),
            ("kpbench", "local-2w", 2, None)]
    frame = pd.DataFrame([{"source": s, "instance": i, "workers": w, "train_s": t, "epochs": 100,
                           "train_images": 6344, "batch_size": 64, "network_gbps": None,
                           "images_per_s": 634400 / t if t else None} for s, i, w, t in rows])
    frame.loc[3, "images_per_s"], frame.loc[4, "images_per_s"] = 60.0, 45.0
    return frame


def test_measured_speedups_pair_each_cluster_with_its_one_machine_baseline():
    runs = [{"instance": {"name": "local", "backend": "local", "workers": 1}},
            {"instance": {"name": "local-2w", "backend": "local-cluster", "workers": 2}}]
    measured = {m["instance"]: m for m in measured_speedups(_summary(), runs)}
    assert measured["2x g4dn.xlarge"]["speedup"] == pytest.approx(595.34 / 696.12)
    assert measured["4x g4dn.xlarge"]["efficiency"] == pytest.approx(595.34 / 438.22 / 4)
    assert measured["local-2w"]["baseline"] == "local" and measured["local-2w"]["speedup"] == pytest.approx(0.75)
    # Two workers sharing one machine's cores: their ideal is 1x, so 0.75x is 75 % efficient, not 37.5 %.
    assert measured["local-2w"]["ideal"] == 1 and measured["local-2w"]["efficiency"] == pytest.approx(0.75)
    assert measured["4x g4dn.xlarge"]["ideal"] == 4
    assert measured["local-2w"]["speedup_low"] is None and measured["2x g4dn.xlarge"]["speedup_low"] is None


def test_a_speedup_of_repeated_instances_carries_the_range_their_runs_allow():
    runs = [{"instance": {"name": "local", "backend": "local", "workers": 1}},
            {"instance": {"name": "local-2w", "backend": "local-cluster", "workers": 2}}]
    summary = _summary()
    summary["repeats"] = [1, 1, 1, 3, 3]
    summary["images_per_s_min"] = [None, None, None, 50.0, 40.0]
    summary["images_per_s_max"] = [None, None, None, 64.0, 48.0]
    measured = {m["instance"]: m for m in measured_speedups(summary, runs)}
    local = measured["local-2w"]
    assert local["speedup"] == pytest.approx(0.75)  # the rows' own means, as the runs table gives them
    assert local["speedup_low"] == pytest.approx(40 / 64) and local["speedup_high"] == pytest.approx(48 / 50)
    assert measured["2x g4dn.xlarge"]["speedup_low"] is None  # one published run each: no range


def test_reference_step_is_the_published_time_per_step():
    assert reference_step_s(_summary(), "g4dn.xlarge") == pytest.approx(595.34 / (100 * math.ceil(6344 / 64)))
    assert reference_step_s(_summary(), "p3.2xlarge") is None


def test_predictions_carry_the_range_of_the_latencies_fitted(monkeypatch):
    """The median latency of three loopback runs makes the prediction; the largest and the smallest of
    them bracket it, slowest first, so Table 11 prints a spread and not a single run's figure."""
    from kpbench.analysis import scaling

    fits = [{"loopback": True, "latency_resolved": True, "latency_s": alpha} for alpha in (1.2e-3, 1.6e-3, 2.2e-3)]
    monkeypatch.setattr(scaling, "cluster_fits", lambda runs: fits)
    result = scaling.scaling_analysis(_summary(), [], 7_266_494, "g4dn.xlarge")
    assert result["latency_s"] == pytest.approx(1.6e-3) and result["latency_runs"] == 3
    for prediction in result["predictions"]:
        for n, (low, high) in prediction["speedup_ranges"].items():
            assert low < prediction["speedups"][n] < high
            compute = reference_step_s(_summary(), "g4dn.xlarge")
            grad = scaling.gradient_bytes(7_266_494)
            assert low == pytest.approx(predicted_speedup(int(n), compute, grad, prediction["gbps"], 2.2e-3))
