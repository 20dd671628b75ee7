"""The naive baseline a user would use without the model, beside which leave-one-out reports the
model's errors (kpbench.forecast.calibration): the measured rows of the same kind, software and
precision scaled by the ratio of peak FLOP/s; end to end with their measured fixed seconds."""

import statistics

from kpbench.forecast.perf_model import device_kind


def end_to_end_fixed_s(row):
    """A measured row's init and first-epoch excess together; None unless it measured both."""
    fixed = row.get("fixed") or {}
    if fixed.get("init_s") is None or fixed.get("first_epoch_excess_s") is None:
        return None
    return fixed["init_s"] + fixed["first_epoch_excess_s"]


def _naive_references(target, others):
    """The rows a user would scale from: single-machine rows of the same kind (CPU or GPU), of the
    same software and precision where there are any (a baseline across stacks is a straw man)."""
    refs = [r for r in others if r["single"] and device_kind(r["class"]) == device_kind(target["class"])] or \
           [r for r in others if r["single"]]
    alike = [r for r in refs if r["origin"] == target["origin"]
             and r["machine"]["precision"] == target["machine"]["precision"]]
    return alike or refs


def _peak_ratio(target, ref):
    return ref["peak_flops_s"] / target["peak_flops_s"] * target["flops_per_image"] / ref["flops_per_image"]


def naive_seconds(target, others):
    """What a user would do without the model: take the other measured single-machine rows
    (_naive_references), scale each by the ratio of datasheet peak FLOP/s (and by the workers) and
    of the models' FLOPs per image, and take the median."""
    return statistics.median(r["measured_s"] * _peak_ratio(target, r) for r in _naive_references(target, others))


def naive_end_to_end_s(target, others):
    """The naive baseline end to end: the references' fixed seconds as measured, their steady
    seconds scaled by the peak ratio; None where no reference measured its fixed seconds."""
    refs = [r for r in _naive_references(target, others) if end_to_end_fixed_s(r) is not None]
    if not refs:
        return None
    return statistics.median(r["measured_s"] * _peak_ratio(target, r) + end_to_end_fixed_s(r) for r in refs)
