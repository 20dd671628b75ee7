"""Cost arithmetic: what a run costs at its instance's on-demand price, and what the original study's
workload would cost at a measured throughput."""

SECONDS_PER_HOUR = 3600.0


def cluster_usd_per_hour(instance):
    """Instance rows price one machine; a cluster of `workers` machines pays for each of them."""
    price = instance.get("usd_per_hour")
    if price is None:
        return None
    return float(price) * int(instance.get("workers", 1))


def run_cost_usd(seconds, usd_per_hour):
    """On-demand cost of holding the machines for `seconds` (None when the price is unknown)."""
    if usd_per_hour is None or seconds is None:
        return None
    if seconds < 0 or usd_per_hour < 0:
        raise ValueError("seconds and usd_per_hour must not be negative")
    return seconds / SECONDS_PER_HOUR * usd_per_hour


def projected_train_s(images_per_s, images, epochs):
    """Training seconds for `epochs` passes over `images` at a measured throughput."""
    if not images_per_s:
        return None
    return images * epochs / images_per_s
