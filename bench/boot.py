"""Boot time of a mesh: `mesh up` on a 5-level graph whose initialize hooks each take 200 ms,
at 5, 10, 20 and 40 modules, against the ideal and against a strictly sequential start.

* measured: from starting `mesh up` to its "mesh is up" line (real processes, real NATS);
* ideal: 5 levels x 200 ms + one process start (a 1-module mesh with no work, measured);
* sequential: every module started and initialized one after another,
  N x (200 ms + one module process start), computed from the same measurements;
* module PSS: the mean proportional set size of the module processes once the mesh is up
  (forked from the zygote, they share the libraries it imported).

    python -m bench.boot [--sizes 5 10 20 40] [--init-ms 200] [--rounds 3]

Each mesh boots `--rounds` times; the medians are shown.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import figures
from mesh.protocol.identity import module_identity
from mesh.protocol.pki import CertificateAuthority

LEVELS = 5
PROJECT = Path(__file__).resolve().parent.parent

MODULE_CODE = """
import asyncio

from pydantic import BaseModel

import sdk


class Config(BaseModel):
    init_seconds: float = 0.0


class Module(sdk.Module):
    config_model = Config

    async def initialize(self, ctx):
        await asyncio.sleep(ctx.config.init_seconds)
"""


def build_mesh(root: Path, size: int, init_seconds: float) -> None:
    """`size` modules in LEVELS levels; each module depends on up to two of the level below."""
    modules = root / "modules"
    modules.mkdir(parents=True)
    levels = [[f"m{level}x{index}" for index in range(size // LEVELS)] for level in range(LEVELS)]
    config_lines = []
    for level, names in enumerate(levels):
        for index, name in enumerate(names):
            folder = modules / name
            folder.mkdir()
            below = levels[level - 1] if level else []
            dependencies = {below[index % len(below)], below[(index + 1) % len(below)]} if below else set()
            lines = [f'name = "{name}"', 'version = "1.0.0"']
            for dependency in sorted(dependencies):
                lines += ["[[dependencies]]", f'name = "{dependency}"']
            lines += ["[run]", 'entry = "module:Module"']
            (folder / "module.toml").write_text("\n".join(lines) + "\n")
            (folder / "__init__.py").write_text("")
            (folder / "module.py").write_text(MODULE_CODE)
            config_lines += [f"[modules.{name}.config]", f"init_seconds = {init_seconds}"]
    (root / "mesh.toml").write_text("\n".join(config_lines) + "\n")


def boot_seconds(root: Path) -> tuple[float, float]:
    """Time from starting `mesh up` until it reports the mesh up, and the mean PSS of its
    module processes then (MiB); then stops it."""
    command = [
        sys.executable,
        "-m",
        "mesh.cli",
        "up",
        "--modules",
        str(root / "modules"),
        "--state-dir",
        str(root / ".mesh"),
        "--listen",
        "127.0.0.1:0",
        "--config",
        str(root / "mesh.toml"),
        "--no-gateway",  # the modules' boot is measured, and the gateway starts after it
    ]
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert process.stdout is not None
    elapsed = None
    pss: list[float] = []
    for line in process.stdout:
        if "mesh is up" in line:
            elapsed = time.perf_counter() - began
            pss = module_pss_mib(process.pid)
            break
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=300)
    if elapsed is None:
        raise RuntimeError(f"mesh up did not come up in {root}")
    return elapsed, statistics.mean(pss) if pss else 0.0


def module_pss_mib(coordinator: int) -> list[float]:
    """The PSS of each module process below the coordinator, in MiB: its own pages plus its
    share of those it shares (the libraries a zygote imported once for all its children)."""
    found = []
    for child in psutil.Process(coordinator).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if "nats-server" in command or (child.ppid() == coordinator and "sdk.zygote" in command):
                continue  # NATS, and the zygote itself (its children are the modules)
            found.append(child.memory_full_info().pss / 2**20)
        except psutil.Error:
            continue
    return found


def module_process_start_seconds(scratch: Path) -> float:
    """One module process from spawn to its ready file (what every module pays once)."""
    folder = scratch / "modules" / "single"
    folder.mkdir(parents=True)
    (folder / "module.toml").write_text('name = "single"\nversion = "1.0.0"\n[run]\nentry = "module:Module"\n')
    (folder / "__init__.py").write_text("")
    (folder / "module.py").write_text(MODULE_CODE)
    ready = scratch / "ready.json"
    # As `mesh up` starts it: with a module certificate from the mesh's CA (mTLS).
    CertificateAuthority.create().issue(module_identity("single").common_name).write(scratch / "tls")
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "sdk.run", str(folder)],
        env={
            **os.environ,
            "MESH_READY_FILE": str(ready),
            "MESH_LOG_LEVEL": "WARNING",
            "MESH_TLS_DIR": str(scratch / "tls"),
        },
    )
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the module process exited with {process.returncode} before it was ready")
        time.sleep(0.005)
    elapsed = time.perf_counter() - began
    process.terminate()
    process.wait(timeout=30)
    json.loads(ready.read_text())
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--init-ms", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=3, help="boots of each size; the medians are shown")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    init = args.init_ms / 1000
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        process_start = module_process_start_seconds(Path(scratch) / "single")
        baseline_root = Path(scratch) / "one"
        build_mesh(baseline_root, LEVELS, 0.0)
        one_process = statistics.median(boot_seconds(baseline_root)[0] for _ in range(args.rounds))
        ideal = LEVELS * init + one_process
        print(
            f"{LEVELS}-level graphs, initialize {args.init_ms:.0f} ms each; one module process starts in "
            f"{process_start:.2f} s; a {LEVELS}-module mesh with no work boots in {one_process:.2f} s"
        )
        header = ("modules", 8), ("measured s", 12), ("ideal s", 10), ("sequential s", 14), ("vs ideal", 10)
        print("".join(f"{title:>{width}}" for title, width in header) + f"{'vs sequential':>15}{'module PSS MiB':>16}")
        for size in args.sizes:
            root = Path(scratch) / f"mesh{size}"
            build_mesh(root, size, init)
            boots = [boot_seconds(root) for _ in range(args.rounds)]
            measured = statistics.median(seconds for seconds, _ in boots)
            pss = statistics.median(mib for _, mib in boots)
            sequential = size * (init + process_start)
            figures.record(f"{size} modules / ideal boot time", measured / ideal, better="lower")
            figures.record(f"{size} modules: mean module PSS MiB", pss, better="lower")
            print(
                f"{size:>8}{measured:>12.2f}{ideal:>10.2f}{sequential:>14.2f}"
                f"{measured / ideal:>10.2f}{measured / sequential:>15.2f}{pss:>16.1f}"
            )


if __name__ == "__main__":
    main()
