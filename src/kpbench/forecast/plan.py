"""What running the configured matrix on EC2 should cost, before anything launches: each rented row
priced as kpbench.forecast.rental prices the same rental for `kpbench predict`, its training at a
measured throughput where there is one, else at the slow end of the prediction's band."""

from kpbench.backends import registry
from kpbench.core.billing import (
    SECONDS_PER_HOUR,
    billed_seconds,
    ec2_usd_per_hour,
    machine_extras_usd_per_hour,
    run_cost_usd,
)
from kpbench.core.settings import images_trained, retired
from kpbench.forecast import spot
from kpbench.forecast.rental import with_training


def plan(instances, workload, train_images, aws_config, predicted, measured=None, repeats=1):
    """Per remote instance: its rental (provision, boot, set-up, init, first epoch, training, upload:
    `predicted`, the forecast's catalogue rows by instance type) with the training at the expected
    throughput, never past the maximum lifetime after which an instance ends itself; billed per
    second, at least 60 s, × machines × USD/h (instance, gp3 volume and public IPv4 address) ×
    `repeats` runs. The throughput is a measured one where there is one (`measured`, images/s by
    measured row name: a finished run of this row, else the original study's row it names as
    `measured_as`); a single machine without one takes the prediction for its type, budgeted at the
    slow end of its error band; rows with neither, or of a type the forecast lacks, are charged the
    maximum lifetime, the most they can cost."""
    cap_s = float(aws_config["max_lifetime_h"]) * SECONDS_PER_HOUR
    images = images_trained(workload, train_images)
    epochs = int(workload["epochs"])
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
            row.update(_priced(instance, row, images, epochs, workload, cap_s, predicted, measured or {}, aws_config))
        rows.append(row)
    total = sum(row["usd"] for row in rows if row["usd"] is not None)
    return {"rows": rows, "total_usd": total, "budget_usd": float(aws_config["budget_usd"]),
            "within_budget": total <= float(aws_config["budget_usd"]), "workload": workload,
            "train_images": images}


def _spot_side(priced, spot_side, row, aws_config):
    """A spot row's expected bill (kpbench.forecast.spot) at the forecast's spot price and band, its
    machines all restarting at any one's interruption. It is shown, not budgeted: the budget holds the
    on-demand bill, which the on-demand fallback can come to."""
    if "band_max_pct" not in spot_side:
        return {"spot_note": spot_side.get("missing", "no spot price")}
    expected = spot.expected_spot(priced, spot_side["usd_per_hour"], spot_side["band_max_pct"], row["machines"],
                                  machine_extras_usd_per_hour(aws_config), priced["per_epoch_s"])
    return {"spot_usd": expected["usd"] * row["runs"], "spot_interruptions": expected["interruptions"],
            "spot_note": f"spot {spot_side['usd_per_hour']:.4f} USD/h, band {spot_side['band']}"}


def _priced(instance, row, images, epochs, workload, cap_s, predicted, measured, aws_config):
    source = next((key for key in (instance["name"], instance.get("measured_as")) if key in measured), None)
    forecast = (predicted or {}).get(instance.get("instance_type"))
    training_s, fields = None, {}
    if source:
        training_s = images * epochs / float(measured[source])
        action = f"launch (measured {measured[source]:.0f} img/s: {source})"
    elif forecast and row["machines"] == 1:
        training_s = forecast["train_s"] * forecast["band"]
        fields = {"predicted_images_per_s": forecast["images_per_s"], "band": forecast["band"]}
        action = (f"launch (predicted {forecast['images_per_s']:.0f} img/s, within x{forecast['band']:.2f}: "
                  "budgeted at the slow end)")
    if training_s is None or not forecast:
        seconds = billed_seconds(cap_s)
        reason = "no expected throughput" if training_s is None else "no rental model for its type"
        action = f"launch ({reason}: charged the maximum lifetime)"
    else:
        priced = with_training(forecast["rental"], training_s, workload, row["usd_per_hour"])
        seconds = billed_seconds(min(cap_s, priced["held_s"]))
        fields.update(fixed_s=priced["fixed_s"], training_s=training_s, dominant=priced["dominant"])
        if instance.get("spot"):
            fields.update(_spot_side(priced, forecast.get("spot") or {}, row, aws_config))
    usd = run_cost_usd(seconds, row["usd_per_hour"])
    return {**fields, "action": action, "billed_s": seconds, "hours": seconds / SECONDS_PER_HOUR * row["runs"],
            "usd": None if usd is None else usd * row["runs"]}


def plan_table(result):
    """The plan as a fixed-width table for the terminal."""
    lines = [f"{'instance':<16} {'type':<13} {'machines':>8} {'runs':>4} {'USD/h':>8} {'fixed s':>8} "
             f"{'hours':>7} {'USD':>9} {'spot USD':>9}  action"]
    for row in result["rows"]:
        def number(value, digits):
            return f"{value:.{digits}f}" if value is not None else "-"
        lines.append(f"{row['instance']:<16} {row['instance_type'] or '-':<13} {row['machines']:>8} {row.get('runs', 1):>4} "
                     f"{number(row['usd_per_hour'], 3):>8} {number(row.get('fixed_s'), 0):>8} "
                     f"{number(row['hours'], 2):>7} {number(row['usd'], 2):>9} {number(row.get('spot_usd'), 2):>9}  "
                     f"{row['action']}" + (f"; {row['spot_note']}" if row.get("spot_note") else ""))
    lines.append(f"total {result['total_usd']:.2f} USD of a {result['budget_usd']:.2f} USD budget, spot rows "
                 "budgeted on demand (their fallback's bill) "
                 f"({result['workload']['epochs']} epochs x {result['train_images']} images)")
    return "\n".join(lines)
