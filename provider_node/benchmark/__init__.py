"""The provider's hardware benchmark: matmul TFLOPS per dtype and memory bandwidths.

``run_benchmark()`` measures the selected devices (or returns the cached result for this
host's fingerprint); ``result_table()`` renders it.
"""

from provider_node.benchmark.model import (
    BandwidthFigure,
    BenchmarkResult,
    BenchmarkSettings,
    DeviceResult,
    HostFingerprint,
    MatmulFigure,
)
from provider_node.benchmark.render import result_table
from provider_node.benchmark.runner import BenchmarkOutcome, run_benchmark

__all__ = [
    "BandwidthFigure",
    "BenchmarkOutcome",
    "BenchmarkResult",
    "BenchmarkSettings",
    "DeviceResult",
    "HostFingerprint",
    "MatmulFigure",
    "result_table",
    "run_benchmark",
]
