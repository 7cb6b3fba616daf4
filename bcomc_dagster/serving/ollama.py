"""The Ollama deployer: creates a model from a checkpoint through Ollama's HTTP API and verifies it.

Each file of the merged checkpoint is uploaded once as a blob (``HEAD`` then ``POST
/api/blobs/sha256:<digest>``), then ``POST /api/create`` names the files; Ollama converts safetensors
itself. The model is live when ``/api/tags`` lists it and a chat answers from the new weights. Re-eval
talks to Ollama's OpenAI-compatible ``/v1``. The server is not ours: stopping a campaign deletes the
models it created, except the one left live.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from bcomc_dagster.errors import ServingError
from bcomc_dagster.files import atomic_write
from bcomc_dagster.serving import ollama_api
from bcomc_dagster.serving.deployer import PROBE_TOKENS, PROBES, Deployment, Live, differs_from_base, intact
from bcomc_dagster.serving.endpoint import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, Endpoint
from bcomc_dagster.text import clip
from bcomc_dagster.training.base_model import CHAT_TEMPLATE, OLLAMA_TEMPLATE
from bcomc_dagster.training.manifest import Manifest
from bcomc_dagster.training.weights import file_sha256

ENGINE = "ollama"
DEFAULT_URL = ollama_api.OLLAMA_URL


class OllamaState(BaseModel):
    url: str
    base_name: str
    base_probes: list[str] = []
    base_template: str | None = (
        None  # a base tag's chat template and parameters (stop tokens), given to every model
    )
    base_parameters: dict[str, Any] = {}  # created from its checkpoints, so they are prompted as the base was
    live_model: str
    live_iteration: int = 0
    live_fingerprint: str = ""
    created: list[str] = []


def model_name(name: str) -> str:
    """Ollama model names are lower case; a bare name gets the ``latest`` tag. A name with capitals gets a
    short hash of its spelling, so that campaigns "Demo" and "demo" never share (or delete) a model."""
    if name != name.lower():
        base, _, tag = name.partition(":")
        name = f"{base.lower()}-{hashlib.sha256(base.encode()).hexdigest()[:6]}" + (
            f":{tag.lower()}" if tag else ""
        )
    return name if ":" in name else f"{name}:latest"


class OllamaDeployer:
    engine = ENGINE
    owns_server = False

    def __init__(
        self,
        workdir: Path,
        campaign: str,
        url: str = DEFAULT_URL,
        ready_timeout_s: float = 300.0,
        base_tag: str | None = None,
        request_timeout_s: float = DEFAULT_TIMEOUT_S,
        request_retries: int = DEFAULT_RETRIES,
    ):
        self.workdir = Path(workdir)
        self.campaign = campaign
        # the user's tag, served as is for the baseline and never deleted
        self.base_tag = (base_tag if ":" in base_tag else f"{base_tag}:latest") if base_tag else None
        self.url = url.rstrip("/")
        self.ready_timeout_s = ready_timeout_s
        self.request_timeout_s, self.request_retries = request_timeout_s, request_retries
        self.state_file = self.workdir / "ollama.json"
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(60, read=600))

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> OllamaState | None:
        return (
            OllamaState.model_validate_json(self.state_file.read_text())
            if self.state_file.is_file()
            else None
        )

    def _save(self, st: OllamaState) -> None:
        atomic_write(self.state_file, st.model_dump_json(indent=2))

    def live(self) -> Live | None:
        st = self.state()
        if st is None or st.live_model.lower() not in {t.lower() for t in self._tags()}:
            return None
        return Live(
            endpoint=f"{self.url}/v1",
            model=st.live_model,
            iteration=st.live_iteration,
            fingerprint=st.live_fingerprint,
        )

    # -- operations ----------------------------------------------------------------------------
    def ensure_base(self, base_dir: Path, base_name: str, fingerprint: str) -> Deployment:
        t0 = time.monotonic()
        previous = self.state()
        st = previous or OllamaState(url=self.url, base_name="", live_model="")
        if self.base_tag:  # the user's model, as Ollama serves it: evaluated as is
            name = self.base_tag
            try:
                shown = ollama_api.show(name, self.url, timeout_s=60)
            except ValueError as e:
                raise ServingError(str(e)) from e
            st.base_template, st.base_parameters = (
                shown.get("template") or None,
                parse_parameters(shown.get("parameters", "")),
            )
            self._request(
                "POST", "/api/chat", json={"model": name, "messages": [], "stream": False}
            )  # preload
        else:
            name = model_name(f"{self.campaign}-base")
            self._create(name, Path(base_dir))
            st.created = sorted({*st.created, name})
        st.base_name, st.base_probes = name, self._answers(name)
        st.live_model, st.live_iteration, st.live_fingerprint = name, 0, fingerprint
        self._save(st)
        return Deployment(
            endpoint=f"{self.url}/v1",
            served_model=name,
            iteration=0,
            engine=ENGINE,
            mode="base",
            fingerprint=fingerprint,
            replaced=previous.live_model if previous and previous.live_model != name else None,
            deploy_seconds=round(time.monotonic() - t0, 2),
        )

    def deploy(self, checkpoint_dir: Path, manifest: Manifest, iteration: int) -> Deployment:
        t0 = time.monotonic()
        st = self.state()
        if st is None:
            raise ServingError(f"no base model deployed on {self.url} for this campaign ({self.state_file})")
        merged = intact(Path(checkpoint_dir) / "merged", "config.json", manifest.merged_fingerprint)
        name, previous = model_name(manifest.adapter_name), st.live_model
        self._create(name, merged, st)
        try:
            differs_from_base(name, self._answers(name), st.base_probes)
        except ServingError:
            self._delete(name)
            raise
        for old in [m for m in st.created if m not in (name, st.base_name)]:
            self._delete(old)  # earlier iterations' models are no longer needed
        st.created = sorted({st.base_name, name} - {self.base_tag})
        st.live_model, st.live_iteration, st.live_fingerprint = name, iteration, manifest.merged_fingerprint
        self._save(st)
        return Deployment(
            endpoint=f"{self.url}/v1",
            served_model=name,
            iteration=iteration,
            engine=ENGINE,
            mode="ollama-create",
            fingerprint=manifest.merged_fingerprint,
            replaced=previous,
            deploy_seconds=round(time.monotonic() - t0, 2),
        )

    def stop(self) -> bool:
        """Delete the models this campaign created, except the live one; Ollama itself keeps running."""
        st = self.state()
        if st is None:
            return False
        for m in st.created:
            if m not in (st.live_model, self.base_tag):
                self._delete(m)
        st.created = [m for m in [st.live_model] if m != self.base_tag]
        self._save(st)
        return False

    # -- Ollama HTTP API -----------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ServingError(f"ollama at {self.url}: {method} {path} failed: {e}") from e
        if r.status_code >= 400 and not (method == "HEAD" and r.status_code == 404):
            raise ServingError(
                f"ollama at {self.url}: {method} {path} answered {r.status_code}: {clip(r.text)}"
            )
        return r

    def _upload(self, folder: Path) -> dict[str, str]:
        files = {}
        for f in sorted(p for p in folder.iterdir() if p.is_file()):
            digest = f"sha256:{file_sha256(f)}"
            if self._request("HEAD", f"/api/blobs/{digest}").status_code != 200:
                with open(f, "rb") as fh:
                    self._request("POST", f"/api/blobs/{digest}", content=fh)
            files[f.name] = digest
        return files

    def _create(self, name: str, folder: Path, st: OllamaState | None = None) -> None:
        body: dict[str, Any] = {
            "model": name,
            "files": self._upload(folder),
            "stream": False,
            "parameters": {"temperature": 0, "seed": 0},
        }
        if st is not None and st.base_template:  # prompted exactly as the base tag
            body.update(template=st.base_template, parameters={**st.base_parameters, **body["parameters"]})
        elif _uses_embedded_template(folder):
            body.update(template=OLLAMA_TEMPLATE, parameters={**body["parameters"], "stop": ["<|end|>"]})
        r = self._request("POST", "/api/create", json=body)
        if r.json().get("status") != "success":
            raise ServingError(f"ollama at {self.url}: creating {name!r} did not succeed: {clip(r.text)}")
        poll = Retrying(
            stop=stop_after_delay(self.ready_timeout_s),
            wait=wait_fixed(0.5),
            retry=retry_if_result(lambda ok: not ok),
        )
        try:
            poll(lambda: name in self._tags())
        except RetryError:
            raise ServingError(
                f"ollama at {self.url}: {name!r} not listed by /api/tags within {self.ready_timeout_s:.0f} s"
            ) from None
        self._request("POST", "/api/chat", json={"model": name, "messages": [], "stream": False})  # preload

    def _tags(self) -> set[str]:
        try:
            r = self.http.get("/api/tags", timeout=10)
        except httpx.HTTPError:
            return set()
        return {m["name"] for m in r.json().get("models", [])} if r.status_code == 200 else set()

    def _delete(self, name: str) -> None:
        with contextlib.suppress(
            httpx.HTTPError
        ):  # best effort: a model left behind costs disk, not correctness
            self.http.request("DELETE", "/api/delete", json={"model": name})

    def _answers(self, name: str) -> list[str]:
        """The probes' answers through Ollama's OpenAI-compatible ``/v1``, as the re-eval will ask them."""
        endpoint = Endpoint(
            f"{self.url}/v1", timeout_s=self.request_timeout_s, max_retries=self.request_retries
        )
        return [endpoint.chat(name, p, PROBE_TOKENS) for p in PROBES]


def parse_parameters(text: str) -> dict[str, Any]:
    """``/api/show``'s ``parameters`` text (``stop "<|im_end|>"`` lines, values quoted as Go's %q) as
    ``/api/create``'s ``parameters``; stop values stay strings."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, raw = line.strip().partition(" ")
        raw = raw.strip()
        if not key or not raw:
            continue
        try:
            value = json.loads(raw)  # a quoted string (with \n escapes) or a number
        except json.JSONDecodeError:
            value = raw
        if key == "stop":
            out.setdefault("stop", []).append(
                raw[1:-1] if raw.startswith('"') and not isinstance(value, str) else str(value)
            )
        else:
            out[key] = value
    return out


def _uses_embedded_template(folder: Path) -> bool:
    """Ollama infers well-known chat templates; the embedded model's own is passed explicitly."""
    f = folder / "chat_template.jinja"
    return f.is_file() and f.read_text().strip() == CHAT_TEMPLATE.strip()
