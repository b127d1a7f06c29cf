"""The fake model server's core: HTTP, scripts, failure injection, the request log.

One server speaks every API the agent CLIs use; each API is a protocol module:
  POST /v1/messages           Anthropic Messages (Claude Code)   tests/fake_model/anthropic.py
  POST /v1/responses          OpenAI Responses (Codex)           tests/fake_model/responses.py
  POST /v1/chat/completions   OpenAI Chat Completions (Aider)    tests/fake_model/chat.py

Scripts: {model: [conversation, ...]} where a conversation is a list of replies, one per turn
(turn = how many assistant messages the request already carries). A new conversation for a
model starts when a request carries no assistant message; the n-th conversation of a model
plays script[model][n] (the last one repeats). Model "*" is the fallback. A reply is a dict
whose keys the protocol module defines (e.g. {"text": ...} or {"tool": ..., "input": ...}).
"""
from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

PROTOCOL_MODULES = {
    "/v1/messages": "tests.fake_model.anthropic",
    "/v1/responses": "tests.fake_model.responses",
    "/v1/chat/completions": "tests.fake_model.chat",
}

Reply = dict[str, Any]


class ApiProtocol(Protocol):
    name: str

    def model_of(self, body: dict[str, Any]) -> str: ...

    def turn_of(self, body: dict[str, Any]) -> int: ...

    def prompt_of(self, body: dict[str, Any]) -> str: ...

    def respond(self, http: Handler, body: dict[str, Any], reply: Reply,
                server: FakeModel) -> None: ...

    def error(self, http: Handler, status: int, message: str, retry: bool) -> None: ...


@dataclass
class Failure:
    status: int
    count: int
    retry: bool
    message: str


@dataclass
class FakeModel:
    scripts: dict[str, list[list[Reply]]] = field(default_factory=dict)
    usage_in: int = 1000
    usage_out: int = 50
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    conversations: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None, "start() the server first"
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> FakeModel:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(self, status: int, count: int = 1, *, retry: bool = False,
             message: str = "injected failure") -> None:
        """Answer the next `count` model requests with HTTP `status` (retry=False tells the
        client not to retry, where the API has a way to say so)."""
        with self.lock:
            self.failures.append(Failure(status, count, retry, message))

    def prompts(self, model: str | None = None, api: str | None = None) -> list[str]:
        """The prompt text of each logged request, in order (for asserting what an agent saw)."""
        return [r["prompt"] for r in self.requests
                if (model is None or r["model"] == model) and (api is None or r["api"] == api)]

    def pick(self, api: str, model: str, turn: int) -> tuple[Reply | Failure, int]:
        with self.lock:
            if self.failures:
                failure = self.failures[0]
                failure.count -= 1
                if failure.count <= 0:
                    self.failures.pop(0)
                return failure, -1
            key = model if model in self.scripts else "*"
            if turn == 0:
                self.conversations[key] = self.conversations.get(key, -1) + 1
            conversation = self.conversations.get(key, 0)
            return _reply(self.scripts.get(key, [[{"text": "Nothing to do."}]]), conversation,
                          turn), conversation

    def log(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)


def _reply(script: list[list[Reply]], conversation: int, turn: int) -> Reply:
    talk = script[min(conversation, len(script) - 1)]
    return talk[min(turn, len(talk) - 1)]


def _handler_for(server: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Bound(Handler):
        fake = server

    return Bound


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeModel

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = self.read_json()
        path = self.path.split("?", 1)[0]
        module = next((m for p, m in PROTOCOL_MODULES.items() if path.endswith(p)), None)
        if module is None:
            self.send_json(404, {"error": {"message": f"no fake for {path}"}})
            return
        api: ApiProtocol = importlib.import_module(module).PROTOCOL
        model, turn = api.model_of(body), api.turn_of(body)
        reply, conversation = self.fake.pick(api.name, model, turn)
        self.fake.log({"api": api.name, "path": path, "model": model, "turn": turn,
                       "conversation": conversation, "prompt": api.prompt_of(body),
                       "body": body, "reply": reply if isinstance(reply, dict) else
                       {"status": reply.status}})
        if isinstance(reply, Failure):
            api.error(self, reply.status, reply.message, reply.retry)
        else:
            api.respond(self, body, reply, self.fake)

    def read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else self._read_chunked()
        return json.loads(raw or b"{}")

    def _read_chunked(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return b""
        data = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events: Iterable[tuple[str | None, Any]]) -> None:
        """A text/event-stream response, chunked: (event name or None, data) pairs."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for name, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
            self._chunk(frame.encode())
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
