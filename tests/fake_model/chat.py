"""The OpenAI Chat Completions API as aider 0.86 (through litellm) uses it.

POST /v1/chat/completions, streamed as SSE chunks of `choices[].delta.content` (plus a usage
chunk when `stream_options.include_usage` asks for it) or a plain JSON `chat.completion` when
`stream` is false. Aider edits files from the reply's text, in its edit format. Reply keys:
  {"text": "..."}                              words (a reviewer's verdict), shown first
  {"files": {"calc.py": "<whole content>"}}    whole-file blocks (`--edit-format whole`, the
                                               default for a model aider does not know)
  {"edits": [{"path": ..., "search": ..., "replace": ...}]}
                                               SEARCH/REPLACE blocks (`--edit-format diff`)

Aider surrounds the conversation with canned exchanges (edit-format examples, "here are the
files", test output) that it answers itself with a one-line "Ok...": the turn counts only the
other assistant messages (so a scripted reply must not be a bare "Ok ..." line), and the prompt
joins only the user messages not answered that way. A side call (a commit message) is turn -1:
it starts no conversation and takes no script step.
"""
from __future__ import annotations

import itertools
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_model.server import FakeModel, Handler, Reply

FENCE = "```"
# litellm reads "invalid_request_error" as a 400 whatever the status: a 401 must not say it
ERRORS = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          429: "rate_limit_exceeded"}
EXAMPLES_END = "I switched to a new code base"  # the last message of aider's examples
ACK = re.compile(r"Ok[^\n]{0,200}")  # aider's own answers to its canned messages
SIDE_SYSTEM = "commit messages"
_ids = itertools.count(1)


class ChatProtocol:
    name = "chat"

    def model_of(self, body: dict[str, Any]) -> str:
        return str(body.get("model", ""))

    def turn_of(self, body: dict[str, Any]) -> int:
        if _is_side(body):
            return -1
        return sum(1 for m in _conversation(body) if m.get("role") == "assistant")

    def prompt_of(self, body: dict[str, Any]) -> str:
        return "\n".join(_text(m) for m in _conversation(body) if m.get("role") == "user")

    def respond(self, http: Handler, body: dict[str, Any], reply: Reply,
                server: FakeModel) -> None:
        text = "fix: apply the requested change" if _is_side(body) else _reply_text(reply)
        model = self.model_of(body)
        usage = {"prompt_tokens": server.usage_in, "completion_tokens": server.usage_out,
                 "total_tokens": server.usage_in + server.usage_out}
        if not body.get("stream"):
            http.send_json(200, _completion(model, text, usage))
            return
        include = (body.get("stream_options") or {}).get("include_usage")
        http.send_sse(_chunks(model, text, usage if include else None))

    def error(self, http: Handler, status: int, message: str, retry: bool) -> None:
        kind = ERRORS.get(status, "server_error")
        code = "invalid_api_key" if status == 401 else None
        headers = {"x-should-retry": "true" if retry else "false"}
        http.send_json(status, {"error": {"message": message, "type": kind, "param": None,
                                          "code": code}}, headers)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))


def _is_side(body: dict[str, Any]) -> bool:
    return any(m.get("role") == "system" and SIDE_SYSTEM in _text(m)
               for m in body.get("messages", []))


def _conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages aider did not make up: no system, examples or canned pairs."""
    messages = [m for m in body.get("messages", []) if m.get("role") != "system"]
    ends = [i for i, m in enumerate(messages) if _text(m).startswith(EXAMPLES_END)]
    messages = messages[ends[-1] + 2:] if ends else messages
    acked = [i + 1 < len(messages) and _is_ack(messages[i + 1]) for i in range(len(messages))]
    return [m for m, canned in zip(messages, acked, strict=True)
            if not canned and not _is_ack(m)]


def _is_ack(message: dict[str, Any]) -> bool:
    return message.get("role") == "assistant" and bool(ACK.fullmatch(_text(message).strip()))


def _reply_text(reply: Reply) -> str:
    parts = [reply["text"]] if reply.get("text") else []
    for path, content in reply.get("files", {}).items():
        parts.append(f"{path}\n{FENCE}\n{content}{FENCE}")
    for edit in reply.get("edits", []):
        parts.append(f"{edit['path']}\n{FENCE}\n<<<<<<< SEARCH\n{edit['search']}=======\n"
                     f"{edit['replace']}>>>>>>> REPLACE\n{FENCE}")
    return "\n\n".join(parts) + "\n"


def _completion(model: str, text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {"id": f"chatcmpl-fake{next(_ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": model, "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}]}


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _chunks(model: str, text: str,
            usage: dict[str, int] | None) -> list[tuple[str | None, Any]]:
    events: list[tuple[str | None, Any]] = [
        (None, _chunk(model, {"role": "assistant", "content": ""}, None))]
    events += [(None, _chunk(model, {"content": text[i:i + 80]}, None))
               for i in range(0, len(text), 80)]
    events.append((None, _chunk(model, {}, "stop")))
    if usage is not None:
        events.append((None, {**_chunk(model, {}, None), "choices": [], "usage": usage}))
    events.append((None, "[DONE]"))
    return events


PROTOCOL = ChatProtocol()
