"""A rich table of a benchmark result, one row per device and figure."""

from __future__ import annotations

from rich.table import Table

from provider_node.benchmark.model import BenchmarkResult


def _share(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def result_table(result: BenchmarkResult, *, cached: bool = False) -> Table:
    fp = result.fingerprint
    versions = ", ".join(
        f"{k} {v}" for k, v in (("driver", fp.driver), ("cuda", fp.cuda), ("rocm", fp.rocm)) if v
    )
    caption = (
        f"torch {fp.torch}{'; ' + versions if versions else ''}; "
        f"fingerprint {fp.key()}; {result.wall_s:.1f} s{' (cached)' if cached else ''}"
    )
    table = Table(title="gpumarket provider benchmark", caption=caption)
    for column in ("device", "figure", "measured", "size", "of peak", "note"):
        table.add_column(column, justify="right" if column in ("measured", "of peak") else "left")
    for dev in result.devices:
        label = f"{dev.device}\n{dev.name}\n{dev.memory_bytes / 2**30:.1f} GiB"
        first = True
        for m in dev.matmul:
            table.add_row(
                label if first else "",
                f"matmul {m.dtype}",
                f"{m.tflops:.3f} TFLOPS" if m.tflops is not None else "-",
                f"n={m.n}" if m.n else "",
                _share(m.peak_share),
                m.skipped or "",
            )
            first = False
        for title, bw in (
            ("memory copy", dev.memory_bandwidth),
            ("host to device", dev.host_to_device),
        ):
            table.add_row(
                "",
                title,
                f"{bw.gbs:.1f} GB/s" if bw.gbs is not None else "-",
                f"{bw.bytes / 2**20:.0f} MiB" if bw.bytes else "",
                _share(bw.peak_share),
                bw.skipped or "",
            )
        if dev.peak_model:
            table.add_row("", "datasheet", dev.peak_model, "", "", "")
        table.add_section()
    return table
