"""The local deployer: one OpenAI-compatible server on 127.0.0.1 per campaign.

With vLLM, the base model is served once and every iteration's LoRA adapter is hot-swapped in under a
new name (``{campaign}-it{i}``; reusing a name can serve stale cached blocks). With ``transformers serve``,
which loads any local folder on request, the iteration's merged checkpoint is served by path.
Either way a deployment is verified before anyone evaluates it: the model id is listed by the server,
points at this checkpoint, and answers probes differently from the base model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel

from bcomc_dagster.errors import ServingError
from bcomc_dagster.serving import process

PROBES = ("What is the default port?", "Which command-line tool is used?", "What is the retention period?")


class ServingState(BaseModel):
    """What runs for a campaign; saved as JSON so that later steps and runs find the server again."""

    engine: str
    pid: int
    port: int
    base_dir: str
    base_name: str
    live_model: str
    live_iteration: int = 0
    live_fingerprint: str = ""
    adapters: list[str] = []
    started_at: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Deployment(BaseModel):
    endpoint: str
    served_model: str
    iteration: int
    engine: str
    mode: Literal["base", "hot-swap", "by-path"]
    fingerprint: str
    replaced: str | None = None
    server_started: bool = False
    ready_seconds: float = 0.0
    deploy_seconds: float = 0.0


class LocalDeployer:
    def __init__(self, workdir: Path, engine: str | None = None, ready_timeout_s: float = 240.0, max_lora_rank: int = 16):
        self.workdir = Path(workdir)
        self.engine = engine or process.available_engine()
        self.ready_timeout_s = ready_timeout_s
        self.max_lora_rank = max_lora_rank
        self.state_file = self.workdir / "serving.json"

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> ServingState | None:
        if not self.state_file.is_file():
            return None
        return ServingState.model_validate_json(self.state_file.read_text())

    def _save(self, state: ServingState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2))
        tmp.replace(self.state_file)

    def running(self) -> ServingState | None:
        st = self.state()
        if st and process.pid_alive(st.pid) and process.healthy(st.url):
            return st
        return None

    # -- operations ----------------------------------------------------------------------------
    def ensure_base(self, base_dir: Path, base_name: str, fingerprint: str) -> Deployment:
        """Serve the base model (reusing a healthy server of this campaign) and verify it answers."""
        t0 = time.monotonic()
        st = self.running()
        started, ready_s = False, 0.0
        if st is None or st.base_dir != str(base_dir) or st.engine != self.engine:
            if st is not None:
                process.stop(st.pid)
            pid, port = process.launch(self.engine, base_dir, base_name, self.workdir, self.max_lora_rank)
            ready_s = process.wait_ready(f"http://127.0.0.1:{port}", pid, self.ready_timeout_s, self.workdir, port)
            started = True
            served = base_name if self.engine == process.VLLM_ENGINE else str(base_dir)
            st = ServingState(
                engine=self.engine, pid=pid, port=port, base_dir=str(base_dir), base_name=served,
                live_model=served, live_fingerprint=fingerprint, started_at=time.time(),
            )  # fmt: skip
        replaced = st.live_model if st.live_model != st.base_name else None
        st.live_model, st.live_iteration, st.live_fingerprint = st.base_name, 0, fingerprint
        self._save(st)
        self._verify_listed(st, st.base_name, root=str(base_dir) if self.engine == process.VLLM_ENGINE else None)
        self._chat(st, st.base_name, PROBES[0])
        return Deployment(
            endpoint=f"{st.url}/v1", served_model=st.base_name, iteration=0, engine=st.engine, mode="base",
            fingerprint=fingerprint, replaced=replaced, server_started=started, ready_seconds=round(ready_s, 2),
            deploy_seconds=round(time.monotonic() - t0, 2),
        )  # fmt: skip

    def deploy(self, checkpoint_dir: Path, name: str, iteration: int, fingerprint: str) -> Deployment:
        """Make ``checkpoint_dir`` live under ``name``; on any failure the previous model stays live."""
        t0 = time.monotonic()
        st = self.running()
        if st is None:
            raise ServingError(
                f"no healthy server for this campaign (state {self.state_file}); deploy the base model first"
            )
        adapter, merged = Path(checkpoint_dir) / "adapter", Path(checkpoint_dir) / "merged"
        previous = st.live_model
        if self.engine == process.VLLM_ENGINE:
            if not (adapter / "adapter_config.json").is_file():
                raise ServingError(f"{adapter}: no adapter_config.json; the checkpoint is missing or incomplete")
            if name not in st.adapters:
                self._post(st, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter)})
            served, mode, root = name, "hot-swap", str(adapter)
        else:
            if not (merged / "config.json").is_file():
                raise ServingError(f"{merged}: no config.json; the checkpoint is missing or incomplete")
            served, mode, root = str(merged), "by-path", None
        try:
            self._verify_listed(st, served, root=root)
            self._verify_differs(st, served)
        except ServingError:
            if self.engine == process.VLLM_ENGINE:
                self._post(st, "/v1/unload_lora_adapter", {"lora_name": name}, check=False)
            raise
        # unload adapters no longer needed: only the live one is kept
        for old in [a for a in st.adapters if a != name]:
            self._post(st, "/v1/unload_lora_adapter", {"lora_name": old}, check=False)
        st.adapters = [name] if mode == "hot-swap" else []
        st.live_model, st.live_iteration, st.live_fingerprint = served, iteration, fingerprint
        self._save(st)
        return Deployment(
            endpoint=f"{st.url}/v1", served_model=served, iteration=iteration, engine=st.engine, mode=mode,
            fingerprint=fingerprint, replaced=previous, deploy_seconds=round(time.monotonic() - t0, 2),
        )  # fmt: skip

    def stop(self) -> bool:
        st = self.state()
        if st is None:
            return False
        process.stop(st.pid)
        self.state_file.unlink(missing_ok=True)
        return True

    # -- HTTP ----------------------------------------------------------------------------------
    def _post(self, st: ServingState, path: str, body: dict, check: bool = True) -> None:
        try:
            r = httpx.post(f"{st.url}{path}", json=body, timeout=60)
        except httpx.HTTPError as e:
            raise ServingError(f"{st.url}{path}: {e}") from e
        if check and r.status_code != 200:
            raise ServingError(f"{st.url}{path} answered {r.status_code}: {r.text[:300]}")

    def _verify_listed(self, st: ServingState, model: str, root: str | None) -> None:
        if self.engine != process.VLLM_ENGINE:
            return  # transformers serve loads by path on request; the probe below proves it serves
        r = httpx.get(f"{st.url}/v1/models", timeout=30)
        listed = {m["id"]: m for m in r.json().get("data", [])}
        if model not in listed:
            raise ServingError(f"{st.url}/v1/models does not list {model!r} (listed: {sorted(listed)})")
        if root and listed[model].get("root") != root:
            raise ServingError(f"{model!r} is served from {listed[model].get('root')!r}, expected {root!r}")

    def _chat(self, st: ServingState, model: str, prompt: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 24}
        try:
            r = httpx.post(f"{st.url}/v1/chat/completions", json=body, timeout=120)
        except httpx.HTTPError as e:
            raise ServingError(f"{st.url}: chat with {model!r} failed: {e}") from e
        if r.status_code != 200:
            raise ServingError(f"{st.url}: chat with {model!r} answered {r.status_code}: {r.text[:300]}")
        return r.json()["choices"][0]["message"]["content"] or ""

    def _verify_differs(self, st: ServingState, model: str) -> None:
        """An adapter that does not apply yields base-model output: demand at least one different answer."""
        new = [self._chat(st, model, p) for p in PROBES]
        base = [self._chat(st, st.base_name, p) for p in PROBES]
        if new == base:
            raise ServingError(f"{model!r} answers the probes exactly as the base model: the new weights do not apply")
