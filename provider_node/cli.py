"""``gpumarket provider``: the provider's commands.

Each command parses its options, calls one library function and renders the answer; add a
command by defining another ``@app.command()`` function below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from protocol.errors import exits_on_error

app = typer.Typer(
    name="provider",
    help="Run a provider node: benchmark the GPUs, stake, serve jobs in a sandbox.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def provider() -> None:
    """Run a provider node: benchmark the GPUs, stake, serve jobs in a sandbox."""


console = Console()


@app.command()
@exits_on_error
def benchmark(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure again even if a cached result fits.")
    ] = False,
    device: Annotated[
        list[str] | None,
        typer.Option("--device", "-d", help="cpu, mps, cuda (all GPUs) or cuda:N; repeatable."),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Default: ~/.cache/gpumarket.")
    ] = None,
) -> None:
    """Measure matmul TFLOPS per dtype and memory bandwidths of this host's devices."""
    from provider_node.benchmark import result_table, run_benchmark

    if as_json:
        outcome = run_benchmark(selection=device, cache_dir=cache_dir, use_cache=not no_cache)
    else:
        with console.status("benchmarking") as status:
            outcome = run_benchmark(
                selection=device,
                cache_dir=cache_dir,
                use_cache=not no_cache,
                progress=lambda message: status.update(message),
            )
    if as_json:
        payload = outcome.result.model_dump(mode="json")
        payload["cached"] = outcome.cached
        print(json.dumps(payload, sort_keys=True))
        return
    console.print(result_table(outcome.result, cached=outcome.cached))


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    runtime: Annotated[
        str | None, typer.Option(help="Check for this runtime instead of PROVIDER_RUNTIME.")
    ] = None,
) -> None:
    """Check everything this host and account need before the provider can earn: GPUs
    seen by torch and NVML, the driver against torch's CUDA, the bubblewrap sandbox, cgroup
    delegation, docker or podman, disk for job directories, the listen ports, the chain RPC
    and the IPFS API, registration, stake, gas money and the clock. Each check prints its
    verdict (ok, warn or fail), whether it is a must-have and the exact fix; the exit status
    is 1 when a must-have check fails, and `provider run` refuses to start then."""
    from provider_node.doctor import doctor_command

    raise typer.Exit(doctor_command(as_json, runtime))


def _add_node_commands() -> None:
    # run, register, stake, unbond, withdraw and status live beside the daemon they drive.
    from provider_node.commands import register_commands

    register_commands(app)


_add_node_commands()
