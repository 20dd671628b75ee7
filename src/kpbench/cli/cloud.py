"""The commands that plan, predict and manage EC2 (`plan`, `predict`, `aws-setup`, `cleanup`): each
reads the configuration through kpbench.core.settings, from the files a user names or as a rule passes it."""

import json
from pathlib import Path

from kpbench import KpbenchError
from kpbench.cli.probes import write_candidates
from kpbench.cli.spot import print_spot, snapshot_spot_prices
from kpbench.core.layout import MEASURED_MODEL_FILE, MEASURED_RUNS, MEASURED_SWEEPS, SETUP_MEASURED, SPOT_SNAPSHOT


def _predicted(config, args):
    """The model's predictions for the configured workload, from whatever has been measured so far."""
    from kpbench.core.catalogue import CAMPAIGN_SPOT_ADVISOR, SPOT_ADVISOR, SPOT_PRICES, priced_at, spot_prices_at
    from kpbench.forecast.predict import configured_workload, load_inputs, predictions

    results = None if args.without_results else args.results
    summary, models, reference, runs = load_inputs(config, results, args.model, args.summary, args.original_model)
    campaign = config.get("campaign")
    snapshot = Path(results, SPOT_SNAPSHOT) if results and Path(results, SPOT_SNAPSHOT).is_file() else None
    return predictions(summary, models, args.runs if args.runs is not None else runs, args.measured,
                       args.catalogue or priced_at(campaign, "config/catalogue.csv"),
                       configured_workload(config), reference,
                       config["training"]["precision"], args.original_logs, args.setup, config["aws"], args.sweeps,
                       args.probes, args.spot_prices or spot_prices_at(campaign, snapshot, SPOT_PRICES),
                       args.spot_advisor or priced_at(campaign, SPOT_ADVISOR, CAMPAIGN_SPOT_ADVISOR))


def _predict(args):
    from kpbench.core.files import write_json
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import ranked, write_csv

    config = load_config(args.configfile, launching=False) if args.configfile else json.loads(args.settings)
    result = _predicted(config, args)
    workload = result["workload"]
    target = (f"{result['epochs_to_target']:g} epochs to the quality target (our measured runs)"
              if result["epochs_to_target"] is not None else
              "no measured run of ours reached the quality target yet, so nothing is priced to it")
    print(f"predicted for the {workload['name']} workload ({workload['train_images']:,} images x "
          f"{workload['epochs']} epochs, batch {workload['batch_size']}, {result['precision']}); {target}. "
          "A rental is provision, boot, set-up, init, first epoch, training and upload, billed per second "
          "with a 60 s minimum; the training's truth lies within [t / band, t x band] in leave-one-out "
          "with the device held out")
    keys = (("cost_usd", "billed cost of the workload"),) + (
        (("time_to_target_s", "time to target"), ("cost_to_target_usd", "cost to target"))
        if result["epochs_to_target"] is not None else ())
    for key, title in keys:
        print(f"\nranked by {title}:")
        print(f"{'instance':<14} {'device':<28} {'img/s':>9} {'rental s':>9} {'fixed s':>8} {'s/epoch':>8} "
              f"{'band':>6} {'USD':>8} {'(high)':>8} {'to target s':>11} {'USD to target':>13}  dominant term")
        for row in ranked(result["catalogue"], key):
            def fmt(value, spec):
                return format(value, spec) if value is not None else "-"
            print(f"{row['instance_type']:<14} {row['device'][:28]:<28} {row['images_per_s']:>9.1f} "
                  f"{row['rental_s']:>9.1f} {row['fixed_s']:>8.1f} {row['per_epoch_s']:>8.2f} "
                  f"{'x' + format(row['band'], '.2f'):>6} {fmt(row['cost_usd'], '.4f'):>8} "
                  f"{fmt(row['cost_usd_high'], '.4f'):>8} {fmt(row['time_to_target_s'], '.1f'):>11} "
                  f"{fmt(row['cost_to_target_usd'], '.4f'):>13}  {row['dominant']}")
    print_spot(result)
    front = [r["instance_type"] for r in result["catalogue"] if r["pareto"]]
    print(f"\nPareto front (end-to-end time against billed cost): {', '.join(front)}")
    for change in result["crossovers"]:
        print(f"cheapest: {change['from']} below about {change['epochs']:.0f} epochs, {change['to']} above")
    first = result["catalogue"][0]
    print(f"per-step floor of this software: {first['floor_s'] * 1000:.1f} ms ({first['floor_source']})")
    for error in result["errors"]:
        for prefix, held_out in (("", "row"), ("machine_out_", "device"), ("stack_out_", "software")):
            if not error[prefix + "rows"]:
                continue
            print(f"leave-one-out ({held_out} held out), {error['group']} ({error[prefix + 'rows']} rows): median "
                  f"{100 * error[prefix + 'median']:.1f} %, worst {100 * error[prefix + 'worst']:.1f} % "
                  f"(naive peak-ratio: {100 * error[prefix + 'naive_median']:.1f} %, "
                  f"{100 * error[prefix + 'naive_worst']:.1f} %)")
            if error[prefix + "e2e_rows"]:
                naive = error[prefix + "e2e_naive_median"]
                print(f"  end to end (init, first epoch, steady epochs; {error[prefix + 'e2e_rows']} rows): median "
                      f"{100 * error[prefix + 'e2e_median']:.1f} %, worst {100 * error[prefix + 'e2e_worst']:.1f} %"
                      + (f" (naive: {100 * naive:.1f} %)" if naive is not None else ""))
    if args.out:
        write_json(args.out, result)
    if args.csv:
        write_csv(result["catalogue"], args.csv)
    if args.candidates:
        write_candidates(result, int(args.candidates[0]), Path(args.candidates[1]))


def _plan(args):
    from kpbench.core import settings
    from kpbench.core.files import write_json
    from kpbench.core.settings import load_config
    from kpbench.forecast.plan import plan, plan_table

    config = load_config(args.configfile, launching=False) if args.configfile else json.loads(args.settings)
    workload = settings.workload(config)
    if args.spot_snapshot:
        snapshot_spot_prices(config, args)
        args.spot_prices = args.spot_snapshot
    prediction = _predicted(config, args)
    predicted = {row["instance_type"]: row for row in prediction["catalogue"]}
    # measured rows at the original study's batch: ours by instance name, the study's by its row name
    measured = {row["name"]: row["images_per_s"] for row in prediction["validation"]}
    if args.probe:
        from kpbench.forecast.probe import check_probe_plan, probe_workload

        capped = settings.probe_caps(config)
        result = plan(config["instances"], probe_workload(workload, config["probe"]),
                      config["original_study"]["train_images"], capped["aws"], predicted, measured)
        print(plan_table(result))
        check_probe_plan(result, config["probe"])
        if args.out:
            write_json(args.out, result)
        return
    result = plan(config["instances"], workload, config["original_study"]["train_images"], config["aws"],
                  predicted, measured, repeats=config["repeats"])
    print(plan_table(result))
    if not result["within_budget"]:
        raise KpbenchError(f"the plan costs {result['total_usd']:.2f} USD, over aws.budget_usd = "
                           f"{result['budget_usd']:.2f}: nothing launched. Raise the budget, or run fewer "
                           "instances or a smaller workload.")
    if config["aws"]["quota_check"] and not args.no_quota_check:
        _check_quotas(config, result)
    if args.out:
        write_json(args.out, result)


def _check_quotas(config, result):
    """Refuse a campaign whose vCPUs at once exceed the account's EC2 quotas, before anything launches."""
    from kpbench.backends.aws import api

    needed = api.vcpus_needed(config["instances"], config["repeats"])
    if not needed:
        return
    with api.translated(region=config["aws"]["region"]):
        quotas = api.client(api.session(config["aws"]), "service-quotas")
        problems = api.quota_shortfalls(quotas, needed, config["aws"]["region"])
    result["vcpus_needed"] = {code: vcpus for (_, code), vcpus in needed.items()}
    if problems:
        raise KpbenchError("the account's EC2 vCPU quotas are too low for this campaign; nothing launched:\n"
                           + "\n".join(f"  {problem}" for problem in problems))
    print("vCPU quotas suffice: " + ", ".join(f"{name} {vcpus}" for (name, _), vcpus in sorted(needed.items())))


def _aws_setup(args):
    from kpbench.backends.aws.account import setup
    from kpbench.core.files import write_json
    from kpbench.core.settings import load_config

    aws = load_config(args.configfile)["aws"] if args.configfile else json.loads(args.aws)
    if not aws["bucket"]:
        raise KpbenchError("aws-setup needs aws.bucket (an S3 bucket name of yours)")
    result = setup(aws)
    print(f"bucket {result['bucket']} and instance profile {result['instance_profile']} ready in {result['region']}")
    if args.out:
        write_json(args.out, result)


def _cleanup(args):
    from kpbench.backends.aws.account import cleanup
    from kpbench.core.settings import load_config

    report = cleanup(load_config(args.configfile)["aws"], run_id=args.run_id, expired_only=args.expired,
                     everything=args.all, regions=args.region, all_regions=args.all_regions)
    print(f"terminated {len(report['terminated'])} instance(s) {' '.join(report['terminated'])}; cancelled "
          f"{len(report['spot_requests'])} spot request(s) {' '.join(report['spot_requests'])}; removed "
          f"{len(report['security_groups'])} security group(s) and {report['s3_objects_removed']} S3 object(s) "
          f"of {len(report['runs'])} run(s); looked in {', '.join(report['regions'])}")
    for line in report.get("removed_setup", []):
        print(f"removed {line}" if "kept" not in line else line)


def _prediction_inputs(p):
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results folder (summary.csv, model.json, runs/); the original study's rows alone if empty")
    p.add_argument("--without-results", action="store_true",
                   help="read nothing of the results folder: price from the original study's rows and the runs "
                        "measured elsewhere only (the plan rule's: a campaign's runs come after its plan)")
    p.add_argument("--summary", type=Path, help="summary.csv (default: the results folder's)")
    p.add_argument("--model", type=Path, help="model.json (default: the results folder's, else made from the model)")
    p.add_argument("--original-model", type=Path,
                   help="the original study's model description (default: the results folder's original_model.json, "
                        "else model.json where the configured model is the original study's, else made from the model)")
    p.add_argument("--runs", nargs="*", type=Path, help="our run.json files (default: the results folder's)")
    p.add_argument("--measured", nargs="*", type=Path, default=sorted(Path().glob(MEASURED_RUNS)),
                   help=f"further measured run.json files, each with its model's {MEASURED_MODEL_FILE} beside it "
                        f"(default: {MEASURED_RUNS})")
    p.add_argument("--probes", nargs="*", type=Path, default=[],
                   help="probes' run.json files (rule probe_run): measured rows of their devices")
    p.add_argument("--catalogue", type=Path,
                   help="the machine catalogue (default: a stored campaign's own, else config/catalogue.csv)")
    p.add_argument("--original-logs", type=Path, default=Path("config/original_study_runs.json"),
                   help="the original study's runs as its logs show them (rule original_logs); the published "
                        "totals stand in where it is absent")
    p.add_argument("--setup", type=Path, default=Path(SETUP_MEASURED),
                   help=f"the measured set-up of a machine: package bytes and install seconds (default: {SETUP_MEASURED}, "
                        "made by bench/setup.py)")
    p.add_argument("--sweeps", nargs="*", type=Path, default=sorted(Path().glob(MEASURED_SWEEPS)),
                   help=f"batch sweeps (bench/batch_sweep.py), a stack's per-step floor on a GPU (default: {MEASURED_SWEEPS})")
    p.add_argument("--spot-prices", type=Path,
                   help=f"spot prices per zone (default: a stored campaign's own, else the results' plan snapshot "
                        f"{SPOT_SNAPSHOT}, else config/spot_prices.csv)")
    p.add_argument("--spot-advisor", type=Path,
                   help="interruption bands per type (default: a stored campaign's own, else config/spot_advisor.csv)")


def add_commands(commands):
    """Register the commands on the `kpbench` parser's subcommands."""
    configfiles = {"nargs": "+", "type": Path, "metavar": "FILE",
                   "help": "configuration files, later ones overriding earlier ones (as snakemake --configfile)"}
    p = commands.add_parser("plan", help="expected EC2 hours and cost of the configured matrix, against the budget")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", **configfiles)
    source.add_argument("--settings", help="the validated configuration as JSON (the Snakemake rule's)")
    p.add_argument("--out", type=Path, help="write the plan as JSON (only when within budget and quotas)")
    p.add_argument("--no-quota-check", action="store_true",
                   help="skip the account's EC2 vCPU quota check (offline planning; needs no credentials)")
    p.add_argument("--spot-snapshot", type=Path,
                   help="take the spot prices in effect (DescribeSpotPriceHistory) into this file, and price from it")
    p.add_argument("--probe", action="store_true",
                   help="plan the probes (config probe:) instead of the runs: refused over probe.max_usd or max_total_usd")
    _prediction_inputs(p)
    p.set_defaults(func=_plan)

    p = commands.add_parser("predict", help="every catalogue machine ranked by predicted time and cost to target")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", **configfiles)
    source.add_argument("--settings", help="the validated configuration as JSON (the Snakemake rule's)")
    _prediction_inputs(p)
    p.add_argument("--out", type=Path, help="write the predictions and their validation as JSON")
    p.add_argument("--csv", type=Path, help="write the predicted catalogue as CSV")
    p.add_argument("--candidates", nargs=2, metavar=("K", "FILE"),
                   help="write the K machines of least predicted cost as a configuration overlay of EC2 rows to probe")
    p.set_defaults(func=_predict)

    p = commands.add_parser("aws-setup", help="create (idempotently) the bucket, role and instance profile EC2 runs use")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", **configfiles)
    source.add_argument("--aws", help="the validated configuration's aws section as JSON (the Snakemake rule's)")
    p.add_argument("--out", type=Path, help="write what was set up as JSON")
    p.set_defaults(func=_aws_setup)

    p = commands.add_parser("cleanup", help="terminate kpbench's EC2 instances and remove their runs' S3 prefixes")
    p.add_argument("--configfile", default=[Path("config/config.yaml")], **configfiles)
    p.add_argument("--run-id", help="only this run (as printed by the launcher)")
    p.add_argument("--expired", action="store_true", help="only instances past their kpbench:expires-at tag")
    p.add_argument("--all", action="store_true",
                   help="also remove what aws-setup made (instance profile, role, and the bucket if only kpbench's)")
    p.add_argument("--region", action="append", default=[], metavar="REGION",
                   help="also look in this region (repeatable): where an earlier aws.region launched runs")
    p.add_argument("--all-regions", action="store_true", help="look in every region enabled for the account")
    p.set_defaults(func=_cleanup)
