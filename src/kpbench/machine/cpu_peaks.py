"""A CPU's peak derived from what was measured of it: physical cores × clock × FLOP per cycle.

FLOP per cycle and core come from the core's microarchitecture where its vendor, family and model ids
(or Arm implementer and part, or Apple's hw.cpufamily) name one in MICROARCHITECTURES, else from its
ISA features alone, taking the widest core that has them (so the derived peak is an upper bound, and
MFU against it a lower bound). The clock is the maximum the OS exposes; where it exposes none (most
VMs), the highest documented maximum clock of the microarchitecture's parts, again an upper bound;
else the nominal clock, which can understate a turbo clock (kpbench.machine.device_peaks then catches a peak below
the measured matmul). Without cores, clock or FLOP per cycle the peak is unknown.

Sources, each a vendor document (read from memory of those documents, not checked online here, on
2026-12-02): FLOP per cycle from Intel's 64 and IA-32 Architectures Optimization Reference Manual
(two 512-bit FMA units on Xeon Scalable Gold/Platinum; 1,024 BF16 FLOP per cycle and core for AMX),
AMD's Software Optimization Guides for family 17h/19h (two 256-bit FMA pipes; Zen 4 executes
AVX-512 on them), Arm's Neoverse N1/V1/V2 Software Optimization Guides (2 × 128-bit, 2 × 256-bit SVE,
4 × 128-bit FMA pipes); clocks from Intel ARK, AMD's EPYC product pages, AWS's Graviton pages and
Apple's chip announcements.
"""

# vendor, family (None: any), model ids (None: any; an Arm core's part number), name, FP32 FLOP/cycle/core, BF16 FLOP/cycle/core (None: no
# faster path), the highest documented maximum clock in MHz among the microarchitecture's parts.
MICROARCHITECTURES = (
    ("GenuineIntel", 6, (143, 207), "Sapphire/Emerald Rapids", 64, 1024, 4100),  # AMX; Xeon Gold 6434: 4.1 GHz
    ("GenuineIntel", 6, (85,), "Skylake-SP/Cascade Lake", 64, None, 4500),  # Xeon Gold 6250: 4.5 GHz
    ("GenuineIntel", 6, (63, 79), "Haswell-EP/Broadwell-EP", 32, None, 3800),  # Xeon E5-2689 v4: 3.8 GHz
    ("AuthenticAMD", 23, (49,), "Zen 2 (Rome)", 32, None, 3900),  # EPYC 7F32: 3.9 GHz
    ("AuthenticAMD", 25, (0, 1), "Zen 3 (Milan)", 32, None, 4100),  # EPYC 72F3: 4.1 GHz
    ("AuthenticAMD", 25, (17, 160), "Zen 4 (Genoa/Bergamo)", 32, 64, 4400),  # EPYC 9174F: 4.4 GHz
    ("ARM", None, (0xD0C,), "Neoverse N1", 16, None, 3000),  # Ampere Altra Max: 3.0 GHz
    ("ARM", None, (0xD40,), "Neoverse V1", 32, None, 2600),  # Graviton3: 2.6 GHz
    ("ARM", None, (0xD4F,), "Neoverse V2", 32, None, 3100),  # Grace: 3.1 GHz; Graviton4 2.8 GHz
    # Apple: macOS's hw.cpufamily names the core; FLOP per cycle and clock of its performance cores.
    ("Apple", 0x1B588BB3, None, "Apple M1 (Firestorm)", 32, None, 3228),
    ("Apple", 0xDA33D83D, None, "Apple M2 (Avalanche)", 32, None, 3504),
    ("Apple", 0x8765EDEA, None, "Apple M3 (Everest)", 32, None, 4056),
)
# From ISA features alone (first that applies): the widest core known to have them.
ISA_FP32_FLOP_PER_CYCLE = (("avx512f", 64, "AVX-512, two FMA units (one-unit parts have half)"),
                           ("avx2", 32, "AVX2 with FMA, two 256-bit FMA units"),
                           ("avx", 16, "AVX without FMA"),
                           ("sve", 32, "SVE, as wide as 2 x 256-bit FMA pipes"),
                           ("neon", 32, "NEON, as wide as 4 x 128-bit FMA pipes"),
                           ("sse2", 8, "SSE2"))


def microarchitecture(cpu):
    """The MICROARCHITECTURES row the CPU's ids name, or None."""
    for vendor, family, models, name, fp32, bf16, mhz in MICROARCHITECTURES:
        if ((cpu.get("vendor") or "").lower() == vendor.lower() and family in (None, cpu.get("family"))
                and (models is None or cpu.get("model") in models)):
            return {"name": name, "fp32": fp32, "bf16": bf16, "max_mhz": mhz}
    return None


def _from_isa(isa):
    for feature, flop, why in ISA_FP32_FLOP_PER_CYCLE:
        if (isa or {}).get(feature) and (feature != "avx2" or isa.get("fma")):
            bf16 = 1024 if isa.get("amx_bf16") else 2 * flop if isa.get("avx512_bf16") else None
            return flop, bf16, why
    return None, None, None


def _clock(cpu, arch):
    if cpu.get("max_mhz"):
        return cpu["max_mhz"], "the OS's maximum clock"
    if arch:
        return arch["max_mhz"], f"the highest documented maximum clock of {arch['name']} parts (none exposed)"
    for key in ("base_mhz", "nominal_mhz"):
        if cpu.get(key):
            return cpu[key], "the nominal clock (no maximum exposed; a turbo clock may be higher)"
    return None, None


def cpu_peak(cpu):
    """The whole CPU's FP32 and BF16 TFLOP/s with origin and source; None figures when unknown."""
    arch = microarchitecture(cpu)
    if arch:
        fp32, bf16, why = arch["fp32"], arch["bf16"], f"{arch['name']}"
    else:
        fp32, bf16, why = _from_isa(cpu.get("isa"))
    mhz, clock_source = _clock(cpu, arch)
    cores = cpu.get("physical_cores")
    name = cpu.get("model_name") or "unnamed CPU"
    ids = "/".join(str(cpu.get(key)) for key in ("vendor", "family", "model") if cpu.get(key) is not None)
    device = f"{name} [{ids}]" if ids else name
    if not (fp32 and mhz and cores):
        missing = [what for what, value in (("cores", cores), ("clock", mhz), ("FLOP per cycle", fp32)) if not value]
        return {"device": device, "fp32": None, "mixed": None, "kind": "unknown",
                "source": f"no {', '.join(missing)} recorded"}
    scale = cores * mhz / 1e6
    return {"device": device, "fp32": fp32 * scale, "mixed": bf16 * scale if bf16 else None, "kind": "derived",
            "clock_mhz": mhz, "source": f"{cores} cores x {mhz / 1000:.2f} GHz ({clock_source}) x {fp32} FP32 "
                                        f"FLOP/cycle ({why})" + (f"; BF16 {bf16} FLOP/cycle" if bf16 else "")}
