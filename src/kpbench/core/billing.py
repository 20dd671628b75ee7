"""Cost arithmetic: what a run costs at its instance's on-demand price, and what the original study's
workload would cost at a measured throughput."""

import math

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


def ec2_bill(instances, aws_config, now):
    """What an EC2 run cost, summed over every instance it held (a spot run's relaunches too): EC2
    bills each instance per second from "running" to its termination, with a 60 s minimum, at its
    market's price (on demand; a spot instance at the spot price in effect, interrupted or not), and
    its gp3 volume and public IPv4 address for as long
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html#instance-billing,
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/billing-for-interrupted-spot-instances.html).
    `instances`: {instance_id, market, usd_per_hour (the instance's alone, None: unknown), running_at,
    ended_at}; one that never ran is billed nothing, one not yet ended is billed until `now`.
    `billed_s` is machine time over machines: for one launch, the seconds each of its machines held."""
    extras, billed, usd, machine_s = machine_extras_usd_per_hour(aws_config), [], 0.0, 0
    for held in instances:
        seconds = 0 if held["running_at"] is None else billed_seconds((held["ended_at"] or now) - held["running_at"])
        price = held["usd_per_hour"]
        cost = run_cost_usd(seconds, None if price is None else price + extras)
        billed.append({**held, "billed_s": seconds, "usd": cost})
        machine_s += seconds
        usd = None if usd is None or cost is None else usd + cost
    machines = max(1, len({h["slot"] for h in instances})) if instances else 1
    seconds = machine_s / machines
    hours = seconds / SECONDS_PER_HOUR
    per_hour = usd / hours if usd is not None and hours else None
    return {"billed_s": seconds, "hours": hours, "usd_per_hour": per_hour,
            "instance_usd_per_hour": None if per_hour is None else per_hour - extras * machines,
            "extras_usd_per_hour": extras * machines, "usd": usd, "instances": billed, "prices": aws_config["prices"]}


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
