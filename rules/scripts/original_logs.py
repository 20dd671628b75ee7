"""Rule original_logs: the study's logs parsed into its two tracked tables (kpbench.original_logs)."""

from kpbench.original_logs import write_parsed

write_parsed(snakemake.input.logs, snakemake.output.epochs, snakemake.output.runs)  # noqa: F821
