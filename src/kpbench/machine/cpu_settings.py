"""TensorFlow settings that depend on the CPU, chosen from its ISA as /proc/cpuinfo reports it, never
from its name, before TensorFlow is imported (kpbench/__init__.py); every run records them.

oneDNN's graph optimisations (TF_ENABLE_ONEDNN_OPTS, read once, at import): on Linux TensorFlow turns
them on by itself only for CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (IsMklEnabled in
tensorflow/core/util/util.cc). On one AVX2 Zen 3 EPYC, where that default is off, turning them on made
the reference model's step 1.6x faster, the same model (bench/RESULTS.md section 12). kpbench turns
them on for every x86 CPU with AVX2 and FMA: measured on that one CPU, assumed for the others. Elsewhere
TensorFlow's default stands; a value the user exported is kept.
"""

import os

from kpbench.machine.description import describe_cpu

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# Set beside ONEDNN_ENV when kpbench chose its value, so that a run (or a child process) tells kpbench's
# choice from the user's.
CHOSEN_ENV = "KPBENCH_ONEDNN_CHOSEN"
ONEDNN_RULE = ("on for x86 CPUs with AVX2 and FMA (measured 1.6x the step on one AVX2 AMD EPYC, assumed for "
               "the others, bench/RESULTS.md section 12); TensorFlow's default elsewhere")


def this_cpu():
    """This machine's CPU, from /proc/cpuinfo alone (cheap enough for every import of kpbench; TensorFlow
    runs here, whatever description KPBENCH_HARDWARE stands in for the run record)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return describe_cpu({"cpuinfo": handle.read()})
    except OSError:
        return describe_cpu({})


def onednn_rule(cpu):
    """TF_ENABLE_ONEDNN_OPTS as kpbench chooses it for `cpu` (a kpbench.machine.description CPU): "1",
    or None for TensorFlow's own default."""
    isa = cpu.get("isa") or {}
    return "1" if isa.get("avx2") and isa.get("fma") else None


def choose_tensorflow_settings(environ=os.environ, cpu=None):
    """Put the CPU's settings into `environ` where the user has not set them. Runs at every import of
    kpbench: where the value is already set (by the user, or inherited from a parent kpbench) the CPU is
    not read at all."""
    if ONEDNN_ENV in environ:
        return
    value = onednn_rule(cpu or this_cpu())
    if value is not None:
        environ[ONEDNN_ENV], environ[CHOSEN_ENV] = value, "1"


def settings_record(framework, environ=os.environ, cpu=None):
    """For run.json: oneDNN's setting, who set it, the rule, and whether TensorFlow has it on (asked of
    TensorFlow itself, so the record holds even where it was imported before the choice)."""
    if framework != "tf":
        return {"onednn_opts": None, "source": f"not TensorFlow ({framework})"}
    from tensorflow.python.util import _pywrap_util_port

    value = environ.get(ONEDNN_ENV)
    chosen = environ.get(CHOSEN_ENV) == "1" and value == onednn_rule(cpu or this_cpu())
    source = ("TensorFlow's default" if value is None else
              "kpbench's rule, from the CPU's ISA" if chosen else "set in the environment")
    return {"onednn_opts": bool(_pywrap_util_port.IsMklEnabled()), ONEDNN_ENV: value, "source": source,
            "rule": ONEDNN_RULE}
