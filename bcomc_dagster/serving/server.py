"""The deployer for OpenAI-compatible servers: vLLM (started here, or one the user runs elsewhere) and
``transformers serve`` where vLLM's CPU build is not installed.

vLLM modes:
- ``hot-swap``: the base model is served once; each iteration's LoRA adapter is loaded at runtime under a
  new name (``{campaign}-it{i}``; reusing a name can serve stale cached blocks), and adapters no longer
  needed are unloaded. Works on a server this campaign starts or on one at ``base_url`` (the adapter
  folder must then be readable by that server, e.g. a shared file system).
- ``restart``: a new ``vllm serve`` process on the iteration's merged checkpoint; once it is ready and
  verified the old process is stopped, so the endpoint never serves a half-loaded model.
``transformers serve`` loads any local folder on request, so merged checkpoints are served by path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from bcomc_dagster.errors import ServingError
from bcomc_dagster.files import atomic_write
from bcomc_dagster.serving import process
from bcomc_dagster.serving.deployer import PROBE_TOKENS, PROBES, Deployment, Live, differs_from_base, intact
from bcomc_dagster.serving.endpoint import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, Endpoint, api_key
from bcomc_dagster.training.manifest import Manifest


class ServingState(BaseModel):
    """What serves a campaign; saved as JSON so that later steps and runs find the server again."""

    engine: str
    url: str
    pid: int | None = None  # None: a server this campaign does not own (serving.base_url)
    process_root: str = ""  # the folder the server process was started on
    base_dir: str
    base_name: str
    base_probes: list[str] = []
    live_model: str
    live_iteration: int = 0
    live_fingerprint: str = ""
    adapters: list[str] = []
    started_at: float


class ServerDeployer:
    def __init__(
        self,
        workdir: Path,
        engine: str | None = None,
        mode: Literal["hot-swap", "restart"] = "hot-swap",
        ready_timeout_s: float = 240.0,
        limits: process.ServerLimits | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
        request_timeout_s: float = DEFAULT_TIMEOUT_S,
        request_retries: int = DEFAULT_RETRIES,
    ):
        self.workdir = Path(workdir)
        self.base_url = base_url.rstrip("/").removesuffix("/v1") if base_url else None
        self.engine = process.VLLM_ENGINE if base_url else (engine or process.available_engine())
        if mode == "restart" and base_url:
            raise ServingError("restart mode needs a server this campaign starts; with base_url use hot-swap")
        if mode == "restart" and self.engine != process.VLLM_ENGINE:
            raise ServingError(
                f"restart mode is a vLLM mode; the {self.engine!r} engine serves checkpoints by path"
            )
        self.mode = mode
        self.ready_timeout_s = ready_timeout_s
        self.limits = limits or process.ServerLimits()
        self.api_key_env = api_key_env
        self.request_timeout_s, self.request_retries = request_timeout_s, request_retries
        self.state_file = self.workdir / "serving.json"
        self.owns_server = base_url is None  # stop() stops only a server this campaign started

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> ServingState | None:
        if not self.state_file.is_file():
            return None
        return ServingState.model_validate_json(self.state_file.read_text())

    def _save(self, state: ServingState) -> None:
        atomic_write(self.state_file, state.model_dump_json(indent=2))

    def running(self) -> ServingState | None:
        st = self.state()
        if st is None:
            return None
        if st.pid is not None and not any(
            r.pid == st.pid and process.is_ours(r) for r in process.records(self.workdir)
        ):
            return None  # gone, or its pid now belongs to another process
        return st if process.healthy(st.url) else None

    def live(self) -> Live | None:
        st = self.running()
        if st is None:
            return None
        return Live(
            endpoint=f"{st.url}/v1",
            model=st.live_model,
            iteration=st.live_iteration,
            fingerprint=st.live_fingerprint,
        )

    # -- operations ----------------------------------------------------------------------------
    def ensure_base(self, base_dir: Path, base_name: str, fingerprint: str) -> Deployment:
        """Serve the base model (reusing this campaign's healthy server where it fits) and record its
        answers to the probes, against which every later deployment is compared."""
        t0 = time.monotonic()
        st = self.running()
        replaced = st.live_model if st else None
        started, ready_s, old_pid = False, 0.0, None
        if self.base_url:
            if st is None:
                ready_s = process.wait_ready(self.base_url, None, self.ready_timeout_s, self.workdir, None)
                st = self._new_state(self.base_url, None, base_dir, self._external_base(base_name))
        elif st is None or st.engine != self.engine or st.process_root != str(base_dir):
            served = base_name if self.engine == process.VLLM_ENGINE else str(base_dir)
            pid, url, ready_s = self._start(base_dir, served)
            old_pid = st.pid if st else None
            st, started = self._new_state(url, pid, base_dir, served), True
        for a in st.adapters:
            self._post(st, "/unload_lora_adapter", {"lora_name": a}, check=False)
        st.adapters = []
        try:
            self._verify_listed(
                st,
                st.base_name,
                root=str(base_dir) if started and self.engine == process.VLLM_ENGINE else None,
            )
            st.base_probes = self._answers(st, st.base_name)
        except ServingError:
            if started:
                assert st.pid is not None  # a server started here has its pid
                process.stop(self.workdir, st.pid)
            raise
        if old_pid is not None:
            process.stop(self.workdir, old_pid)
        st.live_model, st.live_iteration, st.live_fingerprint = st.base_name, 0, fingerprint
        self._save(st)
        return Deployment(
            endpoint=f"{st.url}/v1",
            served_model=st.base_name,
            iteration=0,
            engine=st.engine,
            mode="base",
            fingerprint=fingerprint,
            replaced=replaced if replaced != st.base_name else None,
            server_started=started,
            ready_seconds=round(ready_s, 2),
            deploy_seconds=round(time.monotonic() - t0, 2),
            api_key_env=self.api_key_env,
        )

    def deploy(self, checkpoint_dir: Path, manifest: Manifest, iteration: int) -> Deployment:
        """Make the checkpoint live under ``manifest.adapter_name``; on any failure the previous model
        stays live and the error says why."""
        t0 = time.monotonic()
        st = self.running()
        if st is None:
            raise ServingError(
                f"no healthy server for this campaign (state {self.state_file}); serve the base model first"
            )
        ckpt, name, previous = Path(checkpoint_dir), manifest.adapter_name, st.live_model
        started, ready_s = False, 0.0
        if self.engine == process.VLLM_ENGINE and self.mode == "hot-swap":
            root = intact(ckpt / "adapter", "adapter_config.json", manifest.adapter_fingerprint)
            fingerprint, served, mode = manifest.adapter_fingerprint, name, "hot-swap"
            if name not in st.adapters:
                self._post(st, "/load_lora_adapter", {"lora_name": name, "lora_path": str(root)})
            try:
                self._verify_listed(st, name, root=str(root))
                differs_from_base(name, self._answers(st, name), st.base_probes)
            except ServingError:
                self._post(st, "/unload_lora_adapter", {"lora_name": name}, check=False)
                raise
            for old in [a for a in st.adapters if a != name]:  # only the live adapter stays loaded
                self._post(st, "/unload_lora_adapter", {"lora_name": old}, check=False)
            st.adapters = [name]
        elif self.engine == process.VLLM_ENGINE:  # restart on the merged checkpoint
            root = intact(ckpt / "merged", "config.json", manifest.merged_fingerprint)
            fingerprint, served, mode = manifest.merged_fingerprint, name, "restart"
            pid, url, ready_s = self._start(root, name)
            new = st.model_copy(update={"pid": pid, "url": url, "process_root": str(root), "adapters": []})
            try:
                self._verify_listed(new, name, root=str(root))
                differs_from_base(name, self._answers(new, name), st.base_probes)
            except ServingError:
                process.stop(self.workdir, pid)
                raise
            assert st.pid is not None  # restart mode: always a server this campaign started
            process.stop(self.workdir, st.pid)
            st, started = new, True
        else:  # transformers serve: by path
            root = intact(ckpt / "merged", "config.json", manifest.merged_fingerprint)
            fingerprint, served, mode = manifest.merged_fingerprint, str(root), "by-path"
            differs_from_base(served, self._answers(st, served), st.base_probes)
        st.live_model, st.live_iteration, st.live_fingerprint = served, iteration, fingerprint
        self._save(st)
        return Deployment(
            endpoint=f"{st.url}/v1",
            served_model=served,
            iteration=iteration,
            engine=st.engine,
            mode=mode,
            fingerprint=fingerprint,
            replaced=previous,
            server_started=started,
            ready_seconds=round(ready_s, 2),
            deploy_seconds=round(time.monotonic() - t0, 2),
            api_key_env=self.api_key_env,
        )

    def stop(self) -> bool:
        """Stop the server this campaign started; a server it does not own keeps serving the live model."""
        st = self.state()
        stopped = process.stop_recorded(self.workdir)  # the live one, and any a crash left behind
        if st is not None and st.pid is not None:
            self.state_file.unlink(missing_ok=True)
        return bool(stopped) or (st is not None and st.pid is not None)

    # -- helpers -------------------------------------------------------------------------------
    def _start(self, model_dir: Path, served_name: str) -> tuple[int, str, float]:
        pid, port = process.launch(self.engine, model_dir, served_name, self.workdir, self.limits)
        url = f"http://127.0.0.1:{port}"
        return pid, url, process.wait_ready(url, pid, self.ready_timeout_s, self.workdir, port)

    def _new_state(self, url: str, pid: int | None, base_dir: Path, served: str) -> ServingState:
        return ServingState(
            engine=self.engine,
            url=url,
            pid=pid,
            process_root=str(base_dir) if pid else "",
            base_dir=str(base_dir),
            base_name=served,
            live_model=served,
            started_at=time.time(),
        )

    def _external_base(self, base_name: str) -> str:
        """The base model id of a server this campaign does not own: ``base_name`` if listed, else the
        only listed model that is not an adapter."""
        assert self.base_url is not None  # called for a server at base_url only
        listed = self._models(self.base_url)
        if base_name in listed:
            return base_name
        bases = [m for m, info in listed.items() if not info.get("parent")]
        if len(bases) != 1:
            raise ServingError(f"{self.base_url}/v1/models lists {sorted(listed)}; none is {base_name!r}")
        return bases[0]

    def _endpoint(self, url: str) -> Endpoint:
        return Endpoint(f"{url}/v1", api_key(self.api_key_env), self.request_timeout_s, self.request_retries)

    def _post(self, st: ServingState, path: str, body: dict[str, str], check: bool = True) -> None:
        self._endpoint(st.url).post(path, body, check)

    def _models(self, url: str) -> dict[str, dict[str, Any]]:
        return self._endpoint(url).models()

    def _verify_listed(self, st: ServingState, model: str, root: str | None) -> None:
        if self.engine != process.VLLM_ENGINE:
            return  # transformers serve loads by path on request; the probes prove it serves
        listed = self._models(st.url)
        if model not in listed:
            raise ServingError(f"{st.url}/v1/models does not list {model!r} (listed: {sorted(listed)})")
        if root and listed[model].get("root") != root:
            raise ServingError(f"{model!r} is served from {listed[model].get('root')!r}, expected {root!r}")

    def _answers(self, st: ServingState, model: str) -> list[str]:
        endpoint = self._endpoint(st.url)
        return [endpoint.chat(model, p, PROBE_TOKENS) for p in PROBES]
