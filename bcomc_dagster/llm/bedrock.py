"""Amazon Bedrock through boto3's ``bedrock-runtime`` Converse API.

Credentials and region come from the standard AWS chain (environment, profile, instance role);
``base_url`` becomes boto3's ``endpoint_url``. Throttling and 5xx are retried by botocore's own
``standard`` retry mode; structured output is a forced tool call (``toolChoice``).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bcomc_dagster.llm.base import (
    ChatModel,
    ChatRequest,
    Completion,
    PermanentLLMError,
    TransientLLMError,
    Usage,
    parse_json_object,
)
from bcomc_dagster.llm.registry import ProviderSettings

# error codes that no retry can heal
PERMANENT = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ValidationException",
    "ResourceNotFoundException",
    "ExpiredTokenException",
    "ModelNotReadyException",
}


class BedrockModel(ChatModel):
    provider = "bedrock"

    def __init__(self, model: str, settings: ProviderSettings, client: Any = None):  # boto3's, untyped
        super().__init__(model)
        self.client = client or boto3.client(
            "bedrock-runtime",
            region_name=settings.region,
            endpoint_url=settings.base_url,
            config=Config(
                retries={
                    "total_max_attempts": settings.max_retries + 1,
                    "mode": "standard",
                },  # first call included
                connect_timeout=min(10, settings.timeout_s),
                read_timeout=settings.timeout_s,
            ),
        )

    def _call(self, request: ChatRequest) -> Completion:
        kwargs: dict[str, Any] = {
            "modelId": self.model,
            "messages": [{"role": m.role, "content": [{"text": m.content}]} for m in request.messages],
            "inferenceConfig": {"maxTokens": request.max_tokens, "temperature": request.temperature},
        }
        if request.system:
            kwargs["system"] = [{"text": request.system}]
        if s := request.schema_:
            kwargs["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": s.name,
                            "description": s.description,
                            "inputSchema": {"json": s.json_schema},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": s.name}},
            }
        try:
            resp = self.client.converse(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            cls = PermanentLLMError if code in PERMANENT else TransientLLMError
            raise cls(
                f"bedrock model {self.model!r}: {code}: {e.response.get('Error', {}).get('Message', e)}"
            ) from e
        except BotoCoreError as e:
            raise TransientLLMError(f"bedrock model {self.model!r}: {e}") from e
        content = resp["output"]["message"]["content"]
        text = "".join(c.get("text", "") for c in content)
        data = next((c["toolUse"]["input"] for c in content if "toolUse" in c), None)
        if data is None and request.schema_:
            data = parse_json_object(text)
        u = resp.get("usage", {})
        return Completion(
            text=text,
            data=data,
            provider=self.provider,
            model=self.model,
            usage=Usage(input_tokens=u.get("inputTokens", 0), output_tokens=u.get("outputTokens", 0)),
        )
