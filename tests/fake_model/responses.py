"""The OpenAI Responses API as Codex CLI 0.169 uses it: `POST /v1/responses`, streamed as SSE.

Codex is stateless: every request re-sends the whole conversation in `input`. Reply keys:
  {"text": "..."}                          an assistant message (ends the agent's turn)
  {"shell": "python3 -m unittest -q"}      an `exec_command` function call (codex runs it)
  {"patch": "*** Begin Patch\\n..."}        an `apply_patch` custom tool call (codex edits files)
A reply may hold "text" plus one tool key: the message comes first. Any `{cwd}` in a reply is
replaced by the agent's working directory (from the request's <environment_context>).
Codex only opens a WebSocket for the built-in `openai` provider; gastown's runner uses a
custom provider, so plain HTTP POST is all this module has to speak.
"""
from __future__ import annotations

import itertools
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_model.server import FakeModel, Handler, Reply

ASSISTANT_ITEMS = frozenset({"function_call", "custom_tool_call", "reasoning"})
CWD = re.compile(r"<cwd>(.*?)</cwd>", re.S)
_ids = itertools.count(1)


class ResponsesProtocol:
    name = "responses"

    def model_of(self, body: dict[str, Any]) -> str:
        return str(body.get("model", ""))

    def turn_of(self, body: dict[str, Any]) -> int:
        """Prior model responses: runs of assistant-side items between tool outputs/user text."""
        turns, inside = 0, False
        for item in body.get("input", []):
            mine = _is_assistant(item)
            turns += mine and not inside
            inside = mine
        return turns

    def prompt_of(self, body: dict[str, Any]) -> str:
        return "\n".join(_texts(body, "user"))

    def respond(self, http: Handler, body: dict[str, Any], reply: Reply,
                server: FakeModel) -> None:
        cwd = next((m.group(1) for t in _texts(body, "user") for m in CWD.finditer(t)), "")
        items = _items(_expand(reply, cwd))
        rid = f"resp_{next(_ids)}"
        events: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "response": {"id": rid}})]
        for index, item in enumerate(items):
            events.append(("response.output_item.done", {
                "type": "response.output_item.done", "output_index": index, "item": item}))
        events.append(("response.completed", {"type": "response.completed", "response": {
            "id": rid, "usage": _usage(server.usage_in, server.usage_out)}}))
        http.send_sse(events)

    def error(self, http: Handler, status: int, message: str, retry: bool) -> None:
        kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        headers = {"x-should-retry": "true" if retry else "false"}
        if retry:
            headers["Retry-After"] = "1"
        http.send_json(status, {"error": {"message": message, "type": kind, "param": None,
                                          "code": code}}, headers)


def _is_assistant(item: dict[str, Any]) -> bool:
    if item.get("type") == "message":
        return item.get("role") == "assistant"
    return item.get("type") in ASSISTANT_ITEMS


def _texts(body: dict[str, Any], role: str) -> list[str]:
    return [part.get("text", "") for item in body.get("input", [])
            if item.get("type") == "message" and item.get("role") == role
            for part in item.get("content", []) if isinstance(part, dict)]


def _expand(reply: Reply, cwd: str) -> Reply:
    return {k: v.replace("{cwd}", cwd) if isinstance(v, str) else v for k, v in reply.items()}


def _items(reply: Reply) -> list[dict[str, Any]]:
    items = []
    if "text" in reply:
        items.append({"type": "message", "role": "assistant", "id": f"msg_{next(_ids)}",
                      "content": [{"type": "output_text", "text": reply["text"]}]})
    call_id = f"call_{next(_ids)}"
    if "shell" in reply:
        items.append({"type": "function_call", "call_id": call_id, "name": "exec_command",
                      "arguments": json.dumps({"cmd": reply["shell"]})})
    if "patch" in reply:
        items.append({"type": "custom_tool_call", "call_id": call_id, "name": "apply_patch",
                      "input": reply["patch"]})
    return items


def _usage(usage_in: int, usage_out: int) -> dict[str, Any]:
    return {"input_tokens": usage_in, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage_out, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage_in + usage_out}


PROTOCOL = ResponsesProtocol()
