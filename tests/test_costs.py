import pytest

from kpbench.costs import cluster_usd_per_hour, projected_train_s, run_cost_usd


def test_run_cost_is_hours_times_price():
    assert run_cost_usd(3600, 0.71) == pytest.approx(0.71)
    assert run_cost_usd(595.34 + 18.12, 0.71) == pytest.approx(0.120985, rel=1e-4)
    assert run_cost_usd(None, 1.0) is None and run_cost_usd(10, None) is None
    with pytest.raises(ValueError):
        run_cost_usd(-1, 1.0)


def test_cluster_pays_for_every_worker():
    assert cluster_usd_per_hour({"usd_per_hour": 0.526, "workers": 4}) == pytest.approx(2.104)
    assert cluster_usd_per_hour({"usd_per_hour": 0.1}) == pytest.approx(0.1)
    assert cluster_usd_per_hour({"usd_per_hour": None, "workers": 2}) is None


def test_projection_scales_throughput_to_a_workload():
    assert projected_train_s(100.0, 6344, 100) == pytest.approx(6344.0)
    assert projected_train_s(0, 10, 1) is None
