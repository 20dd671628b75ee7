# A rule-only stage (kpbench.cli.rule_stages), run by Snakemake's script: directive with the rule's
# own input, params, output and log.
from kpbench.cli.rule_stages import run_rule

run_rule(snakemake)  # noqa: F821 (Snakemake defines it)
