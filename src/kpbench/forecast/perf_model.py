"""The performance model: what one training epoch of a model costs on a machine at efficiency 1.

Per layer of the model's layer table (kpbench.model.registry.layer_table), forward and backward FLOPs and
bytes moved; a roofline per layer against the device's peaks (kpbench.machine.device_peaks: a datasheet's, derived,
or a measured run's own matmul and copy bandwidth) for the precision used; the host-side input pipeline as its own term; several replicas add a ring
all-reduce of the float32 gradients (kpbench.analysis.scaling). kpbench.forecast.predict calibrates its efficiency.
"""

import math

from kpbench import KpbenchError
from kpbench.analysis.scaling import ring_allreduce_s
from kpbench.data.kaggle_format import IMAGE_SIZE
from kpbench.machine.device_peaks import device_entry, peak_for
from kpbench.train.collective import gradient_bytes

# FLOPs per output element of the element-wise layers layer_table counts as zero.
ELEMENTWISE_FLOPS = {"BatchNormalization": 4, "MaxPooling2D": 3, "Dropout": 1, "Flatten": 0}
# Adam per parameter and step: read weight, gradient, m, v; write weight, m, v (float32 each).
ADAM_BYTES_PER_PARAMETER = 7 * 4
ADAM_FLOPS_PER_PARAMETER = 10
WEIGHT_BYTES = 4
# The input pipeline copies each image (uint8 → float32 batch, then to the device): bytes per image
# over a host copy rate per vCPU (an estimate; it never binds for this workload, and the output says so).
HOST_COPIES = 3
HOST_COPY_BYTES_S_PER_VCPU = 5e9

def activation_bytes(precision):
    return 4 if precision == "float32" else 2


def device_kind(klass):
    """"cpu" or "gpu": the kind of a device class ("gpu-ampere/tf32", "cpu/fp32")."""
    return klass.split("-")[0].split("/")[0]


def layer_costs(layers, batch_size, precision="float32", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1)):
    """Per layer of a Sequential model's layer table (kpbench.model.registry.layer_table rows), per image:
    forward and backward FLOPs and bytes. Weights are read once per step, so their bytes are shared
    by the batch; backward reads the output gradient and the saved input, writes the input gradient,
    reads the weights and writes their gradients (2 × forward FLOPs for the two gradients).
    The optimiser's update follows as its own row."""
    act = activation_bytes(precision)
    rows, previous = [], math.prod(input_shape)
    for layer in layers:
        inputs, outputs = previous, math.prod(layer["output_shape"])
        previous = outputs
        flops = layer["flops"] + ELEMENTWISE_FLOPS.get(layer["type"], 0) * outputs
        weights = layer["parameters"] * WEIGHT_BYTES / batch_size
        if layer["type"] == "Flatten":  # a view: nothing moves
            forward_bytes = backward_bytes = 0.0
        else:
            forward_bytes = act * (inputs + outputs) + weights
            backward_bytes = act * (outputs + 2 * inputs) + 2 * weights
        rows.append({"name": layer["name"], "type": layer["type"], "forward_flops": flops,
                     "backward_flops": 2 * flops, "forward_bytes": forward_bytes, "backward_bytes": backward_bytes})
    parameters = sum(layer["parameters"] for layer in layers)
    rows.append({"name": "optimizer", "type": "Adam", "forward_flops": 0, "forward_bytes": 0.0,
                 "backward_flops": ADAM_FLOPS_PER_PARAMETER * parameters / batch_size,
                 "backward_bytes": ADAM_BYTES_PER_PARAMETER * parameters / batch_size})
    return rows


def device_peaks(entry, count, precision):
    """(FLOP/s, bytes/s, class) of `count` units of a device (a kpbench.machine.device_peaks entry) at `precision`,
    by kpbench.machine.device_peaks.peak_for; bytes/s is None where the device's memory bandwidth is unknown."""
    tflops = peak_for(entry, precision)
    if tflops is None:
        raise KpbenchError(f"no peak FLOP/s for device {(entry or {}).get('device')!r}")
    if precision == "float32" or not entry.get("mixed"):
        mode = "tf32" if entry.get("tf32") else "fp32"
    else:
        mode = "mixed"
    memory = entry.get("mem_gbs")
    return tflops * 1e12 * count, memory * 1e9 * count if memory else None, f"{entry['class']}/{mode}"


def roofline(costs_rows, flops_s, bytes_s):
    """Each layer's ideal seconds per image, forward and backward, and which roof bounds it."""
    out = []
    for row in costs_rows:
        result = {"name": row["name"], "type": row["type"]}
        for phase in ("forward", "backward"):
            compute = row[f"{phase}_flops"] / flops_s
            memory = row[f"{phase}_bytes"] / bytes_s if bytes_s else 0.0  # bandwidth unknown: compute roof only
            result[f"{phase}_s"] = max(compute, memory)
            result[f"{phase}_bound"] = "compute" if compute >= memory else "memory"
        result["intensity"] = ((row["forward_flops"] + row["backward_flops"])
                               / max(row["forward_bytes"] + row["backward_bytes"], 1e-30))
        out.append(result)
    return out


def machine(device, devices, precision, vcpus, workers=1, share=1.0, replicas=None,
            link_gbps=None, bandwidth_bytes_s=None, entry=None):
    """A machine as the model sees it: `devices` of `device` (vCPUs for a CPU; `share` of them when
    workers split one machine), each GPU a replica; links for the all-reduce between replicas. The
    device's peaks are `entry` (a measured run's, kpbench.forecast.calibration.measured_device), else the
    catalogue's entry of that name."""
    entry = entry or device_entry(device)
    if entry is None:
        raise KpbenchError(f"kpbench.machine.device_peaks has no catalogue device {device!r}")
    is_cpu = (entry.get("class") or "").startswith("cpu")
    return {"device": device, "entry": entry, "devices": devices, "precision": precision, "vcpus": vcpus, "workers": workers,
            "share": share, "replicas": replicas or (workers if is_cpu else devices * workers),
            "per_replica": devices * share if is_cpu else 1, "link_gbps": link_gbps,
            "bandwidth_bytes_s": bandwidth_bytes_s}


def ideal_epoch_s(m, layers, workload, parameters, latency_s=0.0):
    """One epoch at efficiency 1: (device seconds, input-pipeline seconds, all-reduce seconds,
    details); only the device part scales with the efficiency."""
    batch = int(workload["batch_size"])
    flops_s, bytes_s, klass = device_peaks(m["entry"], m["per_replica"], m["precision"])
    table = roofline(layer_costs(layers, batch, m["precision"]), flops_s, bytes_s)
    train_image_s = sum(r["forward_s"] + r["backward_s"] for r in table)
    val_image_s = sum(r["forward_s"] for r in table if r["name"] != "optimizer")
    host_image_s = IMAGE_SIZE * IMAGE_SIZE * 4 * HOST_COPIES / (HOST_COPY_BYTES_S_PER_VCPU * max(m["vcpus"] * m["share"], 1))
    replicas = m["replicas"]
    bandwidth = m["bandwidth_bytes_s"] or (m["link_gbps"] * 1e9 / 8 if m["link_gbps"] else None)
    allreduce = (ring_allreduce_s(replicas, gradient_bytes(parameters), bandwidth, latency_s)
                 if replicas > 1 and bandwidth else 0.0)
    steps = math.ceil(workload["train_images"] / (batch * replicas))
    train_device_s = workload["train_images"] * train_image_s / replicas
    device_s = train_device_s + workload["validation_images"] * val_image_s / replicas
    host_s = workload["train_images"] * host_image_s / replicas
    return device_s, host_s, steps * allreduce, {"class": klass, "table": table, "steps": steps,
                                                  "train_device_s": train_device_s,
                                                  "allreduce_s_per_step": allreduce, "allreduce_modelled":
                                                  replicas == 1 or bandwidth is not None}


def predict_seconds(m, layers, workload, parameters, efficiency, latency_s=0.0, floor_s=0.0):
    """Training seconds of the workload: each training step takes the device's time at the class
    efficiency or the software's per-step floor (dispatch and host work per step), whichever is
    longer; then validation, overlapped with the input pipeline (prefetch), plus the all-reduce, per epoch."""
    device_s, host_s, allreduce_s, detail = ideal_epoch_s(m, layers, workload, parameters, latency_s)
    train_s = detail["train_device_s"] / efficiency
    floored = max(train_s, detail["steps"] * floor_s)
    epoch_device = floored + (device_s - detail["train_device_s"]) / efficiency
    epoch = max(epoch_device, host_s) + allreduce_s
    return workload["epochs"] * epoch, {**detail, "host_bound": host_s > epoch_device,
                                        "floor_bound": floored > train_s}
