"""The cluster's all-reduce, measured directly, as nccl-tests' all_reduce_perf and OSU's
osu_allreduce measure it: message sizes doubling from 4 KiB to the model's gradient size, warm-up
calls, then timed calls that every worker times on its own.

The call is the replica context's `all_reduce`, the one the optimizer's gradient aggregation makes
under MultiWorkerMirroredStrategy, so the sweep exercises the collective implementation training uses.
Bus bandwidth follows nccl-tests' definition for all-reduce: algbw × 2(n−1)/n, the traffic each link
of a ring carries (nccl-tests, doc/PERFORMANCE.md).
"""

import statistics
import time

import numpy as np

SMALLEST_BYTES = 4096
WARMUP_CALLS = 5
TIMED_CALLS = 20
MEMCPY_BYTES = 64 << 20
IMPLEMENTATION = "MultiWorkerMirroredStrategy replica-context all_reduce (SUM, float32), communication AUTO"


def sweep_sizes(largest_bytes, smallest=SMALLEST_BYTES):
    """4 KiB, 8 KiB, … doubling while below `largest_bytes`, then `largest_bytes` itself."""
    sizes, size = [], smallest
    while size < largest_bytes:
        sizes.append(size)
        size *= 2
    return [*sizes, int(largest_bytes)]


BYTES_PER_GRADIENT = 4  # float32: Keras mixed precision keeps float32 weights, so their gradients are too


def gradient_bytes(trainable_parameters):
    """Bytes one step's gradients all-reduce: one float32 element per trainable parameter."""
    return int(trainable_parameters) * BYTES_PER_GRADIENT


def trainable_parameters(model):
    return int(sum(weight.shape.num_elements() for weight in model.trainable_weights))


def memcpy_bytes_per_s(size=MEMCPY_BYTES, repeats=5):
    """This machine's memory-copy bandwidth (bytes copied per second, median of `repeats`): the
    physical ceiling of an all-reduce between processes on one machine."""
    source = np.ones(size, dtype=np.uint8)
    target = np.empty_like(source)
    np.copyto(target, source)  # pages touched before timing
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        seconds.append(time.perf_counter() - start)
    return size / statistics.median(seconds)


def measure(strategy, largest_bytes, timed_calls=TIMED_CALLS, warmup_calls=WARMUP_CALLS):
    """This worker's seconds per all-reduce call for every size of the sweep, and its memory-copy
    bandwidth taken first (all workers at once, as they share the machine in training).

    Every worker of the cluster must call this at the same point: each all-reduce waits for all.
    """
    import tensorflow as tf

    started = time.perf_counter()
    memcpy = memcpy_bytes_per_s()
    samples = []
    for size in sweep_sizes(largest_bytes):
        elements = max(1, size // 4)

        @tf.function
        def all_reduce(elements=elements):
            def reduce():
                # Made in the replica's context, so the collective knows the device it lives on.
                message = tf.ones([elements], tf.float32)
                context = tf.distribute.get_replica_context()
                # One element back is enough to wait for the whole collective.
                return context.all_reduce(tf.distribute.ReduceOp.SUM, message)[0]
            return strategy.run(reduce)

        def call():
            strategy.experimental_local_results(all_reduce())[0].numpy()

        for _ in range(warmup_calls):
            call()
        seconds = []
        for _ in range(timed_calls):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        samples.append({"bytes": size, "seconds": seconds})
    return {"memcpy_bytes_s": memcpy, "samples": samples, "sweep_s": time.perf_counter() - started}


def summarise(per_worker, workers):
    """One row per message size over every worker's calls: median time and its spread (10th and
    90th percentile), algorithm and bus bandwidth, as nccl-tests and OSU report them."""
    rows = []
    for position, first in enumerate(per_worker[0]["samples"]):
        seconds = np.concatenate([w["samples"][position]["seconds"] for w in per_worker])
        median = float(np.median(seconds))
        algbw = first["bytes"] / median if median > 0 else None
        rows.append({
            "bytes": first["bytes"], "calls": int(seconds.size), "median_s": median,
            "p10_s": float(np.percentile(seconds, 10)), "p90_s": float(np.percentile(seconds, 90)),
            "algbw_bytes_s": algbw, "busbw_bytes_s": None if algbw is None else algbw * 2 * (workers - 1) / workers,
        })
    return {
        "implementation": IMPLEMENTATION, "workers": workers, "timed_calls": TIMED_CALLS,
        "warmup_calls": WARMUP_CALLS, "sizes": rows,
        "memcpy_bytes_s": statistics.median(w["memcpy_bytes_s"] for w in per_worker),
        "sweep_s": max(w["sweep_s"] for w in per_worker),
    }


def summary_line(sweep):
    """The one line the sweep prints: range, latency of the smallest message, bandwidth of the largest."""
    small, large = sweep["sizes"][0], sweep["sizes"][-1]
    busbw = large["busbw_bytes_s"]
    return (f"all-reduce sweep over {sweep['workers']} workers, {small['bytes'] / 1024:.0f} KiB to "
            f"{large['bytes'] / 1e6:.1f} MB: {small['median_s'] * 1e3:.2f} ms at the smallest, "
            f"{large['median_s'] * 1e3:.1f} ms and "
            f"{'n/a' if busbw is None else f'{busbw / 1e9:.2f} GB/s'} bus bandwidth at the largest "
            f"(memory copy {sweep['memcpy_bytes_s'] / 1e9:.1f} GB/s); {sweep['sweep_s']:.0f} s")
