"""The probe side of the forecast commands: `predict --candidates`' overlay of machines to probe, and
`probe`, which extrapolates probe runs and checks them against full runs."""

import json
from pathlib import Path

from kpbench import KpbenchError
from kpbench.core.layout import SETUP_MEASURED


def write_candidates(result, count, path):
    """The `count` machines of least predicted cost as a configuration overlay of EC2 rows to probe."""
    import yaml

    from kpbench.forecast.probe import candidates

    rows = candidates(result, count)
    header = (f"# The {len(rows)} current catalogue machines of least predicted cost (kpbench predict --candidates),\n"
              "# as EC2 rows to probe: snakemake --cores 8 probe --configfile config/aws.yaml my-aws.yaml THIS-FILE\n")
    path.write_text(header + yaml.safe_dump({"instances": rows}, sort_keys=False))
    print(f"\nprobe candidates written to {path}: {', '.join(r['instance_type'] for r in rows)}")


def _probe(args):
    import pandas as pd

    from kpbench.core.files import write_json
    from kpbench.core.run_reader import read_run
    from kpbench.forecast import rental
    from kpbench.forecast.probe import probe_report, write_probe_csv

    if args.each and len(args.each) != len(args.runs):
        raise KpbenchError(f"--each names {len(args.each)} file(s) for {len(args.runs)} probe(s)")
    config = json.loads(args.settings)
    summary = pd.read_csv(args.summary) if args.summary else None
    report = probe_report([read_run(path) for path in args.runs], [read_run(path) for path in args.full_runs],
                          summary, rental.read_setup(args.setup), config["aws"])
    for path, probe in zip(args.each or [], report["probes"]):
        write_json(path, probe)
    for probe in report["probes"]:
        f = probe["facts"]
        print(f"{probe['instance']}: {f['steady_steps']} steady steps, {1000 * f['step_s']:.1f} ms a step "
              f"(p10 {1000 * f['step_p10_s']:.1f}, p90 {1000 * f['step_p90_s']:.1f}); {probe['epochs']} epochs "
              f"extrapolated: training {probe['train_s']:.1f} s [{probe['train_s_low']:.1f}, {probe['train_s_high']:.1f}], "
              f"run {probe['run_s']:.1f} s; the probe took {probe['probe_s']:.1f} s")
    for check in report["validation"]:
        print(f"{check['instance']}: extrapolated training {check['extrapolated_train_s']:.1f} s against "
              f"{check['measured_train_s']:.1f} s measured ({100 * check['train_error']:+.1f} %), run "
              f"{100 * check['run_error']:+.1f} %; the probe cost {100 * check['probe_share']:.1f} % of the run's time")
    write_json(args.out, report)
    write_probe_csv(report, args.csv)


def add_commands(commands):
    """Register `probe` on the `kpbench` parser's subcommands."""
    p = commands.add_parser("probe", help="probe runs extrapolated to the workload, checked against full runs")
    p.add_argument("--settings", required=True, help="the validated configuration as JSON (the Snakemake rule's)")
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="the probes' run.json files")
    p.add_argument("--full-runs", nargs="*", type=Path, default=[], help="full runs to check the extrapolations against")
    p.add_argument("--summary", type=Path, help="summary.csv: epochs to the quality target of our runs")
    p.add_argument("--setup", type=Path, default=Path(SETUP_MEASURED))
    p.add_argument("--each", nargs="*", type=Path, help="one probe.json per probe, in the order of --runs")
    p.add_argument("--out", type=Path, required=True, help="the probes and their validation as JSON")
    p.add_argument("--csv", type=Path, required=True, help="one row per probe")
    p.set_defaults(func=_probe)
