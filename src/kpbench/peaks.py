"""Peak throughput of the accelerators and CPUs in the instance catalogue, for MFU: each entry says
whether its figure is a datasheet's or derived, and the source names which figure is which.

TFLOP/s per device, dense (no sparsity). Multi-GPU boards (M60, K80) are listed per GPU, as EC2
rents them. CPU peaks are derived: physical cores × sustained AVX clock × FP32 FLOPs per cycle.
"""

PEAKS = {
    "Tesla T4": {"fp32": 8.1, "mixed": 65.0, "kind": "datasheet",
                 "source": "NVIDIA T4 datasheet: 8.1 FP32; 65 FP16 Tensor Core"},
    "Tesla M60": {"fp32": 4.825, "mixed": None, "kind": "datasheet",
                  "source": "NVIDIA Tesla M60 datasheet: 9.65 FP32 per 2-GPU board"},
    "Tesla K80": {"fp32": 4.365, "mixed": None, "kind": "datasheet",
                  "source": "NVIDIA Tesla K80 datasheet: 8.73 FP32 per 2-GPU board (boost)"},
    "Tesla V100": {"fp32": 15.7, "mixed": 125.0, "kind": "datasheet",
                   "source": "NVIDIA V100 SXM2 datasheet: 15.7 FP32; 125 FP16 Tensor Core"},
    "NVIDIA A10G": {"fp32": 31.2, "mixed": 125.0, "kind": "datasheet",
                    "source": "NVIDIA A10 datasheet (A10G is AWS's A10): 31.2 FP32; 125 FP16 Tensor Core"},
    "NVIDIA L4": {"fp32": 30.3, "mixed": 121.0, "kind": "datasheet",
                  "source": "NVIDIA L4 datasheet: 30.3 FP32; 121 BF16/FP16 Tensor Core"},
    "NVIDIA H100": {"fp32": 67.0, "mixed": 989.0, "kind": "datasheet",
                    "source": "NVIDIA H100 SXM datasheet: 67 FP32; 989 BF16/FP16 Tensor Core (dense)"},
    "NVIDIA H200": {"fp32": 67.0, "mixed": 989.0, "kind": "datasheet",
                    "source": "NVIDIA H200 SXM datasheet: 67 FP32; 989 BF16/FP16 Tensor Core (dense)"},
    "c5.4xlarge CPU": {"fp32": 1.536, "mixed": None, "kind": "derived",
                       "source": "8 cores x 3.0 GHz x 64 FP32 FLOP/cycle (2 AVX-512 FMA units)"},
}
# Catalogue devices under the names their drivers report (as TensorFlow and JAX name a GPU).
DRIVER_NAMES = {"NVIDIA H100 80GB HBM3": "NVIDIA H100"}


def mfu(achieved_gflops, device, precision="float32", count=1):
    """Model FLOPs utilisation against the datasheet peak; None when the catalogue lacks a peak."""
    peak = peak_tflops(device, precision, count)
    if not peak or not achieved_gflops:
        return None
    return achieved_gflops / (peak * 1e3)


def peak_tflops(device, precision="float32", count=1):
    """Peak TFLOP/s of `count` such devices at `precision`; None when the catalogue lacks it."""
    entry = PEAKS.get(DRIVER_NAMES.get(device, device) or "")
    if entry is None:
        return None
    value = entry["fp32"] if precision == "float32" else entry["mixed"]
    return None if value is None else value * count
