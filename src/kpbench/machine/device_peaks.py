"""Peak throughput of a device, with its origin: a datasheet's, derived from the device's measured
features (cores × clock × FLOP per cycle for its ISA, or SMs × clock × FP32 lanes for its compute
capability), or unknown. A peak below what the machine itself measured is a wrong peak: MFU is then
left blank, never above 100 %.

TFLOP/s, dense (no sparsity). `PEAKS` holds the instance catalogue's devices under the names
config/catalogue.csv gives them; CPU entries named "... vCPU" are per vCPU. GPU figures are NVIDIA's
datasheets' (checked on 2026-11-28 against third-party copies of them; no nvidia.com page was
reachable from here); NVIDIA publishes no A10G datasheet, so its row is the A10's. `tf32` is the
TensorFloat-32 tensor-core rate at which TensorFlow (since 2.4) and JAX run float32 matmuls and
convolutions by default on Ampere and newer GPUs, so it is those GPUs' float32 roof. `mem_gbs` is the
memory bandwidth the roofline uses; CPU bandwidths per vCPU are a socket's DRAM bandwidth (channels ×
rate) over its vCPUs. `class` groups devices whose efficiency kpbench.forecast.calibration fits together;
`cpu_ids` are the vendor, family and model ids of a catalogue CPU's processor (AWS's c5, c7i and
c7a pages name Xeon Platinum 8124M/Skylake-SP, Sapphire Rapids and EPYC 9R14/Genoa), which
kpbench.machine.stand_in compares with this machine's.

A run's device is recognised by what kpbench.machine.description measured, never by its marketing
name alone: a GPU by its name's product token and, where recorded, its compute capability; a CPU by
vendor, family and model ids (kpbench.machine.cpu_peaks).
"""

import re

from kpbench.machine.cpu_peaks import cpu_peak

PEAKS = {
    "Tesla T4": {"fp32": 8.1, "mixed": 65.0, "kind": "datasheet", "mem_gbs": 320, "class": "gpu-turing",
                 "match": (r"\bT4\b", "7.5"),
                 "source": "NVIDIA T4 datasheet: 8.1 FP32; 65 FP16 Tensor Core; 320 GB/s GDDR6"},
    "Tesla M60": {"fp32": 4.825, "mixed": None, "kind": "datasheet", "mem_gbs": 160, "class": "gpu-maxwell",
                  "match": (r"\bM60\b", "5.2"),
                  "source": "NVIDIA Tesla M60 datasheet: 9.65 FP32, 320 GB/s per 2-GPU board"},
    "Tesla K80": {"fp32": 4.365, "mixed": None, "kind": "datasheet", "mem_gbs": 240, "class": "gpu-kepler",
                  "match": (r"\bK80\b", "3.7"),
                  "source": "NVIDIA Tesla K80 datasheet: 8.73 FP32 (boost), 480 GB/s per 2-GPU board"},
    "Tesla V100": {"fp32": 15.7, "mixed": 125.0, "kind": "datasheet", "mem_gbs": 900, "class": "gpu-volta",
                   "match": (r"\bV100\b", "7.0"),
                   "source": "NVIDIA V100 SXM2 datasheet: 15.7 FP32; 125 FP16 Tensor Core; 900 GB/s HBM2"},
    "NVIDIA A10G": {"fp32": 31.2, "tf32": 62.5, "mixed": 125.0, "kind": "datasheet", "mem_gbs": 600,
                    "class": "gpu-ampere", "match": (r"\bA10G\b", "8.6"),
                    "source": "NVIDIA A10 datasheet (no A10G datasheet; its tensor rate may differ): 31.2 FP32; "
                              "62.5 TF32 and 125 FP16 Tensor Core (dense); 600 GB/s"},
    "NVIDIA A100": {"fp32": 19.5, "tf32": 156.0, "mixed": 312.0, "kind": "datasheet", "mem_gbs": 1555,
                    "class": "gpu-ampere", "match": (r"\bA100\b", "8.0"),
                    "source": "NVIDIA A100 40GB SXM datasheet: 19.5 FP32; 156 TF32 and 312 FP16 Tensor Core "
                              "(dense); 1,555 GB/s HBM2"},
    "NVIDIA L4": {"fp32": 30.3, "tf32": 60.0, "mixed": 121.0, "kind": "datasheet", "mem_gbs": 300,
                  "class": "gpu-ada", "match": (r"\bL4\b", "8.9"),
                  "source": "NVIDIA L4 datasheet: 30.3 FP32; 60 TF32 and 121 BF16/FP16 Tensor Core (dense); 300 GB/s"},
    "NVIDIA L40S": {"fp32": 91.6, "tf32": 183.0, "mixed": 362.0, "kind": "datasheet", "mem_gbs": 864,
                    "class": "gpu-ada", "match": (r"\bL40S\b", "8.9"),
                    "source": "NVIDIA L40S datasheet: 91.6 FP32; 183 TF32 and 362 FP16 Tensor Core (dense); 864 GB/s"},
    "NVIDIA H100": {"fp32": 67.0, "tf32": 494.0, "mixed": 989.0, "kind": "datasheet", "mem_gbs": 3350,
                    "class": "gpu-hopper", "match": (r"\bH100\b", "9.0"),
                    "source": "NVIDIA H100 SXM datasheet: 67 FP32; 494 TF32 and 989 BF16/FP16 Tensor Core (dense); "
                              "3.35 TB/s"},
    "NVIDIA H200": {"fp32": 67.0, "tf32": 494.0, "mixed": 989.0, "kind": "datasheet", "mem_gbs": 4800,
                    "class": "gpu-hopper", "match": (r"\bH200\b", "9.0"),
                    "source": "NVIDIA H200 SXM datasheet: 67 FP32; 494 TF32 and 989 BF16/FP16 Tensor Core (dense); "
                              "4.8 TB/s"},
    "c5.4xlarge CPU": {"fp32": 1.536, "mixed": None, "kind": "derived", "mem_gbs": 57, "class": "cpu",
                       "cpu_ids": {"vendor": "GenuineIntel", "family": 6, "model": 85},
                       "source": "8 cores x 3.0 GHz x 64 FP32 FLOP/cycle (2 AVX-512 FMA units); "
                                 "bandwidth: 16 of a Xeon Platinum 8124M socket's 36 vCPUs sharing its "
                                 "6-channel DDR4-2666 (128 GB/s)"},
    "Intel Xeon Sapphire Rapids vCPU": {
        "fp32": 0.1024, "mixed": 0.4096, "kind": "derived", "mem_gbs": 3.2, "class": "cpu",
        "cpu_ids": {"vendor": "GenuineIntel", "family": 6, "model": 143},
        "source": "c7i: per vCPU (half a core) 3.2 GHz x 64 FP32 FLOP/cycle / 2; AMX BF16 x4 (estimate); "
                  "bandwidth: a socket's 8-channel DDR5-4800 (307 GB/s) over its 96 vCPUs"},
    "AMD EPYC Zen 4 vCPU": {
        "fp32": 0.1184, "mixed": 0.2368, "kind": "derived", "mem_gbs": 4.8, "class": "cpu",
        "cpu_ids": {"vendor": "AuthenticAMD", "family": 25, "model": 17},
        "source": "c7a: per vCPU (one core, no SMT) 3.7 GHz x 32 FP32 FLOP/cycle "
                  "(AVX-512 on 256-bit units); BF16 x2; bandwidth: a socket's 12-channel DDR5-4800 (461 GB/s) "
                  "over its 96 cores"},
}
# FP32 results per clock per multiprocessor by compute capability: the CUDA C++ Programming Guide's
# table "Throughput of Native Arithmetic Instructions" (32-bit floating-point add, multiply,
# multiply-add); an FMA counts two FLOPs.
FP32_LANES_PER_SM = {"3.7": 192, "5.0": 128, "5.2": 128, "6.0": 64, "6.1": 128, "7.0": 64, "7.5": 64, "8.0": 64,
                     "8.6": 128, "8.7": 128, "8.9": 128, "9.0": 128}
GPU_GENERATIONS = {"3": "kepler", "5": "maxwell", "6": "pascal", "7.0": "volta", "7.5": "turing", "8.0": "ampere",
                   "8.6": "ampere", "8.7": "ampere", "8.9": "ada", "9": "hopper", "10": "blackwell", "12": "blackwell"}


def gpu_generation(compute_capability):
    cc = str(compute_capability or "")
    return GPU_GENERATIONS.get(cc) or GPU_GENERATIONS.get(cc.split(".")[0])


def resolve_gpu(gpu):
    """One GPU's peaks: the datasheet row its name and compute capability match, else derived from its
    SMs, clock and compute capability, else unknown (every figure None)."""
    name, cc = gpu.get("name") or "", gpu.get("compute_capability")
    for device, entry in PEAKS.items():
        pattern, capability = entry.get("match") or (None, None)
        if pattern and re.search(pattern, name) and (not cc or str(cc) == capability):
            return {**entry, "device": device, "kind": "datasheet"}
    generation = gpu_generation(cc)
    klass = f"gpu-{generation}" if generation else "gpu"
    lanes, sms, mhz = FP32_LANES_PER_SM.get(str(cc)), gpu.get("sm_count"), gpu.get("max_sm_clock_mhz")
    if lanes and sms and mhz:
        return {"device": name, "fp32": 2 * lanes * sms * mhz / 1e6, "mixed": None, "mem_gbs": None, "class": klass,
                "kind": "derived", "source": f"{sms} SMs x {mhz:.0f} MHz x {2 * lanes} FP32 FLOP/cycle "
                                              f"(compute capability {cc}; CUDA C++ Programming Guide)"}
    return {"device": name, "fp32": None, "mixed": None, "mem_gbs": None, "class": klass, "kind": "unknown",
            "source": "no datasheet row matches and its SM count, clock or compute capability is unrecorded"}


def float32_peak(entry):
    """The roof of a float32 run: TF32 where the device has it (the frameworks' default there)."""
    return entry.get("tf32") or entry.get("fp32")


def peak_for(entry, precision):
    """The one precision-to-peak rule: float32 runs against float32_peak; a mixed precision against the
    device's mixed rate where it has one, else against its float32 roof (no faster path)."""
    if entry is None:
        return None
    return float32_peak(entry) if precision == "float32" else (entry.get("mixed") or float32_peak(entry))


def checked(peak_tflops, measured_gflops):
    """(peak, note): a peak below the machine's own measured matmul is wrong and is dropped."""
    if peak_tflops and measured_gflops and peak_tflops * 1e3 < measured_gflops:
        return None, (f"the peak, {peak_tflops * 1e3:.0f} GFLOP/s, is below the measured matmul, "
                      f"{measured_gflops:.0f} GFLOP/s: a wrong peak, so MFU is left blank")
    return peak_tflops, None


def mfu_of_rate(images_per_s, flops_per_image, peak_flops_s):
    """MFU of a training rate: images/s at the model's training FLOPs per image, against FLOP/s."""
    return mfu(images_per_s * flops_per_image / 1e9, peak_flops_s / 1e12)


def mfu(achieved_gflops, peak_tflops):
    """Model FLOPs utilisation; None without a peak, and never above 1 (a peak below what was
    achieved is a wrong peak, not an MFU over 100 %)."""
    if not peak_tflops or not achieved_gflops or achieved_gflops > peak_tflops * 1e3:
        return None
    return achieved_gflops / (peak_tflops * 1e3)


def device_entry(device):
    """The catalogue entry of a device named as config/catalogue.csv names it; None when absent."""
    return PEAKS.get(device or "")


def resolve_hardware(hardware):
    """The peaks of what a run ran on, per unit (one GPU, or one logical CPU), from its recorded
    description (kpbench.machine.detect.detect_hardware); records made before descriptions existed name
    their GPUs only, and their CPUs resolve as unknown."""
    if hardware.get("gpu_count"):
        gpus = hardware.get("gpus") or [{"name": name} for name in hardware.get("gpu_names") or []]
        return {**resolve_gpu(gpus[0]), "units": len(gpus)}
    cpu = hardware.get("cpu")
    units = (cpu or {}).get("logical_cpus") or hardware.get("cpu_cores") or 1
    if not cpu:
        return {"device": hardware.get("cpu_model") or "unknown CPU", "fp32": None, "mixed": None, "mem_gbs": None,
                "class": "cpu", "kind": "unknown", "units": units,
                "source": "recorded before kpbench described the hardware it ran on"}
    whole = cpu_peak({**cpu, "model_name": cpu.get("model_name") or hardware.get("cpu_model")})
    per_unit = {key: (whole[key] / units if whole[key] else None) for key in ("fp32", "mixed")}
    return {**whole, **per_unit, "mem_gbs": None, "class": "cpu", "units": units}
