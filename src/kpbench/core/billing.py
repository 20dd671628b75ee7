"""Cost arithmetic: what a run costs at its instance's on-demand price, and what the original study's
workload would cost at a measured throughput."""

import math

from kpbench.core.settings import images_trained, retired

SECONDS_PER_HOUR = 3600.0
# EBS prices storage per GB-month, prorated per second over a 30-day month, as in AWS's own
# example (https://aws.amazon.com/ebs/pricing/).
HOURS_PER_EBS_MONTH = 720.0
# Linux On-Demand instances (and their EBS volumes) are billed per second, with a 60-second minimum
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html#instance-billing).
MINIMUM_BILLED_S = 60


def billed_seconds(seconds):
    """What EC2 bills for an instance held `seconds`: whole seconds, never under a minute."""
    return max(MINIMUM_BILLED_S, math.ceil(seconds))


def machine_extras_usd_per_hour(aws_config):
    """What each machine costs on top of its instance price: its gp3 root volume and its public IPv4
    address, at the dated prices in aws.prices (zero where a price is not configured)."""
    prices = aws_config.get("prices") or {}
    ebs = float(aws_config.get("volume_gb") or 0) * float(prices.get("ebs_gp3_usd_per_gb_month") or 0)
    return ebs / HOURS_PER_EBS_MONTH + float(prices.get("public_ipv4_usd_per_hour") or 0)


def ec2_usd_per_hour(instance, aws_config):
    """Instances, volumes and addresses of one run, per hour (None when the instance price is unknown)."""
    price = cluster_usd_per_hour(instance)
    if price is None:
        return None
    return price + int(instance.get("workers", 1)) * machine_extras_usd_per_hour(aws_config)


def cluster_usd_per_hour(instance):
    """Instance rows price one machine; a cluster of `workers` machines pays for each of them."""
    price = instance.get("usd_per_hour")
    if price is None:
        return None
    return float(price) * int(instance.get("workers", 1))


def ec2_bill(instance, aws_config, running_at, ended_at):
    """What an EC2 run cost: EC2 bills each instance per second from "running" to its termination,
    with a 60 s minimum; its gp3 volume and public IPv4 address for as long
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html#instance-billing).
    An instance that never ran is billed nothing."""
    seconds = 0 if running_at is None else billed_seconds(ended_at - running_at)
    per_hour, machines = ec2_usd_per_hour(instance, aws_config), cluster_usd_per_hour(instance)
    return {"billed_s": seconds, "hours": seconds / SECONDS_PER_HOUR, "usd_per_hour": per_hour,
            "instance_usd_per_hour": machines, "extras_usd_per_hour": None if per_hour is None else per_hour - machines,
            "usd": run_cost_usd(seconds, per_hour), "prices": aws_config["prices"]}


def run_cost_usd(seconds, usd_per_hour):
    """On-demand cost of holding the machines for `seconds` (None when the price is unknown)."""
    if usd_per_hour is None or seconds is None:
        return None
    if seconds < 0 or usd_per_hour < 0:
        raise ValueError("seconds and usd_per_hour must not be negative")
    return seconds / SECONDS_PER_HOUR * usd_per_hour


def projected_run_train_s(run, reference):
    """A run's training seconds projected to the `reference` workload (the original study's): its steady
    step rate over the reference's images and epochs, each epoch validating the reference's held-out
    images at the run's median measured validation rate (a stalled epoch does not count)."""
    import statistics

    seconds, images = run["timings"].get("validation_s"), run["workload"].get("validation_images")
    validation = statistics.median(seconds) * reference["validation_images"] / images if seconds and images else 0.0
    return projected_train_s(run["timings"].get("train_step_images_per_s"), reference["train_images"],
                             reference["epochs"], validation)


def projected_train_s(step_images_per_s, images, epochs, validation_s_per_epoch=0.0):
    """Training seconds for `epochs` passes over `images` at a measured steady-state step rate, each
    followed by a validation pass of `validation_s_per_epoch`; stalls outside the epochs are left out."""
    if not step_images_per_s:
        return None
    return epochs * (images / step_images_per_s + validation_s_per_epoch)


def plan(instances, workload, train_images, aws_config, predicted=None, measured=None, repeats=1):
    """What running the configured matrix on EC2 should cost: per remote instance, expected hours
    (boot and set-up, then the workload at its expected throughput, never past the maximum
    lifetime after which an instance ends itself) × machines × USD/h (instance, gp3 volume and public
    IPv4 address) × `repeats` runs. The throughput is a measured one where there is one (`measured`,
    images/s by measured row name: a finished run of this row, else the original study's row it names
    as `measured_as`); a single machine without one takes kpbench.forecast.predict's prediction for its
    instance type (`predicted`, by type), budgeted at the slow end of its error band; rows with
    neither are charged the maximum lifetime, the most they can cost."""
    from kpbench.backends import registry

    cap_s = float(aws_config["max_lifetime_h"]) * SECONDS_PER_HOUR
    images = images_trained(workload, train_images)
    rows = []
    for instance in instances:
        row = {"instance": instance["name"], "backend": instance["backend"],
               "instance_type": instance.get("instance_type"), "machines": int(instance.get("workers", 1)),
               "usd_per_hour": ec2_usd_per_hour(instance, aws_config), "runs": int(repeats),
               "hours": None, "usd": None}
        if retired(instance):
            row["action"] = "retired from EC2: not launched"
        elif not registry.kind(instance["backend"]).rented:
            row["action"] = "runs on this machine: no AWS cost"
        else:
            source = next((key for key in (instance["name"], instance.get("measured_as")) if key in (measured or {})),
                          None)
            rate = measured[source] if source else None
            action = f"launch (measured {rate:.0f} img/s: {source})" if rate else "launch"
            guess = (predicted or {}).get(instance.get("instance_type")) if row["machines"] == 1 else None
            if not rate and guess:
                rate = guess["images_per_s"] / guess["band"]
                row.update(predicted_images_per_s=guess["images_per_s"], band=guess["band"])
                action = (f"launch (predicted {guess['images_per_s']:.0f} img/s, within x{guess['band']:.2f}: "
                          "budgeted at the slow end)")
            seconds = cap_s if not rate else min(
                cap_s, float(aws_config["boot_overhead_s"]) + images * int(workload["epochs"]) / float(rate))
            seconds = billed_seconds(seconds)
            usd = run_cost_usd(seconds, row["usd_per_hour"])
            row.update(action=action if rate else "launch (no expected throughput: charged the maximum lifetime)",
                       hours=seconds / SECONDS_PER_HOUR * int(repeats), usd=None if usd is None else usd * int(repeats))
        rows.append(row)
    total = sum(row["usd"] for row in rows if row["usd"] is not None)
    return {"rows": rows, "total_usd": total, "budget_usd": float(aws_config["budget_usd"]),
            "within_budget": total <= float(aws_config["budget_usd"]), "workload": workload,
            "train_images": images}


def plan_table(result):
    """The plan as a fixed-width table for the terminal."""
    lines = [f"{'instance':<16} {'type':<13} {'machines':>8} {'runs':>4} {'USD/h':>8} {'hours':>7} {'USD':>9}  action"]
    for row in result["rows"]:
        def number(value, digits):
            return f"{value:.{digits}f}" if value is not None else "-"
        lines.append(f"{row['instance']:<16} {row['instance_type'] or '-':<13} {row['machines']:>8} {row.get('runs', 1):>4} "
                     f"{number(row['usd_per_hour'], 3):>8} {number(row['hours'], 2):>7} {number(row['usd'], 2):>9}"
                     f"  {row['action']}")
    lines.append(f"total {result['total_usd']:.2f} USD of a {result['budget_usd']:.2f} USD budget "
                 f"({result['workload']['epochs']} epochs x {result['train_images']} images)")
    return "\n".join(lines)
