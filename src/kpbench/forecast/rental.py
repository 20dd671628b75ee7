"""One model of a rental: what renting an EC2 machine to train a workload takes, term by term, and
what EC2 bills for it. `kpbench predict`, `kpbench plan` and the paper all price a rental here.

Terms, in the order a rental goes through them, each with its source:
  * provision (RunInstances → "running") and boot ("running" → the OS accepts connections): a
    documented default, the medians Colin Percival measured for Linux AMIs on c5.xlarge
    ("EC2 boot time benchmarking", daemonology.net, 2021-08-12), until a run of ours measures them;
  * set-up: the Python packages and the dataset downloaded over the row's network, and the packages'
    install, as measured (`bench/setup.py`, bench/measured/setup.json);
  * init (process start → compiled model) and the first epoch's excess over a steady one (tracing,
    compilation): calibrated from the measured rows of the same software, else of all rows;
  * the steady epochs (kpbench.forecast.perf_model, with the software's per-step floor);
  * the result's upload; then EC2 bills per second from "running" to termination, at least 60 s, for
    the instance, its volume and its public IPv4 address (kpbench.core.billing). Provisioning comes
    before "running" and is not billed; nor is "shutting-down"
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html#instance-billing).
"""

import statistics
from pathlib import Path

from kpbench import KpbenchError
from kpbench.core import billing
from kpbench.core.files import read_json
from kpbench.data.kaggle_format import IMAGE_SIZE
from kpbench.forecast.perf_model import device_kind

BOOT_SOURCE = ("documented default: medians for Linux AMIs on c5.xlarge, C. Percival, \"EC2 boot time "
               "benchmarking\", daemonology.net, 2021-08-12")
PROVISION_S = 1.5 + 4.9   # the RunInstances call, then "pending" → "running"
BOOT_S = 17.2 + 5.6       # "running" → TCP/22 closed → open: the OS is up
# What a run's dataset holds per image: its 96 x 96 grey pixels and 30 float32 keypoint coordinates.
DATASET_BYTES_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE + 30 * 4
# A step that at full device efficiency would take under this share of its measured time is bound by
# something else than the device (dispatch, the host): it measures the software's per-step floor.
FLOOR_EVIDENCE_SHARE = 0.1


def read_setup(path):
    """The measured set-up (bench/setup.py): package bytes and install seconds, and where from."""
    try:
        setup = read_json(path)
        return {"package_bytes": float(setup["package_bytes"]), "install_s": float(setup["install_s"]),
                "source": f"measured {setup['date']}: {setup['what']} ({Path(path).name})"}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KpbenchError(f"{path}: not a measured set-up (package_bytes, install_s, date, what): {error}") from None


def run_fixed_terms(run):
    """A run's measured fixed seconds: init (process start → compiled model) and its first epoch's
    excess over the median later one (tracing, compilation); None where it did not record them."""
    timings = run["timings"]
    epochs = timings.get("epoch_s") or []
    excess = epochs[0] - statistics.median(epochs[1:]) if len(epochs) > 1 else None
    return {"init_s": timings.get("init_s"), "first_epoch_excess_s": excess}


def fixed_terms(rows, stack):
    """Init and first-epoch excess seconds for software `stack`: the median over the measured rows of
    that software that have them, else over every row that has them; each with the rows it came from."""
    terms = {}
    for key in ("init_s", "first_epoch_excess_s"):
        having = [r for r in rows if (r.get("fixed") or {}).get(key) is not None]
        same = [r for r in having if r["origin"] == stack]
        used = same or having
        if not used:
            terms[key] = {"s": 0.0, "source": "no measured row has it: left out"}
            continue
        scope = "same software" if same else "all software (none measured with this one)"
        terms[key] = {"s": statistics.median(r["fixed"][key] for r in used),
                      "source": f"median of {len(used)} measured row(s), {scope}: " + ", ".join(r["name"] for r in used)}
    return terms


def read_sweep(path, software):
    """A batch sweep (bench/batch_sweep.py): its stack (`software` maps a framework to the software
    name rows carry), device kind and device, and its fastest median step, with where from."""
    try:
        sweep = read_json(path)
        fastest = min(sweep["batches"], key=lambda row: float(row["step_s"]))
        return {"origin": software[sweep["framework"]], "kind": sweep["device_kind"], "device": sweep["device"],
                "fastest_step_s": float(fastest["step_s"]),
                "source": f"fastest median step of a batch sweep (batch {fastest['batch']}), measured "
                          f"{sweep['date']} on {sweep['machine']} ({Path(path).parent.name})"}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KpbenchError(f"{path}: not a batch sweep (framework, device_kind, device, date, machine, "
                           f"batches with batch and step_s): {error}") from None


def step_floor(rows, stack, kind, sweeps=()):
    """The per-step floor of software `stack` on a device of `kind`: the median measured step of its
    floor-bound rows of that kind, else the fastest step a batch sweep of that stack and kind measured;
    none where neither was measured. On a CPU the host that dispatches each step is the device: its
    per-step cost is part of the efficiency calibrated from CPU rows, and no floor applies.
    Returns (seconds, source)."""
    if kind == "cpu":
        return 0.0, "a CPU dispatches its own steps: their per-step cost is in its calibrated efficiency"
    bound = [r for r in rows if r["origin"] == stack and r.get("floor_bound") and device_kind(r["class"]) == kind]
    if bound:
        return (statistics.median(r["measured_step_s"] for r in bound),
                "median measured step of floor-bound row(s): " + ", ".join(r["name"] for r in bound))
    swept = [s for s in sweeps if s["origin"] == stack and s["kind"] == kind]
    if swept:
        fastest = min(swept, key=lambda s: s["fastest_step_s"])
        return fastest["fastest_step_s"], fastest["source"]
    return 0.0, f"not measured for {stack} on a {kind.upper()} (no floor-bound row, no batch sweep): not modelled"


def below_other_floors(catalogue, rows, stack):
    """Where `stack`'s own per-step floor on a GPU is not measured: the lowest floor measured with other
    software (and its row), and today's GPU machines predicted to step faster than it, each step over
    all its replicas as the model counts it (their times assume no floor, so they may be optimistic)."""
    bound = [r for r in rows if r.get("floor_bound") and r["origin"] != stack and device_kind(r["class"]) == "gpu"]
    if not bound:
        return {"floor_s": None, "source": None, "rows": []}
    lowest = min(bound, key=lambda r: r["measured_step_s"])
    return {"floor_s": lowest["measured_step_s"], "source": f"{lowest['name']} ({lowest['origin']})",
            "rows": [c["instance_type"] for c in catalogue
                     if c["status"] == "current" and device_kind(c["class"]) == "gpu" and not c["floor_s"]
                     and c["predicted_step_s"] < lowest["measured_step_s"]]}


def is_floor_bound(ideal_step_s, measured_step_s):
    return measured_step_s > 0 and ideal_step_s < FLOOR_EVIDENCE_SHARE * measured_step_s


def rental(entry, workload, training_s, fixed, setup, aws, machines=1, training_source="the performance model"):
    """One rental of `machines` machines of catalogue row `entry` for `workload`, whose steady epochs
    take `training_s`: its terms (seconds, whether billed, source), wall and billed seconds, cost."""
    network = entry.get("network_gbps")
    bytes_s = network * 1e9 / 8 if network else None

    def transfer(nbytes):
        return nbytes / bytes_s if bytes_s else None

    images = workload["train_images"] + workload["validation_images"]
    over = f"over its {network:g} Gbit/s network (catalogue)" if bytes_s else "(network unknown: left out)"
    terms = [
        {"term": "provision", "s": PROVISION_S, "billed": False, "source": BOOT_SOURCE},
        {"term": "boot", "s": BOOT_S, "billed": True, "source": BOOT_SOURCE},
        {"term": "set-up: packages", "s": transfer(setup["package_bytes"]), "billed": True,
         "source": f"{setup['package_bytes'] / 1e6:,.0f} MB {over}; {setup['source']}"},
        {"term": "set-up: install", "s": setup["install_s"], "billed": True, "source": setup["source"]},
        {"term": "set-up: dataset", "s": transfer(images * DATASET_BYTES_PER_IMAGE), "billed": True,
         "source": f"{images:,} images x {DATASET_BYTES_PER_IMAGE:,} bytes {over}"},
        {"term": "init", "s": fixed["init_s"]["s"], "billed": True, "source": fixed["init_s"]["source"]},
        {"term": "first epoch", "s": fixed["first_epoch_excess_s"]["s"], "billed": True,
         "source": fixed["first_epoch_excess_s"]["source"]},
        {"term": "training", "s": training_s, "billed": True, "source": training_source},
        {"term": "upload", "s": transfer(workload["validation_images"] * 30 * 4), "billed": True,
         "source": f"the validation predictions {over}"},
    ]
    for term in terms:
        term["s"] = term["s"] or 0.0
    held = sum(t["s"] for t in terms if t["billed"])
    billed_s = billing.billed_seconds(held)
    per_hour = (entry["usd_per_hour"] + billing.machine_extras_usd_per_hour(aws)) * machines \
        if entry.get("usd_per_hour") is not None else None
    fixed_s = sum(t["s"] for t in terms if t["term"] != "training")
    dominant = max(terms, key=lambda t: t["s"])["term"]
    return {"terms": terms, "wall_s": sum(t["s"] for t in terms), "held_s": held, "billed_s": billed_s,
            "fixed_s": fixed_s, "per_epoch_s": training_s / workload["epochs"], "dominant": dominant,
            "usd_per_hour": per_hour, "cost_usd": billing.run_cost_usd(billed_s, per_hour)}


def with_training(priced, training_s, workload, usd_per_hour):
    """A rental already priced, with its steady training replaced by `training_s` (a measured rate,
    or a band's end): the fixed terms stay as they were, billing is redone."""
    terms = [{**t, "s": training_s} if t["term"] == "training" else t for t in priced["terms"]]
    held = sum(t["s"] for t in terms if t["billed"])
    billed_s = billing.billed_seconds(held)
    return {**priced, "terms": terms, "wall_s": sum(t["s"] for t in terms), "held_s": held,
            "billed_s": billed_s, "per_epoch_s": training_s / workload["epochs"],
            "dominant": max(terms, key=lambda t: t["s"])["term"],
            "cost_usd": billing.run_cost_usd(billed_s, usd_per_hour)}


def crossovers(catalogue, workload, sizes):
    """The cheapest current machine at each workload size (a multiple of the workload's epochs), and
    where the cheapest changes: fixed costs decide small workloads, throughput large ones. A change
    lies between two sizes of the grid; its epochs are where the two machines' costs meet, found by
    bisection on the same cost model (a point between grid sizes would be a guess)."""
    rows = [r for r in catalogue if r["status"] == "current" and r["cost_usd"] is not None]

    def cost(r, factor):
        return cost_at(r, workload["epochs"] * factor, workload)

    cheapest = []
    for factor in sizes:
        best = min(rows, key=lambda r, f=factor: cost(r, f))
        cheapest.append({"epochs": workload["epochs"] * factor, "factor": factor, "row": best,
                         "instance_type": best["instance_type"], "cost_usd": cost(best, factor)})
    changes = [{"from": a["instance_type"], "to": b["instance_type"],
                "epochs": workload["epochs"] * _meeting(lambda f, a=a, b=b: cost(a["row"], f) - cost(b["row"], f),
                                                        a["factor"], b["factor"])}
               for a, b in zip(cheapest, cheapest[1:]) if a["instance_type"] != b["instance_type"]]
    return [{key: value for key, value in size.items() if key not in ("row", "factor")} for size in cheapest], changes


def cost_at(row, epochs, workload):
    """A predicted catalogue row's billed cost for `epochs` of its workload's images: its fixed terms as
    they are, its training scaled."""
    seconds = row["train_s"] * epochs / workload["epochs"]
    return with_training(row["rental"], seconds, workload, row["rental"]["usd_per_hour"])["cost_usd"]


def _meeting(difference, low, high, steps=60):
    """Where `difference` (first machine's cost minus the second's: at most 0 at `low`, above 0 at
    `high`) changes sign, by bisection."""
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if difference(middle) <= 0 else (low, middle)
    return (low + high) / 2
