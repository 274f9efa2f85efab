"""A stand-in LLM relevance judge for the retrieval bench: an OpenAI-compatible HTTP server that grades from a table.

No LLM runs on this machine, so `bench.embedding_retrieval --judge oracle` measures what the relevance-judge
recipe (`distillation.judge_relevance`) gains when the judge is right: the trainer calls this server through
the official `openai` client exactly as it would call a real judge, and the server answers
"Relevance: N" from FinanceBench's own labels for the train companies (`retrieval_corpus.oracle_grades`).
Unknown pairs are graded 0.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PAIR = re.compile(r"## Query\n(.*?)\n\n## Passage\n(.*?)\n\nGrade the passage\.", re.S)


class OracleJudge:
    """`with OracleJudge(grades) as url:` serves /v1/chat/completions on a free local port; counts requests."""

    def __init__(self, grades: dict[tuple[str, str], int]) -> None:
        self.grades, self.requests, self.unmatched = grades, 0, 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def answer(self, body: dict[str, Any]) -> str:
        found = _PAIR.search(str(body["messages"][-1]["content"]))
        with self._lock:
            self.requests += 1
            self.unmatched += found is None
        grade = self.grades.get((found.group(1), found.group(2)), 0) if found else 0
        return f"Graded from the benchmark's labels.\nRelevance: {grade}"

    def __enter__(self) -> str:
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                data = json.dumps({
                    "id": "chatcmpl-oracle", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": judge.answer(body)}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
