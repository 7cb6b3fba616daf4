"""A loopback server that speaks Ollama's HTTP API (no Ollama binary can be installed here).

It keeps blobs by digest (checking them as Ollama does), "creates" a model by assembling the named
files into a folder and loading it with transformers, and answers ``/api/chat`` and the
OpenAI-compatible ``/v1/chat/completions`` from those weights, greedily. So a deployer that uploads the
wrong weights gets the wrong answers, as it would from Ollama.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


class FakeOllama:
    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.models: dict[str, tuple] = {}  # name -> (model, tokenizer, folder)
        self.lock = threading.Lock()
        self.hidden: set[str] = set()  # models /api/tags does not list (a create that never completes)
        self.requests: list[tuple[str, str]] = []
        self.app = Starlette(routes=[
            Route("/", lambda r: PlainTextResponse("Ollama is running")),
            Route("/api/blobs/{digest}", self.blob, methods=["HEAD", "POST"]),
            Route("/api/create", self.create, methods=["POST"]),
            Route("/api/tags", self.tags, methods=["GET"]),
            Route("/api/chat", self.chat, methods=["POST"]),
            Route("/api/delete", self.delete, methods=["DELETE"]),
            Route("/v1/chat/completions", self.openai_chat, methods=["POST"]),
            Route("/v1/models", self.openai_models, methods=["GET"]),
        ])  # fmt: skip

    # -- blobs and models ----------------------------------------------------------------------
    async def blob(self, request: Request) -> Response:
        digest = request.path_params["digest"]
        self.requests.append((request.method, request.url.path))
        path = self.root / "blobs" / digest.replace(":", "-")
        if request.method == "HEAD":
            return Response(status_code=200 if path.exists() else 404)
        body = await request.body()
        if f"sha256:{hashlib.sha256(body).hexdigest()}" != digest:
            return JSONResponse({"error": "digest mismatch"}, status_code=400)
        path.write_bytes(body)
        return Response(status_code=201)

    async def create(self, request: Request) -> Response:
        body = await request.json()
        name = _full(body["model"])
        folder = self.root / "models" / name.replace(":", "_").replace("/", "_")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for fname, digest in body.get("files", {}).items():
            blob = self.root / "blobs" / digest.replace(":", "-")
            if not blob.exists():
                return JSONResponse({"error": f"blob {digest} not found"}, status_code=400)
            shutil.copy(blob, folder / fname)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = AutoModelForCausalLM.from_pretrained(folder).eval()
            tok = AutoTokenizer.from_pretrained(folder)
        except Exception as e:  # noqa: BLE001 - what Ollama answers when it cannot convert the files
            return JSONResponse({"error": f"unsupported model: {e}"[:300]}, status_code=400)
        with self.lock:
            self.models[name] = (model, tok, folder)
        return JSONResponse({"status": "success"})

    async def tags(self, request: Request) -> Response:
        models = [
            {"name": n, "model": n, "modified_at": "2026-01-01T00:00:00Z", "size": 0, "digest": "", "details": {}}
            for n in self.models
            if n not in self.hidden
        ]
        return JSONResponse({"models": models})

    async def delete(self, request: Request) -> Response:
        name = _full((await request.json())["model"])
        with self.lock:
            found = self.models.pop(name, None)
        return Response(status_code=200) if found else JSONResponse({"error": f"model '{name}' not found"}, 404)

    # -- inference -----------------------------------------------------------------------------
    def _generate(self, name: str, messages: list[dict], max_tokens: int) -> str | None:
        import torch

        with self.lock:
            entry = self.models.get(_full(name))
        if entry is None:
            return None
        model, tok, _ = entry
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        name = body["model"]
        if not body.get("messages"):
            if _full(name) not in self.models:
                return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)
            return JSONResponse({"model": name, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "load"})
        n = int(body.get("options", {}).get("num_predict", 48))
        text = self._generate(name, body["messages"], n)
        if text is None:
            return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)
        return JSONResponse({"model": name, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "message": {"role": "assistant", "content": text}, "done": True, "done_reason": "stop"})  # fmt: skip

    async def openai_chat(self, request: Request) -> Response:
        body = await request.json()
        text = self._generate(body["model"], body["messages"], int(body.get("max_tokens") or 48))
        if text is None:
            return JSONResponse({"error": {"message": f"model '{body['model']}' not found", "type": "api_error"}}, 404)
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })  # fmt: skip

    async def openai_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "library"} for n in self.models]})


def _full(name: str) -> str:
    return name if ":" in name else f"{name}:latest"
