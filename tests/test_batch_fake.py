"""The fake Batch and Files APIs, checked with the real google-genai SDK (the wire format of
../shared/notes/gemini.md §4 and §7): what the pipeline's batch mode relies on."""

from __future__ import annotations

import io
import json

import pytest
from fakes.gemini_server import DEFAULT_KEY
from google import genai
from google.genai import errors, types
from PIL import Image


def _png(colour=(40, 60, 120)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 80), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def client(fake_gemini):
    c = genai.Client(api_key=DEFAULT_KEY, http_options=types.HttpOptions(api_version="v1beta"))
    yield c
    c.close()


def _inline(key: str) -> dict:
    return {"contents": [{"role": "user", "parts": [{"inline_data": {"data": _png(), "mime_type": "image/png"}},
                                                    {"text": "flat lay"}]}],
            "config": {"response_modalities": ["TEXT", "IMAGE"],
                       "image_config": {"aspect_ratio": "3:4", "image_size": "1K"}},
            "metadata": {"key": key}}


def test_inline_job_pending_running_succeeded_with_an_error_line(fake_gemini, client):
    fake_gemini.batch.delay = 0.6
    fake_gemini.push({"kind": "ok"}, {"kind": "error", "message": "bad image"}, "image_safety", route="batch")
    job = client.batches.create(model="gemini-3-pro-image", src=[_inline("a"), _inline("b"), _inline("c")],
                                config={"display_name": "catalogue:test"})
    assert job.name.startswith("batches/") and job.state == types.JobState.JOB_STATE_PENDING and not job.done
    assert job.display_name == "catalogue:test" and job.create_time is not None
    import time
    time.sleep(0.3)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
    time.sleep(0.4)
    done = client.batches.get(name=job.name)
    assert done.done and done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    out = done.dest.inlined_responses
    assert [r.metadata["key"] for r in out] == ["a", "b", "c"]
    assert out[0].response.candidates[0].content.parts[-1].inline_data.data[:4] == b"\x89PNG"
    assert out[1].error.code == 3 and out[1].error.message == "bad image" and out[1].response is None
    assert out[2].response.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    raw = fake_gemini.batch.jobs[job.name.split("/")[1]]
    assert raw["requests"][0]["request"]["generationConfig"]["imageConfig"] == {"aspectRatio": "3:4",
                                                                                "imageSize": "1K"}
    assert fake_gemini.generate_requests == []      # nothing interactive


def test_file_input_resumable_upload_download_and_delete(fake_gemini, client, tmp_path):
    import base64
    lines = tmp_path / "reqs.jsonl"
    with lines.open("w") as f:
        for key in ("k1", "k2"):
            f.write(json.dumps({"key": key, "request": {
                "contents": [{"role": "user", "parts": [
                    {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(_png()).decode()}},
                    {"text": "flat lay"}]}],
                "generationConfig": {"responseModalities": ["TEXT", "IMAGE"],
                                     "imageConfig": {"aspectRatio": "1:1", "imageSize": "1K"}}}}) + "\n")
    up = client.files.upload(file=str(lines), config={"mime_type": "application/jsonl", "display_name": "reqs"})
    assert up.name.startswith("files/") and up.size_bytes == lines.stat().st_size and up.source.name == "UPLOADED"
    with pytest.raises(errors.ClientError):           # an uploaded file cannot be downloaded
        client.files.download(file=up.name)
    job = client.batches.create(model="gemini-3-pro-image", src=up.name, config={"display_name": "f"})
    done = client.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.dest.file_name.startswith("files/batch-")
    text = client.files.download(file=done.dest.file_name).decode()
    got = [json.loads(ln) for ln in text.splitlines()]
    assert [g["key"] for g in got] == ["k1", "k2"]
    resp = types.GenerateContentResponse.model_validate(got[0]["response"])
    assert resp.candidates[0].content.parts[-1].inline_data.mime_type == "image/png"
    client.files.delete(name=up.name)
    client.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError) as e:
        client.batches.get(name=job.name)
    assert e.value.code == 404
    assert up.name in fake_gemini.batch.deleted and job.name in fake_gemini.batch.deleted


def test_chunked_upload_over_8_mib(fake_gemini, client, tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * (9 * 1024 * 1024))
    up = client.files.upload(file=str(big), config={"mime_type": "application/jsonl"})
    assert up.size_bytes == 9 * 1024 * 1024
    posts = [p for m, p in fake_gemini.batch.calls if "upload_id" in p]
    assert len(posts) == 2      # 8 MiB, then the rest with finalize


def test_list_pages_cancel_failed_expired(fake_gemini, client):
    fake_gemini.batch.push_jobs({"outcome": "FAILED"}, {"outcome": "EXPIRED", "delay": 30}, {"delay": 30})
    failed = client.batches.create(model="gemini-3-pro-image", src=[_inline("x")], config={"display_name": "one"})
    expiring = client.batches.create(model="gemini-3-pro-image", src=[_inline("y")], config={"display_name": "two"})
    cancelled = client.batches.create(model="gemini-3-pro-image", src=[_inline("z")], config={"display_name": "3"})
    assert client.batches.get(name=failed.name).state == types.JobState.JOB_STATE_FAILED
    client.batches.cancel(name=cancelled.name)
    assert client.batches.get(name=cancelled.name).state == types.JobState.JOB_STATE_CANCELLED
    assert client.batches.get(name=expiring.name).state == types.JobState.JOB_STATE_PENDING
    fake_gemini.batch.expire()
    assert client.batches.get(name=expiring.name).state == types.JobState.JOB_STATE_EXPIRED
    names = [j.name for j in client.batches.list(config={"page_size": 2})]   # two pages
    assert sorted(names) == sorted([failed.name, expiring.name, cancelled.name])
    assert any("pageToken=2" in p for _m, p in fake_gemini.batch.calls)


def test_inline_limit_and_key_are_enforced(fake_gemini, client):
    fake_gemini.batch.inline_limit = 200
    with pytest.raises(errors.ClientError) as e:
        client.batches.create(model="gemini-3-pro-image", src=[_inline("big")])
    assert e.value.code == 400 and "payload size" in e.value.message
    bad = genai.Client(api_key="wrong-key-0000", http_options=types.HttpOptions(api_version="v1beta"))
    with pytest.raises(errors.ClientError):
        list(bad.batches.list())
