"""A local stand-in for an OpenAI-compatible model (Chat Completions wire
format), for running the Agents SDK example without a model account.

Its first answer calls `pay_invoice` with what the user's message names
("pay invoice INV-7 of 250 to ACME"); once the conversation holds the tool's
result, it answers with that result as text. Each request is logged as one
JSON line to `log` when given.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer(request: dict) -> dict:
    """The chat completion for one request."""
    messages = request.get("messages", [])
    tool_results = [m for m in messages if m.get("role") == "tool"]
    if tool_results:
        message = {"role": "assistant", "content": f"Done. {tool_results[-1].get('content', '')}"}
        finish = "stop"
    else:
        user = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        found = re.search(r"invoice\s+(\S+)\s+of\s+([\d.]+)\s+to\s+(\S+)", user, re.IGNORECASE)
        if not found:
            message = {"role": "assistant", "content": "Which invoice should I pay?"}
            finish = "stop"
        else:
            invoice, amount, to = found.groups()
            arguments = {"invoice": invoice, "amount": float(amount), "to": to.rstrip(".")}
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{invoice}",
                        "type": "function",
                        "function": {"name": "pay_invoice", "arguments": json.dumps(arguments)},
                    }
                ],
            }
            finish = "tool_calls"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def serve(log: str | None = None) -> str:
    """Starts the server on a free local port in a daemon thread; answers its base URL."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if log:
                with lock, open(log, "a") as f:
                    f.write(json.dumps({"path": self.path, "request": body}) + "\n")
            if not self.path.endswith("/chat/completions"):
                self.send_error(404, "only /chat/completions is served")
                return
            data = json.dumps(answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1"
