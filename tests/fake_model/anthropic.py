"""The Anthropic Messages API (POST /v1/messages), streamed the way Claude Code reads it.

Reply keys: {"text": "..."} ends the turn; {"tool": "Write", "input": {...}} calls one tool,
after the reply's "text" when it has one. "{cwd}" in any string of "input" becomes the agent's
working directory, read from the system prompt's "Primary working directory:" line (Claude
Code's file tools want absolute paths). Tools that work: Write{file_path, content},
Read{file_path}, Edit{file_path, old_string, new_string} (after a Read of that file),
Bash{command}.

A side call (the request does not offer the scripted tool, or asks for JSON output through
`output_config.format`) gets a minimal answer instead of the script.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from tests.fake_model.server import FakeModel, Handler, Reply

CWD_LINE = re.compile(r"Primary working directory: (.+)")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 429: "rate_limit_error",
               529: "overloaded_error"}
Event = tuple[str, dict[str, Any]]


class Anthropic:
    name = "anthropic"

    def model_of(self, body: dict[str, Any]) -> str:
        return str(body.get("model", ""))

    def turn_of(self, body: dict[str, Any]) -> int:
        return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")

    def prompt_of(self, body: dict[str, Any]) -> str:
        return "\n".join(_text_blocks(m["content"]) for m in body.get("messages", [])
                         if m.get("role") == "user")

    def respond(self, http: Handler, body: dict[str, Any], reply: Reply,
                server: FakeModel) -> None:
        blocks = _side_blocks(body) if _is_side(body, reply) else _blocks(body, reply)
        stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
        message = _message(self.model_of(body), server.usage_in)
        if not body.get("stream"):
            message.update(content=blocks, stop_reason=stop)
            message["usage"]["output_tokens"] = server.usage_out
            http.send_json(200, message)
            return
        http.send_sse(_stream(message, blocks, stop, server.usage_out))

    def error(self, http: Handler, status: int, message: str, retry: bool) -> None:
        kind = ERROR_TYPES.get(status, "api_error")
        headers = {"request-id": f"req_fake_{uuid.uuid4().hex[:12]}"}
        if not retry:
            headers["x-should-retry"] = "false"
        http.send_json(status, {"type": "error", "error": {"type": kind, "message": message}},
                       headers)


def _text_blocks(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _cwd(body: dict[str, Any]) -> str:
    for text in _strings([body.get("system"), body.get("messages")]):
        found = CWD_LINE.search(text)
        if found:
            return found.group(1).strip()
    raise ValueError("no 'Primary working directory:' in the request")


def _is_side(body: dict[str, Any], reply: Reply) -> bool:
    fmt = (body.get("output_config") or {}).get("format") or {}
    offered = {tool.get("name") for tool in body.get("tools", [])}
    return fmt.get("type") == "json_schema" or ("tool" in reply and reply["tool"] not in offered)


def _side_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    fmt = (body.get("output_config") or {}).get("format") or {}
    props = (fmt.get("schema") or {}).get("properties") or {}
    text = json.dumps({key: "fake" for key in props}) if props else "OK"
    return [{"type": "text", "text": text}]


def _blocks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    blocks = [{"type": "text", "text": reply["text"]}] if reply.get("text") else []
    if "tool" in reply:
        cwd = _cwd(body)
        raw = json.dumps(reply.get("input", {})).replace("{cwd}", json.dumps(cwd)[1:-1])
        tool_input = json.loads(raw)
        blocks.append({"type": "tool_use", "id": f"toolu_fake_{uuid.uuid4().hex[:16]}",
                       "name": reply["tool"], "input": tool_input})
    return blocks or [{"type": "text", "text": ""}]


def _message(model: str, usage_in: int) -> dict[str, Any]:
    return {"id": f"msg_fake_{uuid.uuid4().hex[:16]}", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage_in, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


def _stream(message: dict[str, Any], blocks: list[dict[str, Any]], stop: str,
            usage_out: int) -> Iterator[Event]:
    yield "message_start", {"type": "message_start", "message": message}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(blocks):
        yield from _block_events(index, block)
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": {"output_tokens": usage_out}}
    yield "message_stop", {"type": "message_stop"}


def _block_events(index: int, block: dict[str, Any]) -> Iterator[Event]:
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": block["text"]}]
    else:
        start = {**block, "input": {}}
        raw = json.dumps(block["input"])
        deltas = [{"type": "input_json_delta", "partial_json": raw[i:i + 64]}
                  for i in range(0, len(raw), 64)]
    yield "content_block_start", {"type": "content_block_start", "index": index,
                                  "content_block": start}
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                      "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


PROTOCOL = Anthropic()
