"""Peak throughput of the accelerators and CPUs in the instance catalogue, for MFU: each entry says
whether its figure is a datasheet's or derived, and the source names which figure is which.

TFLOP/s per device, dense (no sparsity). Multi-GPU boards (M60, K80) are listed per GPU, as EC2
rents them. CPU peaks are derived: physical cores × sustained AVX clock × FP32 FLOPs per cycle;
entries named "... vCPU" are per vCPU (kpbench.predict multiplies them by the row's vCPUs).

`mem_gbs` is the memory bandwidth in GB/s the roofline of kpbench.predict uses; `class` groups
devices whose achieved efficiency it calibrates together (CPU, or GPU by generation). GPU figures
are NVIDIA's datasheets' (dense, no sparsity), checked on 2026-11-28 against third-party copies of
them (no nvidia.com page was reachable from here): all agree. NVIDIA publishes no A10G datasheet: its
row is the A10's, and third-party reviews say the A10G's tensor throughput differs. CPU bandwidths per
vCPU are derived: a socket's DRAM bandwidth (channels × transfer rate) shared over its vCPUs, as when
every vCPU of the host is busy.
"""

PEAKS = {
    "Tesla T4": {"fp32": 8.1, "mixed": 65.0, "kind": "datasheet", "mem_gbs": 320, "class": "gpu-turing",
                 "source": "NVIDIA T4 datasheet: 8.1 FP32; 65 FP16 Tensor Core; 320 GB/s GDDR6"},
    "Tesla M60": {"fp32": 4.825, "mixed": None, "kind": "datasheet", "mem_gbs": 160, "class": "gpu-maxwell",
                  "source": "NVIDIA Tesla M60 datasheet: 9.65 FP32, 320 GB/s per 2-GPU board"},
    "Tesla K80": {"fp32": 4.365, "mixed": None, "kind": "datasheet", "mem_gbs": 240, "class": "gpu-kepler",
                  "source": "NVIDIA Tesla K80 datasheet: 8.73 FP32 (boost), 480 GB/s per 2-GPU board"},
    "Tesla V100": {"fp32": 15.7, "mixed": 125.0, "kind": "datasheet", "mem_gbs": 900, "class": "gpu-volta",
                   "source": "NVIDIA V100 SXM2 datasheet: 15.7 FP32; 125 FP16 Tensor Core; 900 GB/s HBM2"},
    "NVIDIA A10G": {"fp32": 31.2, "mixed": 125.0, "kind": "datasheet", "mem_gbs": 600, "class": "gpu-ampere",
                    "source": "NVIDIA A10 datasheet (no A10G datasheet; its tensor rate may differ): 31.2 FP32; "
                              "125 FP16 Tensor Core; 600 GB/s"},
    "NVIDIA A100": {"fp32": 19.5, "mixed": 312.0, "kind": "datasheet", "mem_gbs": 1555, "class": "gpu-ampere",
                    "source": "NVIDIA A100 40GB SXM datasheet: 19.5 FP32; 312 FP16 Tensor Core; 1,555 GB/s HBM2"},
    "NVIDIA L4": {"fp32": 30.3, "mixed": 121.0, "kind": "datasheet", "mem_gbs": 300, "class": "gpu-ada",
                  "source": "NVIDIA L4 datasheet: 30.3 FP32; 121 BF16/FP16 Tensor Core; 300 GB/s"},
    "NVIDIA L40S": {"fp32": 91.6, "mixed": 362.0, "kind": "datasheet", "mem_gbs": 864, "class": "gpu-ada",
                    "source": "NVIDIA L40S datasheet: 91.6 FP32; 362 FP16 Tensor Core (dense); 864 GB/s"},
    "NVIDIA H100": {"fp32": 67.0, "mixed": 989.0, "kind": "datasheet", "mem_gbs": 3350, "class": "gpu-hopper",
                    "source": "NVIDIA H100 SXM datasheet: 67 FP32; 989 BF16/FP16 Tensor Core (dense); 3.35 TB/s"},
    "NVIDIA H200": {"fp32": 67.0, "mixed": 989.0, "kind": "datasheet", "mem_gbs": 4800, "class": "gpu-hopper",
                    "source": "NVIDIA H200 SXM datasheet: 67 FP32; 989 BF16/FP16 Tensor Core (dense); 4.8 TB/s"},
    "c5.4xlarge CPU": {"fp32": 1.536, "mixed": None, "kind": "derived", "mem_gbs": 57, "class": "cpu",
                       "source": "8 cores x 3.0 GHz x 64 FP32 FLOP/cycle (2 AVX-512 FMA units); "
                                 "bandwidth: 16 of a Xeon Platinum 8124M socket's 36 vCPUs sharing its "
                                 "6-channel DDR4-2666 (128 GB/s)"},
    "Intel Xeon Sapphire Rapids vCPU": {
        "fp32": 0.1024, "mixed": 0.4096, "kind": "derived", "mem_gbs": 3.2, "class": "cpu",
        "source": "c7i: per vCPU (half a core) 3.2 GHz x 64 FP32 FLOP/cycle / 2; AMX BF16 x4 (estimate); "
                  "bandwidth: a socket's 8-channel DDR5-4800 (307 GB/s) over its 96 vCPUs"},
    "AMD EPYC Zen 4 vCPU": {
        "fp32": 0.1184, "mixed": 0.2368, "kind": "derived", "mem_gbs": 4.8, "class": "cpu",
        "source": "c7a and this machine: per vCPU (one core, no SMT) 3.7 GHz x 32 FP32 FLOP/cycle "
                  "(AVX-512 on 256-bit units); BF16 x2; bandwidth: a socket's 12-channel DDR5-4800 (461 GB/s) "
                  "over its 96 cores"},
}
# Catalogue devices under the names their drivers report (as TensorFlow and JAX name a GPU), and
# CPUs under the model name kpbench.hardware records (this machine's c7a-class EPYC).
DRIVER_NAMES = {"NVIDIA H100 80GB HBM3": "NVIDIA H100", "AMD EPYC": "AMD EPYC Zen 4 vCPU"}


def mfu(achieved_gflops, device, precision="float32", count=1):
    """Model FLOPs utilisation against the datasheet peak; None when the catalogue lacks a peak."""
    peak = peak_tflops(device, precision, count)
    if not peak or not achieved_gflops:
        return None
    return achieved_gflops / (peak * 1e3)


def peak_tflops(device, precision="float32", count=1):
    """Peak TFLOP/s of `count` such devices at `precision`; None when the catalogue lacks it."""
    entry = device_entry(device)
    if entry is None:
        return None
    value = entry["fp32"] if precision == "float32" else entry["mixed"]
    return None if value is None else value * count


def device_entry(device):
    """The catalogue entry of a device (under its own or its driver's name); None when absent."""
    return PEAKS.get(DRIVER_NAMES.get(device, device) or "")
