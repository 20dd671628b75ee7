"""The ring all-reduce model: its formula, its fit on synthetic timings, and its predictions."""

import math

import pandas as pd
import pytest

from kpbench.scaling import (fit_ring_model, gradient_bytes, measured_speedups, predicted_speedup,
                             reference_step_s, ring_allreduce_s)

GRAD = gradient_bytes(7_266_494)


def test_ring_allreduce_moves_two_n_minus_one_over_n_of_the_gradients():
    assert GRAD == 29_065_976
    assert ring_allreduce_s(1, GRAD, 1e9) == 0.0
    assert ring_allreduce_s(2, GRAD, 1e9) == pytest.approx(GRAD / 1e9)
    assert ring_allreduce_s(4, GRAD, 1e9, latency_s=1e-4) == pytest.approx(1.5 * GRAD / 1e9 + 6e-4)


def test_fit_recovers_bandwidth_and_latency_from_synthetic_timings():
    bandwidth, latency = 2.5e9 / 8, 3e-4  # 2.5 Gbit/s, 300 µs
    samples = [(n, ring_allreduce_s(n, GRAD, bandwidth, latency)) for n in (2, 3, 4, 8) for _ in range(2)]
    model = fit_ring_model(samples, GRAD)
    assert model["identifiable"] and model["cluster_sizes"] == [2, 3, 4, 8]
    assert model["bandwidth_bytes_s"] == pytest.approx(bandwidth, rel=1e-6)
    assert model["latency_s"] == pytest.approx(latency, rel=1e-6)


def test_fit_with_noise_stays_close():
    bandwidth, latency = 10e9 / 8, 1e-4
    noise = [1.03, 0.97, 1.01, 0.99]
    samples = [(n, ring_allreduce_s(n, GRAD, bandwidth, latency) * k) for n, k in zip((2, 3, 4, 8), noise)]
    model = fit_ring_model(samples, GRAD)
    assert model["bandwidth_bytes_s"] == pytest.approx(bandwidth, rel=0.1)


def test_one_cluster_size_cannot_separate_latency_and_says_so():
    model = fit_ring_model([(2, 0.05), (2, 0.07), (1, 0.0)], GRAD)
    assert not model["identifiable"] and model["latency_s"] == 0.0 and model["samples"] == 2
    assert model["bandwidth_bytes_s"] == pytest.approx(GRAD / 0.06)
    assert fit_ring_model([(1, 0.0)], GRAD) is None


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


def test_reference_step_is_the_published_time_per_step():
    assert reference_step_s(_summary(), "g4dn.xlarge") == pytest.approx(595.34 / (100 * math.ceil(6344 / 64)))
    assert reference_step_s(_summary(), "p3.2xlarge") is None
