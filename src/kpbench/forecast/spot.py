"""What a spot rental of the workload is expected to cost and take, priced by its interruption risk,
beside the on-demand rental (kpbench.forecast.rental) that `predict`, `plan` and the paper show.

Inputs, each dated with its source:
  * spot prices per availability zone: the snapshot `plan` takes from DescribeSpotPriceHistory
    (results/prices/spot.json), else the dated default config/spot_prices.csv;
  * the interruption-frequency band per type and region: AWS's Spot Instance Advisor data, as the dated
    file config/spot_advisor.csv (`kpbench spot-advisor` refreshes it; no network at run time). The
    Advisor states the band as "the rate at which Spot has reclaimed capacity during the trailing month"
    (https://aws.amazon.com/ec2/spot/instance-advisor/).

The arithmetic (expected_spot): interruptions arrive as a Poisson process whose rate per machine-hour is
the band's upper bound spread over a 730-hour month (the month of AWS's price pages); any machine's
interruption restarts the whole set, which pays the relaunch (provision, boot, set-up, init and
first-epoch terms of the rental model) and the work since the last checkpoint (half a checkpoint
interval on average: the run checkpoints once per epoch). The expected time T then solves
T = t + λ·m·T·(relaunch + lost), i.e. T = t / (1 − λ·m·(relaunch + lost)), and the expected bill is the
spot price × machines × T (with the machines' volumes and addresses, at least 60 s).
"""

import csv
import datetime as dt
import json
import statistics
from pathlib import Path

from kpbench import KpbenchError
from kpbench.core import billing
from kpbench.core.catalogue import SPOT_ADVISOR

ADVISOR_URL = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json"
HOURS_PER_MONTH = 730.0
ADVISOR_COLUMNS = ("region", "instance_type", "band", "band_max_pct", "savings_pct", "date", "source")
PRICE_COLUMNS = ("region", "instance_type", "zone", "usd_per_hour", "date", "source")
# What the run redoes after an interruption before training goes on (kpbench.forecast.rental's terms).
RELAUNCH_TERMS = ("provision", "boot", "set-up: packages", "set-up: install", "set-up: dataset", "init", "first epoch")


def _rows(path, columns):
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = set(columns) - set(reader.fieldnames or ())
            if missing:
                raise KpbenchError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            return list(enumerate(reader, start=2))
    except OSError as error:
        raise KpbenchError(f"{path}: {error.strerror}") from None


def _number(path, line, row, key):
    try:
        return float(row[key])
    except (TypeError, ValueError):
        raise KpbenchError(f"{path}, line {line}: {key} {row[key]!r} is not a number") from None


def read_advisor(path=SPOT_ADVISOR):
    """{(region, type): {band, band_max_pct, savings_pct, date, source}}; a malformed row is named."""
    found = {}
    for line, row in _rows(path, ADVISOR_COLUMNS):
        found[(row["region"], row["instance_type"])] = {
            "band": row["band"], "band_max_pct": _number(path, line, row, "band_max_pct"),
            "savings_pct": _number(path, line, row, "savings_pct"), "date": row["date"], "source": row["source"]}
    return found


def advisor_rows(payload, region, types, date):
    """The Spot Instance Advisor's JSON (ADVISOR_URL) as config/spot_advisor.csv rows for `types` in
    `region`, Linux; its `ranges` give each band's label and upper bound."""
    try:
        ranges = {int(r["index"]): r for r in payload["ranges"]}
        linux = payload["spot_advisor"][region]["Linux"]
    except (KeyError, TypeError, ValueError) as error:
        raise KpbenchError(f"the Spot Instance Advisor data lack {error} (region {region}, Linux)") from None
    rows = []
    for instance_type in types:
        if instance_type not in linux:
            continue
        entry = linux[instance_type]
        band = ranges[int(entry["r"])]
        rows.append({"region": region, "instance_type": instance_type, "band": band["label"],
                     "band_max_pct": band["max"], "savings_pct": entry["s"], "date": date, "source": ADVISOR_URL})
    return rows


def read_prices(path):
    """Spot prices by type: {type: {zones: {zone: USD/h}, date, source}}, from plan's snapshot
    (JSON: DescribeSpotPriceHistory as taken) or from a dated CSV (config/spot_prices.csv)."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            snapshot = json.loads(path.read_text())
            entries = [{"region": snapshot["region"], "instance_type": p["instance_type"], "zone": p["zone"],
                        "usd_per_hour": float(p["usd_per_hour"]), "date": snapshot["taken_at"],
                        "source": snapshot["source"]} for p in snapshot["prices"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise KpbenchError(f"{path}: not a spot price snapshot (region, taken_at, source, prices with "
                               f"instance_type, zone, usd_per_hour): {error}") from None
    else:
        entries = [{**row, "usd_per_hour": _number(path, line, row, "usd_per_hour")}
                   for line, row in _rows(path, PRICE_COLUMNS)]
    prices = {}
    for entry in entries:
        kept = prices.setdefault(entry["instance_type"], {"zones": {}, "date": entry["date"], "source": entry["source"],
                                                          "region": entry["region"]})
        kept["zones"][entry["zone"]] = entry["usd_per_hour"]
    return prices


def take_snapshot(ec2, instance_types, region, now=None):
    """The spot price in effect now per type and zone (Linux/UNIX), from DescribeSpotPriceHistory
    with a start time of now, which returns the price in effect at that time
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    newest = {}
    paginator = ec2.get_paginator("describe_spot_price_history")
    for page in paginator.paginate(InstanceTypes=sorted(set(instance_types)), ProductDescriptions=["Linux/UNIX"],
                                   StartTime=now):
        for entry in page["SpotPriceHistory"]:
            key = (entry["InstanceType"], entry["AvailabilityZone"])
            stamp = str(entry["Timestamp"])
            if key not in newest or stamp > newest[key]["timestamp"]:
                newest[key] = {"instance_type": key[0], "zone": key[1], "usd_per_hour": float(entry["SpotPrice"]),
                               "timestamp": stamp}
    return {"taken_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "source": f"DescribeSpotPriceHistory (Linux/UNIX), {region}", "prices": sorted(
                newest.values(), key=lambda p: (p["instance_type"], p["zone"]))}


def snapshot_of(prices, region, why):
    """Dated default prices (read_prices) in the snapshot's form, saying where they come from and why."""
    return {"taken_at": min((p["date"] for p in prices.values()), default=None), "region": region,
            "source": "; ".join(sorted({p["source"] for p in prices.values()})) + f" ({why})",
            "prices": [{"instance_type": t, "zone": z, "usd_per_hour": price, "timestamp": p["date"]}
                       for t, p in sorted(prices.items()) for z, price in sorted(p["zones"].items())
                       if p["region"] == region]}


def expected_spot(priced, spot_usd_per_hour, band_max_pct, machines, extras_usd_per_hour, checkpoint_s):
    """The expected spot rental of `priced` (an on-demand rental of kpbench.forecast.rental, its
    `machines` machines held `priced["held_s"]`): interruptions, seconds held and bill, and whether it
    is the cheaper bet. `checkpoint_s`: the interval between checkpoints (an epoch)."""
    relaunch_s = sum(t["s"] for t in priced["terms"] if t["term"] in RELAUNCH_TERMS)
    lost_s = checkpoint_s / 2
    rate_per_s = band_max_pct / 100 / (HOURS_PER_MONTH * billing.SECONDS_PER_HOUR)
    exposure = rate_per_s * machines * (relaunch_s + lost_s)
    if exposure >= 1:
        raise KpbenchError(f"an interruption rate of {band_max_pct:g} % a month leaves no expectation to finish")
    held_s = priced["held_s"] / (1 - exposure)
    interruptions = rate_per_s * machines * held_s
    per_hour = machines * (spot_usd_per_hour + extras_usd_per_hour)
    usd = billing.run_cost_usd(billing.billed_seconds(held_s), per_hour)
    on_demand = priced["cost_usd"]
    return {"usd_per_hour": spot_usd_per_hour, "band_max_pct": band_max_pct, "interruptions": interruptions,
            "relaunch_s": relaunch_s, "lost_s_each": lost_s, "held_s": held_s, "extra_s": held_s - priced["held_s"],
            "usd": usd, "on_demand_usd": on_demand,
            "saving": None if not on_demand else 1 - usd / on_demand,
            "cheaper": on_demand is not None and usd < on_demand}


def spot_row(entry, priced, prices, advisor, aws, machines, checkpoint_s):
    """A catalogue row's spot side: its zones' prices (their median priced), its band, and the
    expected rental where both are known; otherwise what is missing, said."""
    region = entry["region"]
    known = prices.get(entry["instance_type"])
    band = advisor.get((region, entry["instance_type"]))
    if not known or not known["zones"]:
        return {"missing": "no spot price (plan's snapshot or config/spot_prices.csv)"}
    zones = known["zones"]
    price = statistics.median(zones.values())
    row = {"price_low": min(zones.values()), "price_high": max(zones.values()), "zones": len(zones),
           "price_date": known["date"], "price_source": known["source"]}
    if band is None:  # what it costs if never interrupted: a lower bound, not an expectation
        uninterrupted = billing.run_cost_usd(priced["billed_s"], machines * (price + billing.machine_extras_usd_per_hour(aws)))
        return {**row, "usd_per_hour": price, "usd_if_uninterrupted": uninterrupted,
                "missing": f"no interruption band for {entry['instance_type']} in {region}"}
    expected = expected_spot(priced, price, band["band_max_pct"], machines,
                             billing.machine_extras_usd_per_hour(aws), checkpoint_s)
    return {**row, **expected, "band": band["band"], "band_date": band["date"], "band_source": band["source"]}
