"""`python -m kpbench <stage>`: the commands the Snakemake rules call, one per stage.

Heavy imports (TensorFlow above all) happen inside the command that needs them, so `figures` and
`paper` run in a second and `train` can time its own imports.
"""

import argparse
import json
import sys
from pathlib import Path

from kpbench import KpbenchError


def _fetch(args):
    from kpbench.data import fetch_raw

    fetch_raw(json.loads(args.data_config), args.out)


def _preprocess(args):
    from kpbench.data import preprocess

    stats = preprocess(args.raw, args.dataset, args.stats, args.samples, args.validation_fraction, args.seed)
    print(f"{stats['rows']} training rows ({stats['complete_rows']} complete): "
          f"{stats['train_rows']} train, {stats['validation_rows']} validation, {stats['test_rows']} test")


def _describe_model(args):
    from kpbench.io import write_json
    from kpbench.model import describe_model

    description = describe_model()
    write_json(args.out, description)
    print(f"{description['name']}: {description['parameters']:,} parameters")


def _train(args):
    from kpbench.backends import run_instance
    from kpbench.io import read_json
    from kpbench.train import load_spec

    run = run_instance(load_spec(args.spec), read_json(args.launch), args.dataset, args.out)
    t, m = run["timings"], run["metrics"]
    print(f"{run['instance']['name']}: init {t['init_s']:.1f} s, train {t['train_s']:.1f} s, "
          f"{t['images_per_s']:.1f} img/s, validation RMSE {m['val_rmse_px']:.3f} px")


def _worker(args):
    from kpbench.guard import die_with_launcher
    from kpbench.train import load_spec, run_training

    die_with_launcher()
    run_training(load_spec(args.spec), args.dataset, args.out, args.backup_dir)


def _forward_fill(args):
    from kpbench.forward_fill import measure

    result = measure(args.training, args.out, args.source, args.truth, args.dataset, args.run)
    if result:
        models = result["models"]
        print(f"forward fill invents {100 * result['invented_share']:.1f} % of the labels, "
              f"{result['invented_error_px']:.2f} px off on average; validation RMSE on blank keypoints: "
              f"forward-filled {models['forward_filled']['blank_rmse_px']:.2f} px, "
              f"masked {models['masked']['blank_rmse_px']:.2f} px")


def _aggregate(args):
    from kpbench.aggregate import summarise

    from kpbench.io import read_json

    reference = json.loads(args.reference)
    reference["training_flops_per_image"] = read_json(args.model)["training_flops_per_image"]
    frame = summarise(args.runs, args.original, reference, args.out, args.target_rmse)
    print(f"{len(frame)} rows written to {args.out}")


def _figures(args):
    from kpbench.figures import render_all

    render_all(args.summary, args.samples, args.runs, args.model, args.scaling_reference, args.out,
               forward_fill_path=args.forward_fill, predictions_path=args.predictions)


def _paper(args):
    from kpbench.paper import build_context, render

    context = build_context(args.summary, args.stats, args.model, args.runs, json.loads(args.settings),
                            forward_fill_path=args.forward_fill, predictions_path=args.predictions)
    for path in render(args.templates, args.out, context):
        print(path)


def _store_campaign(args):
    from kpbench.campaign import store_campaign

    folder = store_campaign(args.results, args.configfile, args.out)
    print(f"stored campaign in {folder}; rebuild its paper with:\n"
          f"  snakemake --cores 1 paper --configfile {folder}/config.yaml")


def _predicted(config, args):
    """The model's predictions for the configured workload, from whatever has been measured so far."""
    from kpbench.predict import configured_workload, load_inputs, predictions

    summary, model, reference, runs = load_inputs(config, args.results, args.model, args.summary)
    return predictions(summary, model, args.runs if args.runs is not None else runs, args.measured,
                       args.catalogue, configured_workload(config), reference,
                       config["training"].get("precision", "float32"))


def _predict(args):
    from kpbench.io import write_json
    from kpbench.predict import ranked, write_csv
    from kpbench.settings import load_config

    config = load_config(args.configfile) if args.configfile else json.loads(args.settings)
    result = _predicted(config, args)
    workload = result["workload"]
    print(f"predicted for the {workload['name']} workload ({workload['train_images']:,} images x "
          f"{workload['epochs']} epochs, batch {workload['batch_size']}, {result['precision']}); "
          f"{result['epochs_to_target']} epochs to target (our measured runs); the truth lies within "
          "[t / band, t x band] in leave-one-out")
    for key, title in (("time_to_target_s", "time to target"), ("cost_to_target_usd", "cost to target")):
        print(f"\nranked by {title}:")
        print(f"{'instance':<14} {'device':<32} {'img/s':>9} {'train s':>9} {'band':>6} {'USD':>8} "
              f"{'to target s':>11} {'USD to target':>13} {'(high)':>9}")
        for row in ranked(result["catalogue"], key):
            def fmt(value, spec):
                return format(value, spec) if value is not None else "-"
            print(f"{row['instance_type']:<14} {row['device']:<32} {row['images_per_s']:>9.1f} "
                  f"{row['train_s']:>9.1f} {'x' + format(row['band'], '.2f'):>6} {fmt(row['cost_usd'], '.4f'):>8} "
                  f"{fmt(row['time_to_target_s'], '.1f'):>11} {fmt(row['cost_to_target_usd'], '.4f'):>13} "
                  f"{fmt(row['cost_to_target_usd_high'], '.4f'):>9}")
    for error in result["errors"]:
        print(f"leave-one-out, {error['group']} ({error['rows']} rows): median {100 * error['median']:.1f} %, "
              f"worst {100 * error['worst']:.1f} % (naive peak-ratio: {100 * error['naive_median']:.1f} %, "
              f"{100 * error['naive_worst']:.1f} %)")
    if args.out:
        write_json(args.out, result)
    if args.csv:
        write_csv(result["catalogue"], args.csv)


def _plan(args):
    from kpbench.costs import plan, plan_table
    from kpbench.io import write_json
    from kpbench.settings import load_config

    config = load_config(args.configfile) if args.configfile else json.loads(args.settings)
    workload = {"name": config["workload"], **config["workloads"][config["workload"]]}
    predicted = {row["instance_type"]: row for row in _predicted(config, args)["catalogue"]}
    result = plan(config["instances"], workload, config["original_study"]["train_images"], config["aws"],
                  predicted, repeats=int(config.get("repeats", 1)))
    print(plan_table(result))
    if not result["within_budget"]:
        raise KpbenchError(f"the plan costs {result['total_usd']:.2f} USD, over aws.budget_usd = "
                           f"{result['budget_usd']:.2f}: nothing launched. Raise the budget, or run fewer "
                           "instances or a smaller workload.")
    if not args.no_quota_check:
        _check_quotas(config, result)
    if args.out:
        write_json(args.out, result)


def _check_quotas(config, result):
    """Refuse a campaign whose vCPUs at once exceed the account's EC2 quotas, before anything launches."""
    from kpbench import aws

    needed = aws.vcpus_needed(config["instances"], int(config.get("repeats", 1)))
    if not needed:
        return
    with aws.translated(region=config["aws"].get("region")):
        quotas = aws.client(aws.session(config["aws"]), "service-quotas")
        problems = aws.quota_shortfalls(quotas, needed, config["aws"].get("region"))
    result["vcpus_needed"] = {code: vcpus for (_, code), vcpus in needed.items()}
    if problems:
        raise KpbenchError("the account's EC2 vCPU quotas are too low for this campaign; nothing launched:\n"
                           + "\n".join(f"  {problem}" for problem in problems))
    print("vCPU quotas suffice: " + ", ".join(f"{name} {vcpus}" for (name, _), vcpus in sorted(needed.items())))


def _aws_setup(args):
    from kpbench.aws_account import setup
    from kpbench.io import write_json
    from kpbench.settings import load_config

    config = load_config(args.configfile) if args.configfile else json.loads(args.settings)
    if not config["aws"].get("bucket"):
        raise KpbenchError("aws-setup needs aws.bucket (an S3 bucket name of yours)")
    result = setup(config["aws"])
    print(f"bucket {result['bucket']} and instance profile {result['instance_profile']} ready in {result['region']}")
    if args.out:
        write_json(args.out, result)


def _cleanup(args):
    from kpbench.aws_account import cleanup
    from kpbench.settings import load_config

    report = cleanup(load_config(args.configfile)["aws"], run_id=args.run_id, expired_only=args.expired,
                     everything=args.all)
    print(f"terminated {len(report['terminated'])} instance(s) {' '.join(report['terminated'])}; removed "
          f"{len(report['security_groups'])} security group(s) and {report['s3_objects_removed']} S3 object(s) "
          f"of {len(report['runs'])} run(s)")
    for line in report.get("removed_setup", []):
        print(f"removed {line}" if "kept" not in line else line)


def _remote_worker(args):
    from kpbench.remote import remote_worker

    remote_worker(args.bucket, args.prefix, args.workdir)


def _prediction_inputs(p):
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results folder (summary.csv, model.json, runs/); the original study's rows alone if empty")
    p.add_argument("--summary", type=Path, help="summary.csv (default: the results folder's)")
    p.add_argument("--model", type=Path, help="model.json (default: the results folder's, else made from the model)")
    p.add_argument("--runs", nargs="*", type=Path, help="our run.json files (default: the results folder's)")
    p.add_argument("--measured", nargs="*", type=Path, default=sorted(Path("bench/measured").glob("*/run.json")),
                   help="further measured run.json files (default: bench/measured/*/run.json)")
    p.add_argument("--catalogue", type=Path, default=Path("config/catalogue.csv"))


def build_parser():
    parser = argparse.ArgumentParser(prog="kpbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("fetch", help="write the raw Kaggle-format CSVs for the configured source")
    p.add_argument("--data-config", required=True, help="the config's data section as JSON")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_fetch)

    p = commands.add_parser("preprocess", help="raw CSVs → masked arrays, statistics and sample faces")
    p.add_argument("--raw", required=True, type=Path)
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument("--samples", required=True, type=Path)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_preprocess)

    p = commands.add_parser("describe-model", help="layer table, parameters and FLOPs of the reference CNN")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_describe_model)

    p = commands.add_parser("train", help="one instance's timed run, through its backend")
    p.add_argument("--spec", required=True, help="run spec as JSON, or @file")
    p.add_argument("--launch", required=True, type=Path, help="how the run is launched: limits and aws, as JSON")
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_train)

    p = commands.add_parser("worker", help="one training process (started by a backend)")
    p.add_argument("--spec", required=True, help="run spec as JSON, or @file")
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--backup-dir", type=Path, help="checkpoint folder to resume an interrupted run from")
    p.set_defaults(func=_worker)

    p = commands.add_parser("forward-fill", help="what the original study's forward fill costs, against the truth")
    p.add_argument("--training", required=True, type=Path, help="training.csv")
    p.add_argument("--source", required=True, help="the data source (only synthetic has a ground truth)")
    p.add_argument("--truth", type=Path, help="truth.npz of the synthetic faces; without it, no training")
    p.add_argument("--dataset", type=Path, help="dataset.npz (with --truth)")
    p.add_argument("--run", type=Path, help="run.json of the masked run to compare with (with --truth)")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_forward_fill)

    p = commands.add_parser("aggregate", help="run.json files + original study → summary.csv")
    p.add_argument("--runs", nargs="+", required=True, type=Path)
    p.add_argument("--original", required=True, type=Path)
    p.add_argument("--reference", required=True, help="the original study's workload as JSON")
    p.add_argument("--target-rmse", type=float, help="validation RMSE target in pixels (time-to-target)")
    p.add_argument("--model", required=True, type=Path, help="results/model.json (FLOPs per image, for MFU)")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_aggregate)

    p = commands.add_parser("figures", help="the paper's figures from stored results")
    p.add_argument("--summary", required=True, type=Path)
    p.add_argument("--samples", required=True, type=Path)
    p.add_argument("--runs", nargs="+", required=True, type=Path)
    p.add_argument("--model", required=True, type=Path, help="results/model.json (gradient bytes)")
    p.add_argument("--scaling-reference", required=True, help="original-study row the scaling model predicts")
    p.add_argument("--forward-fill", nargs="?", type=Path,
                   help="results/forward_fill.json (absent from campaigns stored before it existed)")
    p.add_argument("--predictions", type=Path, help="predictions.json of `kpbench predict`")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_figures)

    p = commands.add_parser("paper", help="render the LaTeX sources from stored results")
    p.add_argument("--summary", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--runs", nargs="+", required=True, type=Path)
    p.add_argument("--forward-fill", nargs="?", type=Path,
                   help="results/forward_fill.json (absent from campaigns stored before it existed)")
    p.add_argument("--predictions", type=Path, help="predictions.json of `kpbench predict`")
    p.add_argument("--settings", required=True, help="configuration the text cites, as JSON")
    p.add_argument("--templates", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_paper)
    configfiles = {"nargs": "+", "type": Path, "metavar": "FILE",
                   "help": "configuration files, later ones overriding earlier ones (as snakemake --configfile)"}
    p = commands.add_parser("plan", help="expected EC2 hours and cost of the configured matrix, against the budget")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", **configfiles)
    source.add_argument("--settings", help="the validated configuration as JSON (the Snakemake rule's)")
    p.add_argument("--out", type=Path, help="write the plan as JSON (only when within budget and quotas)")
    p.add_argument("--no-quota-check", action="store_true",
                   help="skip the account's EC2 vCPU quota check (offline planning; needs no credentials)")
    _prediction_inputs(p)
    p.set_defaults(func=_plan)

    p = commands.add_parser("predict", help="every catalogue machine ranked by predicted time and cost to target")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", **configfiles)
    source.add_argument("--settings", help="the validated configuration as JSON (the Snakemake rule's)")
    _prediction_inputs(p)
    p.add_argument("--out", type=Path, help="write the predictions and their validation as JSON")
    p.add_argument("--csv", type=Path, help="write the predicted catalogue as CSV")
    p.set_defaults(func=_predict)

    p = commands.add_parser("aws-setup", help="create (idempotently) the bucket, role and instance profile EC2 runs use")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", **configfiles)
    source.add_argument("--settings", help="the validated configuration as JSON (the Snakemake rule's)")
    p.add_argument("--out", type=Path, help="write what was set up as JSON")
    p.set_defaults(func=_aws_setup)

    p = commands.add_parser("cleanup", help="terminate kpbench's EC2 instances and remove their runs' S3 prefixes")
    p.add_argument("--configfile", default=[Path("config/config.yaml")], **configfiles)
    p.add_argument("--run-id", help="only this run (as printed by the launcher)")
    p.add_argument("--expired", action="store_true", help="only instances past their kpbench:expires-at tag")
    p.add_argument("--all", action="store_true",
                   help="also remove what aws-setup made (instance profile, role, and the bucket if only kpbench's)")
    p.set_defaults(func=_cleanup)

    p = commands.add_parser("remote-worker", help="the training run on an EC2 instance (started by its user data)")
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--workdir", required=True, type=Path)
    p.set_defaults(func=_remote_worker)

    p = commands.add_parser("store-campaign", help="keep finished results as a campaign reviewers can rebuild")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--configfile", type=Path, nargs="+", default=[Path("config/config.yaml")],
                   help="the configuration the results were made with, overlays last")
    p.add_argument("--out", type=Path, required=True, help="e.g. campaigns/2026-11-25-default")
    p.set_defaults(func=_store_campaign)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KpbenchError as exc:
        print(f"kpbench {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
