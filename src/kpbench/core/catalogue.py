"""The dated machine catalogue (config/catalogue.csv): the one copy of what each EC2 type is (vCPUs,
devices, network) and costs. `kpbench predict` ranks its rows; an instance row of the configuration
names a type, and its machine facts are filled in from here (kpbench.core.settings)."""

import csv
from pathlib import Path

from kpbench import REPO_ROOT, KpbenchError

CATALOGUE = REPO_ROOT / "config" / "catalogue.csv"
# A stored campaign's copy of the catalogue it was priced at (kpbench.core.campaign).
CAMPAIGN_CATALOGUE = "catalogue.csv"
# And of its spot prices (the plan's snapshot, else the dated default) and interruption bands
# (kpbench.forecast.spot), named by the file they came from.
CAMPAIGN_SPOT_SNAPSHOT, CAMPAIGN_SPOT_PRICES, CAMPAIGN_SPOT_ADVISOR = "spot.json", "spot_prices.csv", "spot_advisor.csv"
# The dated default spot prices per zone, and AWS's interruption bands (kpbench.forecast.spot).
SPOT_PRICES = REPO_ROOT / "config" / "spot_prices.csv"
SPOT_ADVISOR = REPO_ROOT / "config" / "spot_advisor.csv"
COLUMNS = ("instance_type", "status", "vcpus", "device", "devices", "interconnect_gbps", "network_gbps",
           "usd_per_hour", "region", "price_date", "price_source", "spec_source", "spec_date")
# The instance-row fields a catalogue row decides.
MACHINE_FACTS = ("ec2_catalogue", "vcpus", "gpu_model", "gpus", "network_gbps", "usd_per_hour", "price_date",
                 "price_source", "peak_device")


def priced_at(campaign, default=CATALOGUE, name=CAMPAIGN_CATALOGUE):
    """The price file a run's prices come from (the catalogue, or a spot file by `name`): a stored
    campaign's own copy where it keeps one (a reviewer's rebuild prices at the campaign's date, never
    at today's, and a type that has left today's catalogue stays known), else the repository's
    (`default`: as the caller names it)."""
    if campaign and Path(campaign, name).is_file():
        return Path(campaign, name)
    return Path(default)


def spot_prices_at(campaign, snapshot, default):
    """The spot prices a forecast reads: a stored campaign's own (its plan's snapshot, else the
    default it was priced at), else this campaign's plan snapshot where a plan makes one (`snapshot`,
    None without rented rows), else the dated default."""
    for name in (CAMPAIGN_SPOT_SNAPSHOT, CAMPAIGN_SPOT_PRICES):
        if campaign and Path(campaign, name).is_file():
            return Path(campaign, name)
    return Path(snapshot or default)


def _number(value):
    return float(value) if value not in ("", None) else None


def read_catalogue(path=CATALOGUE):
    """Every row, typed; a missing column or a malformed number is named with the file and line."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = set(COLUMNS) - set(rows[0] if rows else {})
    if missing:
        raise KpbenchError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    typed = []
    for line, row in enumerate(rows, start=2):
        try:
            typed.append({**row, "vcpus": int(row["vcpus"]), "devices": int(row["devices"]),
                          "interconnect_gbps": _number(row["interconnect_gbps"]),
                          "network_gbps": _number(row["network_gbps"]), "usd_per_hour": _number(row["usd_per_hour"])})
        except ValueError as error:
            raise KpbenchError(f"{path}, line {line}: {error}") from None
    return typed


def is_cpu_device(device):
    """Catalogue devices name a CPU as '<family> vCPU' (priced per vCPU) or '<type> CPU' (the machine)."""
    return device.endswith(" vCPU") or device.endswith(" CPU")


def machine_facts(entry):
    """An instance row's machine facts for catalogue row `entry`: a GPU type names its GPUs, a CPU
    type its CPU as the device its peak is read from."""
    cpu = is_cpu_device(entry["device"])
    return {"ec2_catalogue": entry["status"], "vcpus": entry["vcpus"], "gpu_model": None if cpu else entry["device"],
            "gpus": 0 if cpu else entry["devices"], "network_gbps": entry["network_gbps"],
            "usd_per_hour": entry["usd_per_hour"], "price_date": entry["price_date"],
            "price_source": entry["price_source"], **({"peak_device": entry["device"]} if cpu else {})}
