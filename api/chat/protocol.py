"""The OpenAI chat-completions wire types we accept (a strict subset of OpenAI's schema).

Strict: a value of the wrong JSON type is refused (400), never coerced ("true" is no
boolean, "1" no number), so what the OpenAPI document says is what is accepted."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from acl.filter import RequestFilter
from core.errors import InvalidRequest


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message as plain text (text parts of a multi-part message, joined)."""
        if isinstance(self.content, list):
            return "\n".join(
                str(part.get("text", "")) for part in self.content if part.get("type") == "text"
            )
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)

    include_usage: bool = False


class RetrievalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = True
    top_k: int | None = Field(None, ge=1)
    filter: RequestFilter | None = None


class HeadwaterOptions(BaseModel):
    """The ``headwater`` extension object of a request body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    retrieval: RetrievalOptions = Field(default_factory=RetrievalOptions)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = "auto"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: dict[str, Any] | None = Field(
        None, description="Passed to vLLM as is (json_object, json_schema: structured output)."
    )
    n: int = Field(1, ge=1, le=1, description="Only n=1 is served.")
    user: str | None = None
    headwater: HeadwaterOptions = Field(default_factory=HeadwaterOptions)
    # Accepted here only to be refused by name (``refuse_tools``), never dropped silently.
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None


TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call")


def refuse_tools(request: ChatCompletionRequest) -> None:
    """Tool calling is not served (the gateway's answers are grounded in documents, and
    the served models run without a tool parser): a request that asks for it gets a 400
    naming the field, rather than an answer that silently ignored its tools."""
    for name in TOOL_FIELDS:
        if getattr(request, name) is not None:
            raise InvalidRequest(
                f"'{name}' is not supported by this gateway: tool calling is not served; "
                "send the request without it",
                param=name,
                code="tools_not_supported",
            )


class Citation(BaseModel):
    doc_id: str
    chunk_no: int
    title: str | None = None
    uri: str | None = None
    score: float
    used: bool = Field(
        True,
        description="False when the answer cited no source by number: it was in the "
        "prompt, but the model did not say whether it used it.",
    )
