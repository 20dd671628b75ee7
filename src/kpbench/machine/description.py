"""What a machine is, read from what its OS and driver print: /proc/cpuinfo, lscpu, macOS sysctl and
nvidia-smi. Parsed, never recognised by name: every field a description lacks is None.

Each parser takes the text a command printed, so that recorded descriptions of other machines
(tests/fixtures/hardware/) go through the same code as this one. `read_sources` reads this machine, or,
where KPBENCH_HARDWARE names a folder of such recordings, that folder instead: the one point where a
machine's description is read, so a run can be made to describe a machine it is not on.
"""

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

HARDWARE_ENV = "KPBENCH_HARDWARE"
SOURCE_FILES = ("cpuinfo", "lscpu", "sysctl", "meminfo", "nvidia-smi-query.csv", "nvidia-smi-q.txt", "nvidia-smi.txt")
# What nvidia-smi is asked for; compute_cap needs driver 510 or newer, so older drivers are asked again
# without it (nvidia-smi --help-query-gpu lists the fields).
GPU_QUERY = "name,compute_cap,memory.total,clocks.max.sm,driver_version"
# The ISA features that set FLOP per cycle, under the names each source prints them.
ISA_FLAGS = {
    "sse2": ("sse2",), "avx": ("avx",), "avx2": ("avx2",), "fma": ("fma",), "avx512f": ("avx512f",),
    "avx512_bf16": ("avx512_bf16",), "avx512_fp16": ("avx512_fp16",), "amx_tile": ("amx_tile",),
    "amx_bf16": ("amx_bf16",), "neon": ("asimd", "neon", "hw.optional.neon", "hw.optional.AdvSIMD"),
    "sve": ("sve",), "sve2": ("sve2",), "bf16": ("bf16", "hw.optional.arm.FEAT_BF16"),
}
# lscpu prints an Arm core's part number as util-linux's name for it (its table of parts), and a
# revision as "Model": the part back from that name.
LSCPU_ARM_PARTS = {"Neoverse-N1": 0xD0C, "Neoverse-V1": 0xD40, "Neoverse-N2": 0xD49, "Neoverse-V2": 0xD4F}
# Arm's "CPU implementer" codes (the Arm Architecture Reference Manual, MIDR_EL1.Implementer).
ARM_IMPLEMENTERS = {"0x41": "ARM", "0x61": "Apple", "0xc0": "Ampere", "0x48": "HiSilicon", "0x51": "Qualcomm"}


def _pairs(text, separator=":"):
    """'key<sep> value' lines, in order (keys stripped; repeated keys all kept)."""
    for line in (text or "").splitlines():
        if separator in line:
            key, value = line.split(separator, 1)
            yield key.strip(), value.strip()


def _int(value, base=10):
    try:
        return int(str(value).strip(), 0 if str(value).strip().lower().startswith("0x") else base)
    except (TypeError, ValueError):
        return None


def _float(value):
    match = re.search(r"[-+]?\d+(?:[.,]\d+)?", str(value or ""))
    return float(match.group().replace(",", ".")) if match else None


def _kib(value):
    """A cache size as lscpu or cpuinfo print it ('64 KiB (2 instances)', '32K', '1 MiB', '512 KB')."""
    match = re.match(r"\s*([\d.]+)\s*([KMG])?i?B?", str(value or ""), re.IGNORECASE)
    if not match:
        return None
    scale = {"K": 1, "M": 1024, "G": 1024 ** 2, None: 1 / 1024}[(match.group(2) or "").upper() or None]
    return float(match.group(1)) * scale


def parse_cpuinfo(text):
    """/proc/cpuinfo, x86 ('vendor_id', 'flags') or Arm ('CPU implementer', 'Features') form."""
    blocks = [dict(_pairs(block)) for block in re.split(r"\n\s*\n", text or "") if "processor" in block]
    if not blocks:
        return {}
    first = blocks[0]
    flags = set((first.get("flags") or first.get("Features") or "").split())
    cores = {(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}
    implementer = first.get("CPU implementer")
    siblings, per_socket = _int(first.get("siblings")), _int(first.get("cpu cores"))
    if implementer and not cores:  # Arm's cpuinfo lists no topology: one entry per core (no SMT on its
        cores = {(None, index) for index in range(len(blocks))}  # server cores but Neoverse E1's)
        siblings = per_socket = 1
    return {
        "model_name": first.get("model name") or first.get("Model Name"),
        "vendor": first.get("vendor_id") or ARM_IMPLEMENTERS.get((implementer or "").lower(), implementer),
        "family": _int(first.get("cpu family")) if "cpu family" in first else _int(first.get("CPU architecture")),
        "model": _int(first.get("model")) if "model" in first else _int(first.get("CPU part")),
        "stepping": _int(first.get("stepping")) if "stepping" in first else _int(first.get("CPU variant")),
        "logical_cpus": len(blocks), "physical_cores": len(cores) if cores else None,
        "threads_per_core": siblings // per_socket if siblings and per_socket else None,
        "nominal_mhz": _float(first.get("cpu MHz")), "flags": flags,
        "cache_kib": _kib(first.get("cache size")),
    }


def parse_lscpu(text):
    """lscpu's default output (util-linux); 'Core(s) per cluster' on some Arm machines."""
    fields = dict(_pairs(text))
    if not fields:
        return {}
    sockets = _int(fields.get("Socket(s)")) or _int(fields.get("Cluster(s)")) or 1
    arm = fields.get("Architecture") == "aarch64"
    per_socket = _int(fields.get("Core(s) per socket")) or _int(fields.get("Core(s) per cluster"))
    return {
        "architecture": fields.get("Architecture"), "model_name": fields.get("Model name"),
        "vendor": fields.get("Vendor ID"), "family": _int(fields.get("CPU family")),
        "model": LSCPU_ARM_PARTS.get(fields.get("Model name")) if arm else _int(fields.get("Model")),
        "stepping": None if arm else _int(fields.get("Stepping")),
        "logical_cpus": _int(fields.get("CPU(s)")), "sockets": sockets,
        "physical_cores": per_socket * sockets if per_socket else None,
        "threads_per_core": _int(fields.get("Thread(s) per core")),
        "max_mhz": _float(fields.get("CPU max MHz")), "min_mhz": _float(fields.get("CPU min MHz")),
        "flags": set((fields.get("Flags") or "").split()),
        "caches_kib": {level: _kib(fields.get(f"{level} cache")) for level in ("L1d", "L1i", "L2", "L3")
                       if fields.get(f"{level} cache")},
        "hypervisor": fields.get("Hypervisor vendor"),
    }


def parse_sysctl(text):
    """macOS `sysctl -a` (or `sysctl hw machdep`), which stands in for /proc/cpuinfo there."""
    fields = dict(_pairs(text))
    if not fields:
        return {}
    flags = {key for key, value in fields.items() if key.startswith("hw.optional.") and value == "1"}
    flags |= set((fields.get("machdep.cpu.features", "") + " " + fields.get("machdep.cpu.leaf7_features", "")).lower()
                 .replace(".", "_").split())
    hz = _int(fields.get("hw.cpufrequency_max"))
    family = _int(fields.get("hw.cpufamily"))  # printed as a signed 32-bit number
    family = family % 2 ** 32 if family is not None else _int(fields.get("machdep.cpu.family"))
    return {
        "architecture": "arm64" if fields.get("hw.optional.arm64") == "1" else fields.get("hw.machine"),
        "model_name": fields.get("machdep.cpu.brand_string"),
        "vendor": fields.get("machdep.cpu.vendor") or ("Apple" if "Apple" in fields.get("machdep.cpu.brand_string", "")
                                                        else None),
        "family": family,
        "model": _int(fields.get("machdep.cpu.model")), "stepping": _int(fields.get("machdep.cpu.stepping")),
        "logical_cpus": _int(fields.get("hw.logicalcpu")) or _int(fields.get("hw.ncpu")),
        "physical_cores": _int(fields.get("hw.physicalcpu")), "sockets": _int(fields.get("hw.packages")),
        "performance_cores": _int(fields.get("hw.perflevel0.physicalcpu")),
        "max_mhz": hz / 1e6 if hz else None, "memory_bytes": _int(fields.get("hw.memsize")), "flags": flags,
        "caches_kib": {level: size / 1024 for level, key in (("L1d", "hw.l1dcachesize"), ("L2", "hw.l2cachesize"),
                                                             ("L3", "hw.l3cachesize"))
                       if (size := _int(fields.get(key)))},
    }


def parse_meminfo(text):
    fields = dict(_pairs(text))
    kib = _int((fields.get("MemTotal") or "").split(" ")[0])
    return kib * 1024 if kib else None


def _mib_bytes(value):
    number = _float(value)
    return int(number * 1024 ** 2) if number is not None else None


def parse_nvidia_smi(text):
    """The GPUs nvidia-smi lists: its CSV query output (--query-gpu … --format=csv), its full query
    (-q) or its default table. Fields a format lacks are None."""
    text = text or ""
    lines = [line for line in text.splitlines() if line.strip()]
    header = [column.strip().split(" [")[0] for column in lines[0].split(",")] if lines else []
    if "name" in header:
        rows = [dict(zip(header, (value.strip() for value in line.split(",")))) for line in lines[1:]]
        return [_gpu(row.get("name"), row.get("compute_cap"), _mib_bytes(row.get("memory.total")),
                     _float(row.get("clocks.max.sm")), row.get("driver_version")) for row in rows]
    if "Product Name" in text:
        driver = re.search(r"Driver Version\s*:\s*(\S+)", text)
        gpus = []
        for block in re.split(r"\n(?=GPU [0-9A-Fa-f]{4,8}:)", text)[1:] or [text]:
            name = re.search(r"Product Name\s*:\s*(.+)", block)
            memory = re.search(r"FB Memory Usage\s*\n\s*Total\s*:\s*(\d+)\s*MiB", block)
            clock = re.search(r"Max Clocks\s*\n(?:.*\n)*?\s*SM\s*:\s*(\d+)\s*MHz", block)
            if name:
                gpus.append(_gpu(name.group(1).strip(), None, _mib_bytes(memory.group(1)) if memory else None,
                                 float(clock.group(1)) if clock else None, driver.group(1) if driver else None))
        return gpus
    driver = re.search(r"Driver Version:\s*(\S+)", text)
    names = re.findall(r"^\|\s+\d+\s+(.+?)\s{2,}(?:On|Off)\s+\|", text, re.MULTILINE)
    memory = re.findall(r"\d+MiB\s*/\s*(\d+)MiB", text)
    return [_gpu(name, None, _mib_bytes(memory[i]) if i < len(memory) else None, None,
                 driver.group(1) if driver else None) for i, name in enumerate(names)]


def _gpu(name, compute_capability, memory_bytes, max_sm_mhz, driver):
    return {"name": name, "compute_capability": compute_capability or None, "sm_count": None,
            "max_sm_clock_mhz": max_sm_mhz, "memory_bytes": memory_bytes, "driver": driver}


def describe_cpu(sources):
    """One CPU description from whichever sources there are (lscpu over cpuinfo where both say)."""
    parsed = [parse_cpuinfo(sources.get("cpuinfo")), parse_lscpu(sources.get("lscpu")),
              parse_sysctl(sources.get("sysctl"))]
    merged = {}
    for facts in parsed:
        merged.update({key: value for key, value in facts.items() if value not in (None, set(), {})})
    flags = set().union(*(facts.get("flags", set()) for facts in parsed))
    logical, cores = merged.get("logical_cpus"), merged.get("physical_cores")
    threads = merged.get("threads_per_core") or (logical // cores if logical and cores else None)
    if cores is None and logical and threads:
        cores = logical // threads
    name = merged.get("model_name") or ""
    base = re.search(r"@\s*([\d.]+)\s*GHz", name)
    return {
        "model_name": name or None, "vendor": merged.get("vendor"), "family": merged.get("family"),
        "model": merged.get("model"), "stepping": merged.get("stepping"),
        "architecture": merged.get("architecture") or sources.get("machine"),
        "sockets": merged.get("sockets"), "physical_cores": cores, "threads_per_core": threads,
        "logical_cpus": logical, "performance_cores": merged.get("performance_cores"),
        "isa": {feature: (any(name in flags for name in names) if flags else None)
                for feature, names in ISA_FLAGS.items()},
        "base_mhz": float(base.group(1)) * 1000 if base else sources.get("base_mhz"),
        "max_mhz": merged.get("max_mhz") or sources.get("max_mhz"), "nominal_mhz": merged.get("nominal_mhz"),
        "caches_kib": merged.get("caches_kib") or ({"per_core": merged["cache_kib"]} if merged.get("cache_kib") else {}),
        "memory_bytes": merged.get("memory_bytes") or parse_meminfo(sources.get("meminfo")),
        "hypervisor": merged.get("hypervisor"),
    }


def describe_gpus(sources):
    """The GPUs of the most detailed nvidia-smi output there is (query, full query, table)."""
    for name in ("nvidia-smi-query.csv", "nvidia-smi-q.txt", "nvidia-smi.txt"):
        if sources.get(name) and (gpus := parse_nvidia_smi(sources[name])):
            return gpus
    return []


def _run(*command):
    if not shutil.which(command[0]):
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _sysfs_mhz(name):
    khz = _int(_read(f"/sys/devices/system/cpu/cpu0/cpufreq/{name}"))
    return khz / 1000 if khz else None


def read_sources():
    """The texts a description is made from: recorded ones (KPBENCH_HARDWARE), else this machine's."""
    recorded = os.environ.get(HARDWARE_ENV)
    if recorded:
        folder = Path(recorded)
        if not folder.is_dir():
            raise FileNotFoundError(f"{HARDWARE_ENV}={recorded}: no such folder of recorded descriptions")
        return {name: _read(folder / name) for name in SOURCE_FILES if (folder / name).is_file()} | {"recorded": str(folder)}
    sources = {"cpuinfo": _read("/proc/cpuinfo"), "meminfo": _read("/proc/meminfo"), "machine": platform.machine(),
               "max_mhz": _sysfs_mhz("cpuinfo_max_freq"), "base_mhz": _sysfs_mhz("base_frequency")}
    sources["lscpu"] = _run("lscpu")
    if platform.system() == "Darwin":
        sources["sysctl"] = _run("sysctl", "hw", "machdep")
    query = _run("nvidia-smi", f"--query-gpu={GPU_QUERY}", "--format=csv")
    query = query or _run("nvidia-smi", f"--query-gpu={GPU_QUERY.replace('compute_cap,', '')}", "--format=csv")
    if query:
        sources["nvidia-smi-query.csv"] = query
    return sources
