"""Request and response models of the HTTP API; the OpenAPI spec at /openapi.json is generated from these.

Requests are strict (no silent type coercion: ``"prompt": 5`` is an error, not ``"5"``) and forbid unknown keys,
so a typo such as ``"step-type"`` is refused instead of quietly routing without a floor. The OpenAI-compatible
request is the exception: it allows the many OpenAI parameters we do not interpret and forwards them upstream.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aco_bert.data.messages import content_text, messages_to_text
from aco_bert.runtime.inputs import MAX_LOGPROBS, MAX_RESPONSE_CHARS
from aco_bert.data.text import is_blank

_STRICT = ConfigDict(strict=True, extra="forbid")


class ContentPart(BaseModel):
    """One part of a multi-part message; only ``text`` parts carry routable text."""

    model_config = ConfigDict(strict=True, extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")  # name, tool_calls, tool_call_id ... are passed through
    role: str = Field(min_length=1)
    content: str | list[ContentPart | str] | None = None  # a bare string part is text, as in the OpenAI format

    def plain(self) -> dict[str, Any]:
        """``role`` and ``content`` as plain JSON data, the form :mod:`aco_bert.data.messages` reads."""
        return self.model_dump(include={"role", "content"})

    def text(self) -> str:
        return content_text(self.plain()["content"])


def messages_text(messages: list[ChatMessage]) -> str:
    """The text the router sees for a conversation (:func:`aco_bert.data.messages.messages_to_text`, the same
    function the batch scorer uses); "" when it holds none, so each request model words its own error."""
    return messages_to_text([m.plain() for m in messages], require_text=False)


class RoutingFields(BaseModel):
    """Optional routing context shared by /v1/route items and the proxy's ``aco`` extension."""

    model_config = _STRICT
    step_type: str | None = Field(None, description="agent step type; unknown types are refused (spec step_type_min)")
    domain: str | list[str] | None = Field(None, description="domain(s) whose floors apply, e.g. 'legal'")
    budget: float | None = Field(None, ge=0, allow_inf_nan=False, description="USD budget for this task")
    min_tier: int | None = Field(None, ge=1, description="lowest 1-based tier allowed")
    metadata: dict[str, str] | None = Field(None, description="values of the router spec's declared metadata "
                                            "columns, e.g. {\"repo\": \"django/django\"}; undeclared keys -> 422")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v):
        if v is not None and len(v) > 64:
            raise ValueError("at most 64 metadata columns")
        return v

    @field_validator("domain")
    @classmethod
    def _domains(cls, v):
        if isinstance(v, list):
            if len(v) > 64:
                raise ValueError("at most 64 domains")
            if any(not d.strip() for d in v):
                raise ValueError("domain names must not be empty")
        elif isinstance(v, str) and not v.strip():
            raise ValueError("domain must not be empty")
        return v


class PromptFields(BaseModel):
    """Exactly one of ``prompt`` or ``messages``; blank text is refused."""

    model_config = _STRICT
    prompt: str | None = Field(None, description="the prompt or agent step to route")
    messages: list[ChatMessage] | None = Field(None, description="OpenAI-style messages (routed on their text)")

    @model_validator(mode="after")
    def _one_text(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if is_blank(self.text()):
            raise ValueError("prompt is empty (only whitespace, zero-width, BOM, NUL or other invisible characters)")
        return self

    def text(self) -> str:
        return self.prompt if self.prompt is not None else messages_text(self.messages or [])


class RouteRequest(PromptFields, RoutingFields):
    model_config = _STRICT


class TierScore(BaseModel):
    tier: int
    model: str
    p_success: float
    expected_cost: float


class RouteResponse(BaseModel):
    tier: int = Field(description="chosen tier, 1-based, cheapest first")
    model: str
    p_success: float = Field(description="calibrated P(success) of the chosen tier")
    expected_cost: float = Field(description="expected USD cost of the chosen tier")
    tiers: list[TierScore] = Field(description="every tier's calibrated P(success) and expected cost")
    reasons: list[str]
    policy: str
    min_tier: int
    n_tokens: int
    truncated: bool = Field(description="the prompt was too long and was cut head+tail before scoring")
    truncation: str | None = Field(None, description="how the prompt was cut, when it was")
    latency_ms: float


class RouteBatchRequest(BaseModel):
    model_config = _STRICT
    items: list[RouteRequest] = Field(min_length=1, description="prompts to route in one forward pass (bounded)")


class RouteBatchResponse(BaseModel):
    decisions: list[RouteResponse]
    latency_ms: float


class Trace(BaseModel):
    """What running a tier cost; the escalation model reads these (unknown keys are passed to the router)."""

    model_config = ConfigDict(strict=True, extra="allow")
    api_calls: float | None = Field(None, ge=0, allow_inf_nan=False)
    cost: float | None = Field(None, ge=0, allow_inf_nan=False)
    latency_s: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _finite_extras(self):
        for k, v in (self.model_extra or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"trace.{k} must be a finite number")
        return self

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class EarlierResponse(BaseModel):
    """What a tier that ran before ``tier_run`` answered on the same prompt (for answer agreement)."""

    model_config = _STRICT
    tier: int = Field(ge=1, description="1-based tier that gave this answer")
    text: str = Field(max_length=MAX_RESPONSE_CHARS, description="its answer text")


LogProb = Annotated[float, Field(le=0, allow_inf_nan=False)]
MAX_EARLIER = 256  # structural bound on `responses`; the router checks each tier against its spec


class EscalateRequest(PromptFields):
    """The run to judge; ``response`` (+ ``responses``, ``logprobs``) feed the bundle's response verifier, and a
    request without them is judged on its trace and the router's prior, as before."""

    model_config = _STRICT
    tier_run: int = Field(ge=1, description="1-based tier whose answer is being judged")
    trace: Trace = Field(default_factory=Trace)
    step_type: str | None = Field(None, description="agent step type of the run (its floor applies)")
    response: str | None = Field(None, max_length=MAX_RESPONSE_CHARS, description="what tier_run answered")
    responses: list[EarlierResponse] | None = Field(
        None, max_length=MAX_EARLIER, description="answers of the tiers that ran before tier_run on this prompt")
    logprobs: list[LogProb] | None = Field(None, max_length=MAX_LOGPROBS,
                                           description="token logprobs of `response` (finite, <= 0)")

    @model_validator(mode="after")
    def _run_output(self):
        if self.response is None and (self.responses is not None or self.logprobs is not None):
            raise ValueError("'responses' and 'logprobs' describe a response: give 'response' (tier_run's answer)")
        seen: set[int] = set()
        for r in self.responses or []:
            if r.tier == self.tier_run:
                raise ValueError(f"responses holds tier {r.tier}, the tier that ran: pass its text as 'response'")
            if r.tier in seen:
                raise ValueError(f"responses holds tier {r.tier} twice")
            seen.add(r.tier)
        return self

    def earlier(self) -> dict[int, str] | None:
        """``responses`` as the router takes them: {1-based tier: text}."""
        return None if self.responses is None else {r.tier: r.text for r in self.responses}


class EscalateResponse(BaseModel):
    accept: bool
    p_success: float
    tier_run: int
    next_tier: int | None
    next_model: str | None
    reasons: list[str]
    latency_ms: float


class ChatCompletionRequest(BaseModel):
    """OpenAI ``/v1/chat/completions``; ``model`` must be ``aco-router``, ``router-<policy>`` or ``aco-cascade``.

    ``aco`` (send it with the OpenAI SDK's ``extra_body``) carries routing context and is stripped before forwarding.
    """

    model_config = ConfigDict(strict=True, extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    aco: RoutingFields | None = None

    @model_validator(mode="after")
    def _text(self):
        if is_blank(messages_text(self.messages)):
            raise ValueError("messages carry no text to route on (empty prompt: only whitespace or invisible "
                             "characters)")
        return self


class ErrorDetail(BaseModel):
    code: str
    message: str
    type: str = "invalid_request_error"
    upstream_status: int | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    verified: bool
    bundle: str | None = None
    error: str | None = None


class RouterInfo(BaseModel):
    spec: dict[str, Any]
    tiers: list[dict[str, Any]]
    policy: str | None
    max_length: int | None
    models: list[str]
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    service: dict[str, Any]
