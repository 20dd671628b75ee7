"""`python -m kpbench <stage>`: the commands the Snakemake rules call, one per stage.

Heavy imports (TensorFlow above all) happen inside the command that needs them, so `figures` and
`paper` run in a second and `train` can time its own imports.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from kpbench import KpbenchError
from kpbench.cli import cloud, probes, spot
from kpbench.core.read_trace import trace_reads, write_trace


def _fetch(args):
    from kpbench.data.sources import fetch_raw

    fetch_raw(json.loads(args.data_config), args.out)


def _preprocess(args):
    from kpbench.data.preprocess import preprocess

    stats = preprocess(args.raw, args.dataset, args.stats, args.samples, args.validation_fraction, args.seed)
    print(f"{stats['rows']} training rows ({stats['complete_rows']} complete): "
          f"{stats['train_rows']} train, {stats['validation_rows']} validation, {stats['test_rows']} test")


def _describe_model(args):
    from kpbench.core.files import write_json
    from kpbench.model.registry import describe_model

    description = describe_model(args.model)
    write_json(args.out, description)
    print(f"{description['name']}: {description['parameters']:,} parameters")


def _train(args):
    from kpbench.backends.launch import run_instance
    from kpbench.core.files import read_json
    from kpbench.train.run import load_spec

    try:
        launch = read_json(args.launch)
    except (OSError, ValueError) as exc:
        raise KpbenchError(f"{args.launch}: cannot read the launch settings: {exc}") from None
    run = run_instance(load_spec(args.spec), launch, args.dataset, args.out)
    t, m = run["timings"], run["metrics"]
    print(f"{run['instance']['name']}: init {t['init_s']:.1f} s, train {t['train_s']:.1f} s, "
          f"{t['images_per_s']:.1f} img/s, validation RMSE {m['val_rmse_px']:.3f} px")


def _worker(args):
    """One training process. SIGUSR1 writes every thread's stack into its log (the launcher asks
    for it when the worker stalls). Once its files are written it ends without interpreter
    teardown: TensorFlow's collective runtime can block there after a peer has gone
    (tensorflow/tensorflow#58434), and a worker that trained and wrote everything is done."""
    import faulthandler
    import signal

    from kpbench.backends.run_lock import die_with_launcher
    from kpbench.train.run import load_spec, run_training

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    die_with_launcher()
    run_training(load_spec(args.spec), args.dataset, args.out, args.backup_dir)
    write_trace()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _forward_fill(args):
    from kpbench.analysis.forward_fill import measure

    result = measure(args.training, args.out, args.source, args.truth, args.dataset, args.run)
    if result:
        models = result["models"]
        print(f"forward fill invents {100 * result['invented_share']:.1f} % of the labels, "
              f"{result['invented_error_px']:.2f} px off on average; validation RMSE on blank keypoints: "
              f"forward-filled {models['forward_filled']['blank_rmse_px']:.2f} px, "
              f"masked {models['masked']['blank_rmse_px']:.2f} px")


def _precision(args):
    from kpbench.analysis.precision import BF16, compare
    from kpbench.core.files import read_json
    from kpbench.train.run import load_spec

    result = compare(args.reference, load_spec(args.spec), read_json(args.launch), args.dataset, args.run_dir, args.out)
    if result:
        print(f"{BF16}: steps {result['step_speedup']:.2f}x FP32's, validation RMSE "
              f"{result[BF16]['val_rmse_px']:.2f} px against {result['reference']['val_rmse_px']:.2f} px")
    else:
        print(f"{BF16} not measured: {read_json(args.out)['reason']}")


def _original_logs(args):
    from kpbench.analysis.original_logs import write_parsed

    for run in write_parsed(args.logs, args.epochs, args.runs):
        print(f"{run['instance']}: {run['epochs']} epochs, steady step {run['step_s']['median'] * 1000:.0f} ms")


def _store_campaign(args):
    from kpbench.core.campaign import store_campaign

    folder = store_campaign(args.results, args.configfile, args.out)
    print(f"stored campaign in {folder}; rebuild its paper with:\n"
          f"  snakemake --cores 1 paper --configfile {folder}/config.yaml")


def _remote_worker(args):
    from kpbench.backends.aws.instance import remote_worker

    remote_worker(args.bucket, args.prefix, args.workdir)


def _data_commands(commands):
    """fetch, preprocess, describe-model: the data and the model."""
    p = commands.add_parser("fetch", help="write the raw Kaggle-format CSVs for the configured source")
    p.add_argument("--data-config", required=True, help="the config's data section as JSON")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_fetch)

    p = commands.add_parser("preprocess", help="raw CSVs → masked arrays, statistics and sample faces")
    p.add_argument("--raw", required=True, type=Path)
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument("--samples", required=True, type=Path)
    p.add_argument("--validation-fraction", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.set_defaults(func=_preprocess)

    p = commands.add_parser("describe-model", help="layer table, parameters and FLOPs of a registered model")
    p.add_argument("--model", required=True, help="its name in kpbench.model.registry.MODELS (workloads.<name>.model)")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_describe_model)


def _training_commands(commands):
    """train, worker, forward-fill, precision: the timed runs."""
    p = commands.add_parser("train", help="one instance's timed run, through its backend")
    p.add_argument("--spec", required=True, help="run spec as JSON, or @file")
    p.add_argument("--launch", required=True, type=Path, help="launch settings (limits, aws) as a JSON file")
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

    p = commands.add_parser("precision", help="the reference run again in mixed_bfloat16, on a CPU with bfloat16 units")
    p.add_argument("--reference", required=True, type=Path, help="run.json of the FP32 run to compare with")
    p.add_argument("--spec", required=True, help="that run's spec as JSON, or @file")
    p.add_argument("--launch", required=True, type=Path, help="launch settings (limits) as a JSON file")
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--run-dir", required=True, type=Path, help="where the mixed_bfloat16 run is written")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_precision)


def _analysis_commands(commands):
    """original-logs: the original study's logs as tables (the other analysis stages are the
    workflow's alone: kpbench.cli.rule_stages)."""
    p = commands.add_parser("original-logs", help="the original study's console logs as tables")
    p.add_argument("--logs", nargs="+", required=True, type=Path, help="its Keras logs (gzip or plain)")
    p.add_argument("--epochs", required=True, type=Path, help="the per-epoch table to write (CSV)")
    p.add_argument("--runs", required=True, type=Path, help="the per-run facts to write (JSON)")
    p.set_defaults(func=_original_logs)


def _campaign_commands(commands):
    """remote-worker (on an EC2 instance), store-campaign."""
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


def build_parser():
    parser = argparse.ArgumentParser(prog="kpbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_data_commands, _training_commands, _analysis_commands, cloud.add_commands, probes.add_commands,
                spot.add_commands, _campaign_commands):
        add(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    trace_reads(args.command)
    try:
        args.func(args)
    except KpbenchError as exc:
        print(f"kpbench {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
