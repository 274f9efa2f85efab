"""The replay teacher (the demo's teacher stand-in) over real HTTP with the official openai client:
recorded calls are answered with their logged answer (plain and streamed), anything else is a typed
404, and lines that are not chat calls are skipped and counted. Chat completions and the Responses API."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from openai import NotFoundError, OpenAI

from orchestrator.cli.main import cli
from services.deployment.gateway.replay_teacher import create_replay_teacher, load_recording
from tests.factories import chat_record_dict, embedding_record_dict
from tests.servers import serve


def recording(tmp_path: Path) -> Path:
    calls = [chat_record_dict(), chat_record_dict(request={"model": "t", "messages": [
        {"role": "system", "content": "Classify."}, {"role": "user", "content": "Fed holds rates"}]},
        response={"choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"},
                               "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})]
    lines = [json.dumps(c) for c in calls] + [json.dumps(embedding_record_dict()), "{not json"]
    path = tmp_path / "teacher.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_recorded_calls_are_replayed_and_others_are_typed_misses(tmp_path: Path) -> None:
    answers, counts = load_recording([recording(tmp_path)])
    assert counts == {"chat_calls": 2, "skipped": 2}
    app = create_replay_teacher(answers)
    with serve(app) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        messages = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Fed holds rates"}]
        completion = client.chat.completions.create(model="teacher-70b", messages=messages)
        assert completion.choices[0].message.content == "[[[Macro]]]"
        assert completion.model == "teacher-70b" and completion.usage.completion_tokens == 3
        streamed = client.chat.completions.create(model="teacher-70b", messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "[[[Macro]]]"
        with pytest.raises(NotFoundError, match="no recorded answer") as missed:
            client.chat.completions.create(model="teacher-70b", messages=[{"role": "user", "content": "new"}])
        assert missed.value.code == "not_recorded"
        # The Responses API: the same recorded call, asked with instructions and an input string.
        response = client.responses.create(model="teacher-70b", instructions="Classify.", input="Fed holds rates")
        assert response.output_text == "[[[Macro]]]" and response.usage is not None and response.usage.output_tokens == 3
        with client.responses.stream(model="teacher-70b", instructions="Classify.", input="Fed holds rates") as stream:
            assert stream.get_final_response().output_text == "[[[Macro]]]"
        with pytest.raises(NotFoundError, match="no recorded answer"):
            client.responses.create(model="teacher-70b", input="new")
    assert (app.state.hits, app.state.misses) == (4, 2)


def test_the_cli_explains_itself() -> None:
    result = CliRunner().invoke(cli, ["serve", "replay-teacher", "--help"])
    assert result.exit_code == 0 and "answers from recorded teacher" in result.output
