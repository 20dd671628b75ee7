"""The spot side of the cloud commands: `predict`'s on-demand/spot table, `plan`'s dated snapshot of
the spot prices in effect, and `spot-advisor`, which refreshes the interruption bands."""

import json
from pathlib import Path


def print_spot(result):
    """On demand and spot side by side, for the rental `predict` ranks (to the target where known)."""
    from kpbench.forecast.predict import cost_key, ranked

    key = cost_key(result)
    scope = "to the quality target" if key == "cost_to_target_usd" else "for the workload"
    inputs = result["spot_inputs"]
    print(f"\non demand against spot, {scope} (spot prices: {inputs['prices'] or 'none'}; interruption bands: "
          f"{inputs['advisor'] or 'none'}; expected cost = spot price x expected time with restarts):")
    print(f"{'instance':<14} {'on-demand USD':>13} {'spot USD/h':>10} {'zones':>5} {'band':>6} {'interruptions':>13} "
          f"{'spot USD':>9} {'saves':>6}  cheaper bet")
    rows = ranked(result["catalogue"], "cost_usd")
    for row in (row for row in rows if row[key] is not None):
        side = row["spot"]
        on_demand = row[key]
        if "usd" not in side:  # no band: the bill if never interrupted, a lower bound (>=)
            price, floor = side.get("usd_per_hour"), side.get("usd_if_uninterrupted")
            print(f"{row['instance_type']:<14} {on_demand:>13.4f} {'-' if price is None else format(price, '.4f'):>10} "
                  f"{side.get('zones', '-'):>5} {'-':>6} {'-':>13} {'-' if floor is None else '>=' + format(floor, '.4f'):>9} "
                  f"{'-':>6}  unknown: {side['missing']}")
            continue
        print(f"{row['instance_type']:<14} {on_demand:>13.4f} {side['usd_per_hour']:>10.4f} {side['zones']:>5} "
              f"{side['band']:>6} {side['interruptions']:>13.4f} {side['usd']:>9.4f} {100 * side['saving']:>5.0f}%  "
              f"{'spot' if side['cheaper'] else 'on demand'}")
    untargeted = [row["instance_type"] for row in rows if row[key] is None]
    if untargeted:
        print(f"no time to the target, so not compared: {', '.join(untargeted)} (no run of ours with as many replicas "
              "reached it)")


def snapshot_spot_prices(config, args):
    """The spot prices in effect now for the rented rows' types (DescribeSpotPriceHistory), kept as the
    campaign's dated snapshot; planning offline, the dated default stands in, and the snapshot says so."""
    from kpbench.core.catalogue import SPOT_PRICES
    from kpbench.core.files import write_json
    from kpbench.core.settings import rented_instances
    from kpbench.forecast import spot

    region = config["aws"]["region"]
    types = sorted({row["instance_type"] for row in config["instances"] if row["name"] in rented_instances(config)})
    if config["aws"]["quota_check"] and not args.no_quota_check and types:
        from kpbench.backends.aws import api

        with api.translated(region=region):
            snapshot = spot.take_snapshot(api.client(api.session(config["aws"]), "ec2"), types, region)
    else:
        snapshot = spot.snapshot_of(spot.read_prices(SPOT_PRICES), region, "planned offline: no prices asked of EC2")
    write_json(args.spot_snapshot, snapshot)
    print(f"spot prices: {len(snapshot['prices'])} type-zone price(s) from {snapshot['source']}, "
          f"{snapshot['taken_at']} ({args.spot_snapshot})")


def _spot_advisor(args):
    """Refresh config/spot_advisor.csv from AWS's Spot Instance Advisor data (network needed), for the
    catalogue's current types, dated today."""
    import csv
    import datetime as dt
    import urllib.request

    from kpbench.core.catalogue import read_catalogue
    from kpbench.core.files import atomic_path
    from kpbench.forecast import spot

    if args.json:
        payload = json.loads(args.json.read_text())
    else:
        with urllib.request.urlopen(spot.ADVISOR_URL, timeout=60) as answer:
            payload = json.loads(answer.read())
    types = [row["instance_type"] for row in read_catalogue(args.catalogue) if row["status"] == "current"]
    rows = spot.advisor_rows(payload, args.region, types, dt.date.today().isoformat())
    with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=spot.ADVISOR_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    missing = sorted(set(types) - {row["instance_type"] for row in rows})
    print(f"{args.out}: {len(rows)} type(s) in {args.region}" + (f"; none for {', '.join(missing)}" if missing else ""))


def add_commands(commands):
    """Register `spot-advisor` on the `kpbench` parser's subcommands."""
    p = commands.add_parser("spot-advisor", help="refresh config/spot_advisor.csv from AWS's Spot Instance Advisor data")
    p.add_argument("--region", required=True, help="the region whose bands to keep (aws.region)")
    p.add_argument("--catalogue", type=Path, default=Path("config/catalogue.csv"), help="whose current types to keep")
    p.add_argument("--json", type=Path, help="a saved copy of the Advisor's JSON instead of downloading it")
    p.add_argument("--out", type=Path, default=Path("config/spot_advisor.csv"))
    p.set_defaults(func=_spot_advisor)
