"""What else used the machine: the sampler's arithmetic on synthetic /proc snapshots."""

import os

import pytest

from kpbench.core.contention import contended, cpu_ticks, parse_gpu_processes, process_ticks, summarise

STAT = """cpu  300 10 100 1000 50 5 5 20 40 0
cpu0 100 10 50 500 25 0 5 10 40 0
cpu1 200 0 50 500 25 5 0 10 0 0
intr 1881499 0 0
ctxt 12345
"""


def test_busy_ticks_leave_out_idle_iowait_and_the_guest_time_already_in_user():
    # cpu0: user 100 + nice 10 + system 50 + irq 0 + softirq 5 + steal 10; guest 40 is inside user.
    assert cpu_ticks(STAT, {0}) == (175, 700)
    assert cpu_ticks(STAT) == (175 + 265, 700 + 790)  # per-CPU lines only: the `cpu` total not twice


def test_process_ticks_survive_a_command_name_with_spaces_and_brackets():
    fields = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", "11", "22", "33", "44", "20"]
    assert process_ticks(f"4242 (tf (worker) 1) {' '.join(fields)}") == 11 + 22 + 33 + 44


def _sample(t, busy, total, own, load=0.5):
    tick = os.sysconf("SC_CLK_TCK")
    return {"time": t, "busy": busy * tick, "total": total * tick, "own": own * tick, "load": load}


def test_foreign_share_is_machine_busy_less_the_runs_own_time():
    # 10 s on 2 CPUs: 20 CPU-seconds; busy 19, of which the run used 16: 3 foreign, 15 %.
    samples = [_sample(0, 100, 200, 50), _sample(5, 110, 210, 58, load=2.5), _sample(10, 119, 220, 66)]
    record = summarise(samples, threshold=0.1, interval_s=1.0)
    assert record["foreign_cpu_s"] == pytest.approx(3) and record["own_cpu_s"] == pytest.approx(16)
    assert record["foreign_cpu_share"] == pytest.approx(0.15) and record["contended"] is True
    assert record["load_average_max"] == 2.5 and record["window_s"] == 10 and record["samples"] == 3
    assert summarise(samples, threshold=0.2, interval_s=1.0)["contended"] is False
    assert contended({"contention": record}) and not contended({"contention": None}) and not contended({})


def test_kernel_clock_noise_below_zero_is_kept_as_measured_and_too_few_samples_measure_nothing():
    quiet = summarise([_sample(0, 100, 200, 50), _sample(10, 115, 220, 65.2)], threshold=0.1, interval_s=1.0)
    assert quiet["foreign_cpu_share"] == pytest.approx(-0.01) and quiet["contended"] is False
    one = summarise([_sample(0, 100, 200, 50)], threshold=0.1, interval_s=1.0)
    assert one["foreign_cpu_share"] is None and one["contended"] is None and not contended({"contention": one})


def test_another_process_on_the_gpu_is_foreign_and_contends():
    rows = "4242, python, 1024\n777, /usr/bin/other, 512\n"
    assert parse_gpu_processes(rows, {4242}) == [{"pid": 777, "name": "/usr/bin/other", "memory_mib": 512}]
    record = summarise([_sample(0, 100, 200, 50), _sample(10, 110, 220, 60)], 0.1, 1.0,
                       gpu_foreign=parse_gpu_processes(rows, {4242}))
    assert record["foreign_cpu_share"] == pytest.approx(0) and record["contended"] is True


def test_the_run_schema_admits_every_honest_contention_record_and_rejects_a_malformed_one():
    import jsonschema

    from kpbench.core.run_reader import RUN_SCHEMA

    schema = RUN_SCHEMA["properties"]["contention"]
    measured = summarise([_sample(0, 100, 200, 50), _sample(10, 119, 220, 66)], 0.1, 1.0, gpu_foreign=[])
    for record in (None, measured, summarise([], 0.1, 1.0)):  # EC2 unmeasured, measured, too short
        jsonschema.validate(record, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**measured, "contended": "yes"}, schema)
