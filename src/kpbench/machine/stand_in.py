"""The price of "this machine": a local instance row with `stand_in` is priced as the instance
catalogue's nearest current CPU type to the CPU this machine measures itself to be (by vendor, then
generation, then vCPUs), per vCPU times this machine's logical CPUs, or as the type `stand_in` names.

EC2 prices a family's sizes in proportion to their vCPUs (c7a.large to c7a.4xlarge: 0.10264 ×
2, 8, 16 / 2 in config/catalogue.csv), so a per-vCPU price carries to a size the catalogue lacks.
"""

import math

from kpbench import KpbenchError
from kpbench.core.catalogue import read_catalogue
from kpbench.machine.cpu_peaks import microarchitecture
from kpbench.machine.device_peaks import PEAKS

NEAREST = "nearest"


def _current_cpu_types(catalogue_path):
    rows = [row for row in read_catalogue(catalogue_path) if row["status"] == "current"]
    return [row for row in rows if PEAKS.get(row["device"], {}).get("class") == "cpu" and row["usd_per_hour"]]


def _closeness(row, cpu, vcpus):
    """Lower is nearer: another vendor, then another generation, then the vCPU ratio."""
    ids = PEAKS[row["device"]].get("cpu_ids") or {}
    same_vendor = (cpu.get("vendor") or "").lower() == (ids.get("vendor") or "").lower()
    same_generation = same_vendor and microarchitecture(cpu) is not None and \
        microarchitecture(cpu) == microarchitecture(ids)
    return (not same_vendor, not same_generation, abs(math.log(int(row["vcpus"]) / max(vcpus, 1))))


def stand_in_price(instance, cpu, vcpus, catalogue_path):
    """(USD per hour of one worker, price date, where it comes from) for a local row."""
    rows = _current_cpu_types(catalogue_path)
    if instance["stand_in"] == NEAREST:
        if not rows:
            raise KpbenchError(f"{catalogue_path}: no current CPU type with a price to stand in for this machine")
        row = min(rows, key=lambda r: _closeness(r, cpu, vcpus))
        vendor, generation, _ = _closeness(row, cpu, vcpus)
        why = ("another vendor's (the catalogue has no current type of this CPU's vendor)" if vendor else
               "the same vendor, another generation" if generation else "the same vendor and generation")
    else:
        row = next((r for r in rows if r["instance_type"] == instance["stand_in"]), None)
        if row is None:
            raise KpbenchError(f"instance {instance['name']}: stand_in {instance['stand_in']!r} is no current CPU type "
                               f"of {catalogue_path} ({', '.join(r['instance_type'] for r in rows)})")
        why = "as configured"
    machine = float(row["usd_per_hour"]) * vcpus / int(row["vcpus"])
    workers = int(instance.get("workers", 1))
    name = cpu.get("model_name") or "this machine's CPU"
    source = (f"stand-in for this machine ({name}, {vcpus} vCPUs): {row['instance_type']} ({row['device']}, "
              f"{row['vcpus']} vCPUs, {float(row['usd_per_hour']):.5f} USD/h, {row['price_source'].split(';')[0]}) "
              f"per vCPU, {why}" + (f"; split over {workers} workers sharing the machine" if workers > 1 else ""))
    return machine / workers, row["price_date"], source
