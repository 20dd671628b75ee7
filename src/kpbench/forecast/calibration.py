"""Calibration and its validation: the performance model's efficiency per device class from every
measured row (ours, the original study's, bench/measured/), and leave-one-out over those rows beside
the naive peak-ratio baseline. kpbench.forecast.predict applies it to the catalogue."""

import math

from kpbench import KpbenchError
from kpbench.analysis.precision import bf16_units
from kpbench.analysis.scaling import cluster_fits, prediction_latency
from kpbench.backends import registry
from kpbench.core import billing
from kpbench.core.layout import SOURCE_ORIGINAL, original_instance_type
from kpbench.core.run_reader import run_model
from kpbench.forecast.baseline import end_to_end_fixed_s, naive_end_to_end_s, naive_seconds
from kpbench.forecast.perf_model import device_kind, device_peaks, ideal_epoch_s, machine, predict_seconds
from kpbench.forecast.rental import fixed_terms, is_floor_bound, run_fixed_terms, step_floor
from kpbench.machine.detect import FRAMEWORKS
from kpbench.machine.device_peaks import checked, float32_peak, mfu_of_rate, resolve_hardware
from kpbench.model.registry import REFERENCE_MODEL

# The software the catalogue's predictions are for: this pipeline's, as its own runs measure it;
# runs measured elsewhere name their framework (kpbench.machine.detect.FRAMEWORKS) in their software record.
TODAY = "kpbench, tf-keras"
SOFTWARE = {framework: TODAY if framework == "tf" else f"kpbench, {framework}" for framework in FRAMEWORKS}

def geomean(values, weights=None):
    weights = weights or [1.0] * len(values)
    return math.exp(sum(w * math.log(v) for v, w in zip(values, weights)) / sum(weights)) if values else None


def calibrate(rows, klass, stack=None, device=None):
    """Efficiency for a device class from measured single-machine rows: rows of `device` itself in
    that class measured with `stack` (the software the prediction is for: a run or a probe of that
    very device), else the class's own rows (of `stack` where there are any), else the
    same kind (CPU or GPU) in the same precision mode, else the same kind, else every row; each
    level prefers rows of the same software. A floor-bound row (kpbench.forecast.rental.is_floor_bound)
    measures its software's per-step floor, not its device: it calibrates only where no other row
    can, and its efficiency is then a lower bound. Returns (efficiency, level, the rows used)."""
    kind, mode = device_kind(klass), klass.split("/")[1]
    levels = (("device", lambda r: device is not None and r["machine"]["device"] == device and r["class"] == klass
               and r["origin"] == stack),
              ("class", lambda r: r["class"] == klass),
              ("kind and precision", lambda r: device_kind(r["class"]) == kind and r["class"].endswith("/" + mode)),
              ("kind", lambda r: device_kind(r["class"]) == kind),
              ("all", lambda r: True))
    for floor_bound_too, note in ((False, ""), (True, "; floor-bound rows only: a lower bound")):
        for level, keep in levels:
            used = [r for r in rows if r["single"] and (floor_bound_too or not r.get("floor_bound")) and keep(r)]
            same = [r for r in used if r["origin"] == stack]
            if same:
                used, level = same, f"{level}, same software"
            if used:
                return (geomean([r["efficiency"] for r in used], [r.get("weight", 1.0) for r in used]),
                        level + note, [r["name"] for r in used])
    raise KpbenchError("no measured single-machine row to calibrate on")


def _cpu_name(hardware):
    """A CPU as a row measured elsewhere names it: its model name, and the bfloat16 units that tell two
    CPUs of one name apart (an "AMD EPYC" of one generation has AVX512_BF16, of another none)."""
    units = bf16_units(hardware)
    return f"{hardware['cpu_model']} CPU" + (f" ({', '.join(units)})" if units else "")


def measured_rows(summary, runs, extra_runs, models, reference, baseline_gbps=None, logged=None, probe_runs=()):
    """Every measured row as the model sees it: its measured seconds for the reference workload
    (ours projected from the steady step rate and validation rate, as the summary does; the original
    study's as _original_measurement says) and its ideal seconds, each for the model it trained.
    The original study's clusters all-reduce over their type's guaranteed bandwidth (`baseline_gbps`,
    from the catalogue): its table gives the "up to" burst, which an instance sustains only while
    its network credits last (AWS EC2 User Guide, "Amazon EC2 instance network bandwidth")."""
    fits = cluster_fits(runs)
    latency, _ = prediction_latency(fits)
    sweeps = {f["instance"]: f["bandwidth_bytes_s"] for f in fits if f["bandwidth_resolved"]}
    ours = {run["instance"]["name"]: run for run in runs}
    rows = []
    for record in summary.to_dict("records"):
        if record["status"] != "measured" or _absent(record.get("projected_train_s")):
            continue
        workers = int(record["workers"] or 1)
        if record["source"] == SOURCE_ORIGINAL:
            gpus = int(record["gpus"] or 0)
            device = record["gpu_model"] if gpus else f"{record['instance']} CPU"
            link = (baseline_gbps or {}).get(original_instance_type(record["instance"])) or (
                None if _absent(record["network_gbps"]) else float(record["network_gbps"]))
            m = machine(device, max(gpus // workers, 1), "float32", int(record["vcpus"]), workers, link_gbps=link)
            facts = (logged or {}).get(record["instance"])
            seconds, model = _original_measurement(record, facts, models, reference)
            origin = "original study (2019 software)"
            fixed = {key: (facts or {}).get(key) for key in ("init_s", "first_epoch_excess_s")}
        else:
            run = ours[record["instance"]]
            m = _our_machine(run, record["precision"] or "float32", workers,
                             None if _absent(record["network_gbps"]) else float(record["network_gbps"]),
                             sweeps.get(record["instance"]))
            seconds, origin, model = float(record["projected_train_s"]), TODAY, _model_of(run, models)
            fixed = run_fixed_terms(run)
        rows.append(_row(record["instance"], origin, m, seconds, model, reference, latency, fixed))
    for run in extra_runs:
        hardware = run["hardware"]
        seconds = billing.projected_run_train_s(run, reference)
        entry, count = measured_device(run)
        m = machine(entry["device"], count, run["performance"]["precision"], hardware["cpu_cores"], entry=entry)
        framework = (run.get("software") or {}).get("framework") or "tf"
        if framework not in SOFTWARE:
            raise KpbenchError(f"a measured run of {run['instance']['name']} names framework {framework!r}; "
                               f"known: {', '.join(SOFTWARE)}")
        name = (f"{', '.join(hardware['gpu_names']) or _cpu_name(hardware)}: {run_model(run)}, "
                f"{run['performance']['precision']}, {framework}")
        rows.append(_row(name, SOFTWARE[framework], m, seconds, _model_of(run, models), reference, latency,
                         run_fixed_terms(run)))
    for run in probe_runs:
        rows.append(_probe_row(run, models, reference, latency))
    names = [row["name"] for row in rows]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise KpbenchError(f"measured rows must be named apart; more than one is named {', '.join(twice)} "
                           "(two runs measured elsewhere on one device, model, precision and framework: keep one, "
                           "the others as its repeats)")
    return rows, latency


def _our_machine(run, precision, workers, link_gbps, bandwidth_bytes_s=None):
    """A run (or probe) of ours as the model sees its machine: its measured device, and its workers
    sharing one machine's cores where the backend is this machine (a loopback cluster)."""
    entry, count = measured_device(run)
    loopback = not registry.kind(run["instance"]["backend"]).rented
    return machine(entry["device"], count, precision, run["hardware"]["cpu_cores"], workers,
                   share=1.0 / workers if loopback else 1.0, bandwidth_bytes_s=bandwidth_bytes_s,
                   link_gbps=link_gbps, entry=entry)


def _probe_row(run, models, reference, latency):
    """A probe (kpbench.forecast.probe) as a measured row of its device: projected from its steady
    steps as a run is, and weighted in calibration by the share of a full run's steps it timed."""
    probe = run["probe"]
    m = _our_machine(run, run["performance"]["precision"], int(run["cluster"]["workers"]),
                     run["instance"].get("network_gbps"))
    row = _row(f"{run['instance']['name']} (probe)", TODAY, m, billing.projected_run_train_s(run, reference),
               _model_of(run, models), reference, latency, run_fixed_terms(run))
    full_steps = int(probe["full_steps_per_epoch"]) * int(run["workload"]["epochs_requested"])
    return {**row, "probe": True, "weight": min(1.0, (len(probe["step_s"]) - int(probe["warmup_steps"])) / full_steps)}


def _original_measurement(record, facts, models, reference):
    """An original-study row's measured seconds and model: its steady epochs and its log's model where
    its log was parsed, else its published training time and the reference CNN."""
    if not facts:
        return float(record["train_s"]), models[REFERENCE_MODEL]
    return facts["steady_epoch_s"] * reference["epochs"], logged_model(facts, models)


def logged_model(facts, models):
    """The model an original-study log summarises: the reference CNN where its layers are the
    reference's (type, output shape and parameters, layer by layer; Keras named them differently),
    else a model of its own (the study's clusters trained one more Dense layer)."""
    from kpbench.analysis.original_logs import log_model

    described = log_model(facts, f"{facts['instance']} (its log's model)")
    reference = models[REFERENCE_MODEL]["layers"]
    def shape(layers):
        return [(layer["type"], list(layer["output_shape"]), layer["parameters"]) for layer in layers]

    same = shape(described["layers"]) == shape(reference)
    return models[REFERENCE_MODEL] if same else described


def measured_device(run):
    """A run of ours as the model sees its device, and how many units (GPUs or logical CPUs): its peaks
    where kpbench.machine.device_peaks resolves them soundly, else a device of its own whose roof is what the run
    measured (its matmul FLOP/s; its copy bandwidth, or compute alone where none was recorded). A CPU's
    memory roof is always the measured copy bandwidth where there is one."""
    hardware, performance = run["hardware"], run["performance"]
    entry = resolve_hardware(hardware)
    units, matmul, copy = entry["units"], performance.get("matmul_gflops"), performance.get("copy_gbs")
    roof = float32_peak(entry)
    if not roof or checked(roof * units, matmul)[1]:
        if not matmul:
            raise KpbenchError(f"the run of {run['instance']['name']} has neither a sound peak for "
                               f"{entry['device']!r} nor a measured matmul to stand for one")
        # A mixed-precision run keeps to the mixed-precision class, against the one roof measured (FP32).
        mixed = matmul / 1e3 / units if performance.get("precision", "float32") != "float32" else None
        entry = {**entry, "fp32": matmul / 1e3 / units, "tf32": None, "mixed": mixed, "kind": "measured",
                 "source": f"its own measured matmul, {matmul:.0f} GFLOP/s ({entry['kind']} peak: {entry['source']})"}
    if copy and (entry["class"] == "cpu" or not entry.get("mem_gbs")):
        entry = {**entry, "mem_gbs": copy / units}
    return entry, units


def _absent(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _model_of(run, models):
    """The description of the model a run trained."""
    return models[run_model(run)]


def _row(name, origin, m, seconds, model, reference, latency, fixed=None):
    device_s, _, allreduce_s, detail = ideal_epoch_s(m, model["layers"], reference, model["trainable_parameters"],
                                                     latency)
    single = m["workers"] == 1 and m["replicas"] == 1
    measured_step_s = seconds / reference["epochs"] / detail["steps"]
    flops_s, _, _ = device_peaks(m["entry"], m["per_replica"] * m["replicas"], m["precision"])
    images_per_s = reference["train_images"] * reference["epochs"] / seconds
    sound = m["entry"]["kind"] not in ("measured", "unknown")  # a measured roof is no peak: no MFU against it
    return {"name": name, "origin": origin, "machine": m, "single": single, "class": detail["class"],
            "measured_s": seconds, "ideal_s": reference["epochs"] * (device_s + allreduce_s),
            "efficiency": reference["epochs"] * device_s / seconds if single else None,
            "peak_flops_s": flops_s, "images_per_s": images_per_s,
            "model": model["name"], "described": model, "flops_per_image": model["training_flops_per_image"],
            "mfu": mfu_of_rate(images_per_s, model["training_flops_per_image"], flops_s) if sound else None,
            "fixed": fixed or {}, "measured_step_s": measured_step_s,
            "floor_bound": single and device_kind(detail["class"]) != "cpu"
                           and is_floor_bound(detail["train_device_s"] / detail["steps"], measured_step_s)}


def leave_one_out(rows, models, reference, latency, sweeps=()):
    """Each measured row predicted from a calibration that never saw it, beside the naive baseline;
    single-machine rows calibrate, clusters are only predicted. Three times: without the row, without
    every row of its device (`machine_out_*`: a device nobody has measured, as most of the catalogue's
    are); and without every row of its software (`stack_out_*`, where rows of other software remain: a
    stack nobody measured). A device is the name a row records for its CPU or GPUs
    (kpbench.machine.detect's model name for ours, the catalogue's for the original study's); batch
    `sweeps` (kpbench.forecast.rental.read_sweep) of the target's device are held out with it."""
    results = []
    for index, target in enumerate(rows):
        others = rows[:index] + rows[index + 1:]
        elsewhere = [r for r in others if r["machine"]["device"] != target["machine"]["device"]]
        other_stacks = [r for r in others if r["origin"] != target["origin"]]
        swept_elsewhere = [s for s in sweeps if s["device"] != target["machine"]["device"]]
        held_out = _predicted(target, others, models, reference, latency, sweeps)
        machine_out = _predicted(target, elsewhere, models, reference, latency, swept_elsewhere)
        stack_out = (_predicted(target, other_stacks, models, reference, latency, sweeps)
                     if any(r["single"] for r in other_stacks) else {})
        results.append({
            "name": target["name"], "origin": target["origin"], "class": target["class"],
            "device": target["machine"]["device"], "group": "single machine" if target["single"] else "cluster",
            "model": target["model"], "flops_per_image": target["flops_per_image"],
            "measured_s": target["measured_s"], "images_per_s": target["images_per_s"], "mfu": target["mfu"],
            "efficiency": target["efficiency"], "floor_bound_row": target["floor_bound"],
            "probe": target.get("probe", False), "weight": target.get("weight", 1.0),
            "measured_step_s": target["measured_step_s"], "fixed": target["fixed"], **held_out,
            **{f"machine_out_{key}": value for key, value in machine_out.items()},
            **{f"stack_out_{key}": value for key, value in stack_out.items()}})
    return results


def _predicted(target, others, models, reference, latency, sweeps):
    """The target's time from a calibration on `others` alone, and the naive estimate from them."""
    if not any(r["single"] for r in others):
        raise KpbenchError(f"no single-machine row besides those of {target['machine']['device']!r} to "
                           f"predict {target['name']} from")
    efficiency, level, used = calibrate(others, target["class"], target["origin"], target["machine"]["device"])
    assert target["name"] not in used
    model = target["described"]
    floor_s, floor_source = step_floor(others, target["origin"], device_kind(target["class"]), sweeps)
    predicted, detail = predict_seconds(target["machine"], model["layers"], reference, model["trainable_parameters"],
                                        efficiency, latency, floor_s)
    naive = naive_seconds(target, others)
    result = {"calibrated_efficiency": efficiency, "calibrated_from": level, "calibration_rows": used,
              "floor_s": floor_s, "floor_source": floor_source, "floor_bound": detail["floor_bound"],
              "predicted_s": predicted, "error": predicted / target["measured_s"] - 1,
              "naive_s": naive, "naive_error": naive / target["measured_s"] - 1,
              "allreduce_modelled": detail["allreduce_modelled"]}
    measured_fixed = end_to_end_fixed_s(target)
    if measured_fixed is not None:
        # End to end (init, first epoch, steady epochs), the fixed part calibrated without the target.
        fixed = fixed_terms(others, target["origin"])
        predicted_e2e = predicted + fixed["init_s"]["s"] + fixed["first_epoch_excess_s"]["s"]
        measured_e2e = target["measured_s"] + measured_fixed
        naive_e2e = naive_end_to_end_s(target, others)
        result.update(e2e_measured_s=measured_e2e, e2e_predicted_s=predicted_e2e,
                      e2e_error=predicted_e2e / measured_e2e - 1, e2e_naive_s=naive_e2e,
                      e2e_naive_error=None if naive_e2e is None else naive_e2e / measured_e2e - 1)
    return result
