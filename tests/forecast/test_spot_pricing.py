"""The spot side of a rental (kpbench.forecast.spot): the expected-cost arithmetic on constructed bands,
checked by hand and against a simulation of the process it models; the files it reads; the plan's
spot rows; the snapshot `plan` takes."""

import datetime as dt
import random

import pytest

from kpbench import KpbenchError
from kpbench.forecast import spot
from kpbench.forecast.plan import plan, plan_table

HOUR = 3600.0


def rental(training_s, relaunch=(("provision", 6.0), ("boot", 24.0), ("set-up: install", 40.0), ("init", 10.0)),
           usd_per_hour=1.0):
    """An on-demand rental as kpbench.forecast.rental prices it: provision is not billed."""
    terms = [{"term": t, "s": s, "billed": t != "provision", "source": "test"} for t, s in relaunch]
    terms += [{"term": "training", "s": training_s, "billed": True, "source": "test"},
              {"term": "upload", "s": 2.0, "billed": True, "source": "test"}]
    held = sum(t["s"] for t in terms if t["billed"])
    return {"terms": terms, "held_s": held, "billed_s": max(60, int(held + 0.999)),
            "cost_usd": held / HOUR * usd_per_hour, "usd_per_hour": usd_per_hour,
            "fixed_s": sum(t["s"] for t in terms if t["term"] != "training"), "per_epoch_s": training_s / 10,
            "dominant": "training"}


def test_a_month_on_a_20_percent_band_expects_a_fifth_of_an_interruption():
    """The band's upper bound per instance-month: a 730-hour run of one machine on "15-20%" expects
    0.2 interruptions (a little more: the restarts it pays are exposed too)."""
    priced = rental(730 * HOUR - 80.0)
    expected = spot.expected_spot(priced, 0.3, 20.0, 1, 0.0, checkpoint_s=600.0)
    assert expected["interruptions"] == pytest.approx(0.2, rel=1e-3) and expected["interruptions"] > 0.2
    # By hand: T = t / (1 - λ m (relaunch + lost)), relaunch = 6 + 24 + 40 + 10 s, lost = 300 s.
    rate = 0.20 / (730 * HOUR)
    held = priced["held_s"] / (1 - rate * (80.0 + 300.0))
    assert expected["held_s"] == pytest.approx(held) and expected["relaunch_s"] == 80.0
    assert expected["usd"] == pytest.approx(int(held + 1) / HOUR * 0.3)
    assert expected["cheaper"] and expected["saving"] == pytest.approx(1 - expected["usd"] / priced["cost_usd"])


def test_every_machine_of_a_set_exposes_it_and_extras_are_paid_per_machine():
    priced = rental(HOUR)
    one = spot.expected_spot(priced, 0.5, 10.0, 1, 0.0, 60.0)
    four = spot.expected_spot(priced, 0.5, 10.0, 4, 0.01, 60.0)
    assert four["interruptions"] == pytest.approx(4 * one["interruptions"], rel=1e-4)
    assert four["usd"] == pytest.approx(int(four["held_s"] + 1) / HOUR * 4 * 0.51)


def test_spot_is_not_the_cheaper_bet_when_its_price_is_not_lower():
    priced = rental(HOUR, usd_per_hour=1.0)
    assert not spot.expected_spot(priced, 1.0, 20.0, 1, 0.0, 60.0)["cheaper"]  # same price, restarts on top
    assert spot.expected_spot(priced, 0.9, 20.0, 1, 0.0, 60.0)["cheaper"]


def test_the_closed_form_matches_a_simulation_of_restarts_from_checkpoints():
    """Interruptions as a Poisson process over every machine; each costs the relaunch and the work
    since the last checkpoint. A rate high enough to interrupt often (50 machines on a ">20%" band of
    100 %) keeps the simulation short; the closed form must agree within its sampling error."""
    machines, band, work, checkpoint, relaunch = 50, 100.0, 100 * HOUR, HOUR, 1800.0
    priced = rental(work, relaunch=(("boot", relaunch),))
    expected = spot.expected_spot(priced, 0.1, band, machines, 0.0, checkpoint)
    rate = machines * band / 100 / (730 * HOUR)
    rng, totals = random.Random(7), []
    for _ in range(3000):
        done, elapsed = 0.0, 0.0
        while True:
            need = relaunch + (priced["held_s"] - relaunch - done)  # relaunch, then the rest of the run
            arrival = rng.expovariate(rate)
            if arrival >= need:
                elapsed += need
                break
            elapsed += arrival
            progress = done + max(0.0, arrival - relaunch)
            done = (progress // checkpoint) * checkpoint  # back to the last checkpoint
        totals.append(elapsed)
    simulated = sum(totals) / len(totals)
    assert expected["held_s"] == pytest.approx(simulated, rel=0.01)
    assert expected["interruptions"] > 5  # the simulation did exercise restarts


def test_a_band_that_cannot_finish_is_refused():
    with pytest.raises(KpbenchError, match="no expectation to finish"):
        spot.expected_spot(rental(HOUR), 0.1, 100.0, 10 ** 6, 0.0, 10 ** 6)


def test_the_advisor_data_become_dated_rows_with_their_band_bounds():
    payload = {"ranges": [{"index": 0, "label": "<5%", "dots": 0, "max": 5}, {"index": 3, "label": "15-20%",
                                                                               "dots": 3, "max": 20}],
               "spot_advisor": {"us-east-1": {"Linux": {"g5.xlarge": {"s": 62, "r": 3}, "m5.large": {"s": 50, "r": 0}}}}}
    rows = spot.advisor_rows(payload, "us-east-1", ["g5.xlarge", "g6.xlarge"], "2026-12-07")
    assert rows == [{"region": "us-east-1", "instance_type": "g5.xlarge", "band": "15-20%", "band_max_pct": 20,
                     "savings_pct": 62, "date": "2026-12-07", "source": spot.ADVISOR_URL}]
    with pytest.raises(KpbenchError, match="eu-west-9"):
        spot.advisor_rows(payload, "eu-west-9", ["g5.xlarge"], "2026-12-07")


def test_a_malformed_price_or_band_names_its_file_and_line(tmp_path):
    prices = tmp_path / "spot_prices.csv"
    prices.write_text("region,instance_type,zone,usd_per_hour,date,source\n"
                      "us-east-1,g5.xlarge,use1-az1,0.4,2026-11-28,test\nus-east-1,g5.xlarge,use1-az2,cheap,2026-11-28,test\n")
    with pytest.raises(KpbenchError, match=r"spot_prices.csv, line 3: usd_per_hour 'cheap' is not a number"):
        spot.read_prices(prices)
    bands = tmp_path / "spot_advisor.csv"
    bands.write_text("region,instance_type,band\n")
    with pytest.raises(KpbenchError, match=r"spot_advisor.csv: missing column\(s\) band_max_pct, date, savings_pct, source"):
        spot.read_advisor(bands)
    snapshot = tmp_path / "spot.json"
    snapshot.write_text('{"region": "us-east-1"}')
    with pytest.raises(KpbenchError, match=r"spot.json: not a spot price snapshot"):
        spot.read_prices(snapshot)


def test_a_row_without_a_band_shows_its_price_and_says_what_is_missing():
    entry = {"instance_type": "g5.xlarge", "region": "us-east-1"}
    prices = {"g5.xlarge": {"zones": {"a": 0.4, "b": 0.5, "c": 0.9}, "date": "2026-11-28", "source": "test",
                            "region": "us-east-1"}}
    side = spot.spot_row(entry, rental(HOUR), prices, {}, {}, 1, 60.0)
    assert side["usd_per_hour"] == 0.5 and side["price_low"] == 0.4 and side["price_high"] == 0.9
    assert "no interruption band for g5.xlarge in us-east-1" in side["missing"] and "usd" not in side
    assert side["usd_if_uninterrupted"] == pytest.approx(rental(HOUR)["billed_s"] / HOUR * 0.5)
    band = {("us-east-1", "g5.xlarge"): {"band": "<5%", "band_max_pct": 5.0, "savings_pct": 60.0, "date": "d",
                                         "source": "s"}}
    assert spot.spot_row(entry, rental(HOUR), prices, band, {}, 1, 60.0)["band"] == "<5%"
    assert "no spot price" in spot.spot_row({**entry, "instance_type": "g6.xlarge"}, rental(HOUR), prices, band, {},
                                            1, 60.0)["missing"]


def test_the_plan_shows_a_spot_rows_expected_bill_and_budgets_it_on_demand():
    aws = {"max_lifetime_h": 4, "budget_usd": 10}
    workload = {"epochs": 10, "batch_size": 64, "max_train_images": None}
    rows = [{"name": "cheap", "backend": "ec2", "instance_type": "g5.xlarge", "usd_per_hour": 1.0, "workers": 1,
             "spot": True},
            {"name": "pair", "backend": "ec2-cluster", "instance_type": "g5.xlarge", "usd_per_hour": 1.0, "workers": 2,
             "spot": True}]
    priced = rental(600.0)
    forecast = {"g5.xlarge": {"images_per_s": 100.0, "band": 1.0, "train_s": 600.0, "rental": priced,
                              "spot": {"usd_per_hour": 0.4, "band": "<5%", "band_max_pct": 5.0}}}
    result = plan(rows, workload, 6000, aws, forecast, measured={"pair": 100.0})
    cheap, pair = result["rows"]
    assert cheap["usd"] == pytest.approx(priced["held_s"] / HOUR * 1.0)  # budgeted on demand
    assert cheap["spot_usd"] == pytest.approx(int(priced["held_s"] * (1 + 1e-5) + 1) / HOUR * 0.4, rel=1e-3)
    assert pair["spot_usd"] == pytest.approx(2 * cheap["spot_usd"], rel=1e-3)
    assert pair["spot_interruptions"] == pytest.approx(2 * cheap["spot_interruptions"], rel=1e-3)
    table = plan_table(result)
    assert "spot USD" in table and "band <5%" in table and "budgeted on demand" in table


def test_a_plan_snapshot_keeps_the_newest_price_per_type_and_zone():
    class Paginator:
        def paginate(self, **kwargs):
            assert kwargs["ProductDescriptions"] == ["Linux/UNIX"] and kwargs["InstanceTypes"] == ["g5.xlarge"]
            yield {"SpotPriceHistory": [
                {"InstanceType": "g5.xlarge", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.40",
                 "Timestamp": "2026-12-07T10:00:00Z"},
                {"InstanceType": "g5.xlarge", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.45",
                 "Timestamp": "2026-12-07T11:00:00Z"}]}
            yield {"SpotPriceHistory": [{"InstanceType": "g5.xlarge", "AvailabilityZone": "us-east-1b",
                                         "SpotPrice": "0.50", "Timestamp": "2026-12-07T09:00:00Z"}]}

    class Ec2:
        def get_paginator(self, name):
            assert name == "describe_spot_price_history"
            return Paginator()

    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.timezone.utc)
    snapshot = spot.take_snapshot(Ec2(), ["g5.xlarge", "g5.xlarge"], "us-east-1", now)
    assert snapshot["taken_at"] == "2026-12-07T12:00:00Z"
    assert [(p["zone"], p["usd_per_hour"]) for p in snapshot["prices"]] == [("us-east-1a", 0.45), ("us-east-1b", 0.5)]
