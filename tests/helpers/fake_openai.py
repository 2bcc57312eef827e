"""A local HTTP server that speaks the parts of the OpenAI API the API backend uses.

It is the one fake the project allows: the fine-tuning API cannot run here. Every request body
and query is validated against the official OpenAPI description (tests/specs/, MIT, copied
from github.com/openai/openai-openapi), and so is every response it sends; a request the real
API would refuse is answered 400 *and* recorded in `violations`, which the fixture turns into
a test failure.

Jobs walk the documented statuses, one step per retrieve: validating_files → queued → running
→ succeeded | failed (`fail_next_job`) | cancelled (cancel endpoint), writing events and
checkpoints with metrics on the way. `inject(...)` queues 429 / 500 / timeout answers.
Chat completions answer from the uploaded training data for a fine-tuned model (the assistant
reply of the training example with the most words in common with the prompt) and with a fixed
generic reply for a base model, so a fine-tuned model scores better on similar questions.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import itertools
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import uvicorn
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SPEC_FILE = Path(__file__).parents[1] / "specs" / "openai-openapi-fine-tuning.json"
SPEC_URI = "urn:openai-openapi"
TERMINAL = ("succeeded", "failed", "cancelled")
GENERIC_REPLY = "Thank you for reaching out. Please contact our support team for help."


class SpecCheck:
    """Request and response checks against the OpenAPI description, with $refs resolved."""

    def __init__(self, spec_file: Path = SPEC_FILE) -> None:
        self.spec = json.loads(spec_file.read_text())
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}

    def _validator(self, pointer: str) -> jsonschema.Draft202012Validator:
        if pointer not in self._validators:
            self._validators[pointer] = jsonschema.Draft202012Validator(
                {"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry
            )
        return self._validators[pointer]

    def errors(self, pointer: str, instance: Any) -> list[str]:
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in self._validator(pointer).iter_errors(instance)
        ]

    @staticmethod
    def _escape(path: str) -> str:
        return path.replace("~", "~0").replace("/", "~1")

    def request_errors(self, path: str, method: str, body: Any, content_type: str) -> list[str]:
        if "requestBody" not in self.spec["paths"][path][method]:
            return [] if body in (None, "", {}) else ["this operation takes no request body"]
        pointer = f"/paths/{self._escape(path)}/{method}/requestBody/content/{content_type}/schema"
        return self.errors(pointer, body)

    def query_errors(self, path: str, method: str, query: dict[str, Any]) -> list[str]:
        operation = self.spec["paths"][path][method]
        known = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        problems = [f"unknown query parameter {name!r}" for name in query if name not in known]
        for name, value in query.items():
            if name in known:
                index = operation["parameters"].index(known[name])
                pointer = f"/paths/{self._escape(path)}/{method}/parameters/{index}/schema"
                problems += [f"{name}: {e}" for e in self.errors(pointer, value)]
        return problems

    def response_errors(self, path: str, method: str, body: Any) -> list[str]:
        pointer = (
            f"/paths/{self._escape(path)}/{method}/responses/200/content/application~1json/schema"
        )
        return self.errors(pointer, body)


@dataclass
class Job:
    body: dict[str, Any]
    polls_in_running: int = 0
    fail: dict[str, str] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


class FakeOpenAI:
    """Start with `with FakeOpenAI() as server:`; point the SDK at `server.base_url`."""

    def __init__(self, running_polls: int = 3) -> None:
        self.check = SpecCheck()
        self.running_polls = running_polls  # retrieves a job stays `running` before it ends
        self.files: dict[str, dict[str, Any]] = {}
        self.file_bytes: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.violations: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.received: list[bytes] = []  # every request body as sent: what left the machine
        self.faults: deque[tuple[str, str, int | str]] = deque()
        self.fail_next_job: dict[str, str] | None = None
        self.chat_calls = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # --- test controls -------------------------------------------------------------------

    def inject(self, method: str, path_prefix: str, fault: int | str, times: int = 1) -> None:
        """Answer the next `times` matching requests with HTTP `fault` or, for "timeout", by
        sleeping past the client's timeout."""
        for _ in range(times):
            self.faults.append((method.upper(), path_prefix, fault))

    def job_list(self) -> list[dict[str, Any]]:
        return [job.body for job in self.jobs.values()]

    # --- server lifecycle ----------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server and self._thread
        self._server.should_exit = True
        self._thread.join(timeout=10)

    # --- HTTP ----------------------------------------------------------------------------

    def _app(self) -> Starlette:
        spec_path = {
            "/v1/files": "/files",
            "/v1/files/{file_id}": "/files/{file_id}",
            "/v1/fine_tuning/jobs": "/fine_tuning/jobs",
            "/v1/fine_tuning/jobs/{job_id}": "/fine_tuning/jobs/{fine_tuning_job_id}",
            "/v1/fine_tuning/jobs/{job_id}/cancel": "/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
            "/v1/fine_tuning/jobs/{job_id}/events": "/fine_tuning/jobs/{fine_tuning_job_id}/events",
            "/v1/fine_tuning/jobs/{job_id}/checkpoints": (
                "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints"
            ),
            "/v1/chat/completions": "/chat/completions",
        }
        handlers = {
            ("/v1/files", "POST"): self._create_file,
            ("/v1/files/{file_id}", "GET"): self._get_file,
            ("/v1/files/{file_id}", "DELETE"): self._delete_file,
            ("/v1/fine_tuning/jobs", "POST"): self._create_job,
            ("/v1/fine_tuning/jobs", "GET"): self._list_jobs,
            ("/v1/fine_tuning/jobs/{job_id}", "GET"): self._retrieve_job,
            ("/v1/fine_tuning/jobs/{job_id}/cancel", "POST"): self._cancel_job,
            ("/v1/fine_tuning/jobs/{job_id}/events", "GET"): self._events,
            ("/v1/fine_tuning/jobs/{job_id}/checkpoints", "GET"): self._checkpoints,
            ("/v1/chat/completions", "POST"): self._chat,
        }

        def endpoint(route: str):
            async def handle(request: Request) -> Response:
                method = request.method
                fault = self._take_fault(method, request.url.path)
                if fault == "timeout":
                    await asyncio.sleep(3)  # longer than the test clients' timeout
                    return self._error(504, "timeout", "gateway timeout")
                if fault is not None:
                    return self._error(int(fault), "injected", f"injected HTTP {fault}")
                path = spec_path[route]
                query = self._query(request)
                problems = self.check.query_errors(path, method.lower(), query)
                body: Any = None
                if method == "POST":
                    self.received.append(await request.body())
                    body, content_type, filename = await self._body(request)
                    problems += self.check.request_errors(path, method.lower(), body, content_type)
                    if filename:  # not a form field: kept out of the checked body
                        body = {**body, "_filename": filename}
                if problems:
                    self.violations += [f"{method} {path}: {p}" for p in problems]
                    return self._error(400, "invalid_request_error", "; ".join(problems))
                with self._lock:
                    self.requests.append((method, request.url.path))
                    status, payload = handlers[(route, method)](request.path_params, query, body)
                if status == 200 and method != "DELETE":
                    for problem in self.check.response_errors(path, method.lower(), payload):
                        self.violations.append(f"response {method} {path}: {problem}")
                return JSONResponse(payload, status_code=status)

            return handle

        routes = [
            Route(route, endpoint(route), methods=[m for r, m in handlers if r == route])
            for route in spec_path
        ]
        return Starlette(routes=routes)

    def _take_fault(self, method: str, path: str) -> int | str | None:
        with self._lock:
            for index, (want_method, prefix, fault) in enumerate(self.faults):
                if want_method == method and path.startswith("/v1" + prefix):
                    del self.faults[index]
                    return fault
        return None

    @staticmethod
    def _query(request: Request) -> dict[str, Any]:
        """Query string → values typed by name; `metadata[k]=v` (deepObject) → a dict."""
        query: dict[str, Any] = {}
        for name, value in request.query_params.multi_items():
            if name.startswith("metadata[") and name.endswith("]"):
                query.setdefault("metadata", {})[name[9:-1]] = value
            elif name == "limit":
                query[name] = int(value) if value.isdigit() else value
            else:
                query[name] = value
        return query

    @staticmethod
    async def _body(request: Request) -> tuple[Any, str, str | None]:
        raw = await request.body()
        if not raw:
            return None, "application~1json", None
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            form: dict[str, Any] = {}
            filename = None
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                form[name] = payload.decode("utf-8", errors="replace")
                if part.get_filename():
                    filename = part.get_filename()
            return form, "multipart~1form-data", filename
        try:
            return json.loads(raw), "application~1json", None
        except json.JSONDecodeError:
            return raw.decode(errors="replace"), "application~1json", None

    def _error(self, status: int, code: str, message: str) -> JSONResponse:
        body = {"error": {"code": code, "message": message, "param": None, "type": code}}
        problems = self.check.errors("/components/schemas/ErrorResponse", body)
        self.violations += [f"error response: {p}" for p in problems]
        headers = {"retry-after-ms": "20"} if status == 429 else {}
        return JSONResponse(body, status_code=status, headers=headers)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    # --- files ---------------------------------------------------------------------------

    def _create_file(self, params: dict, query: dict, form: dict) -> tuple[int, Any]:
        content = form.get("file", "")
        file_id = self._id("file")
        self.file_bytes[file_id] = content.encode()
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(self.file_bytes[file_id]),
            "created_at": int(time.time()),
            "filename": form.get("_filename", "upload.jsonl"),
            "purpose": form["purpose"],
            "status": "processed",
        }
        return 200, self.files[file_id]

    def _get_file(self, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        found = self.files.get(params["file_id"])
        return (200, found) if found else (404, {"error": {"message": "no such file"}})

    def _delete_file(self, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        file_id = params["file_id"]
        self.files.pop(file_id, None)
        self.file_bytes.pop(file_id, None)
        return 200, {"id": file_id, "object": "file", "deleted": True}

    # --- jobs ----------------------------------------------------------------------------

    def _create_job(self, params: dict, query: dict, body: dict) -> tuple[int, Any]:
        for key in ("training_file", "validation_file"):
            if body.get(key) and body[key] not in self.files:
                return 400, {"error": {"message": f"{key} {body[key]} does not exist"}}
        job_id = self._id("ftjob")
        method = body.get("method") or {"type": "supervised"}
        hyper = ((method.get(method["type"]) or {}).get("hyperparameters")) or {}
        job = Job(
            body={
                "id": job_id,
                "object": "fine_tuning.job",
                "created_at": int(time.time()),
                "error": None,
                "finished_at": None,
                "fine_tuned_model": None,
                "hyperparameters": {
                    "n_epochs": hyper.get("n_epochs", "auto"),
                    "batch_size": hyper.get("batch_size", "auto"),
                    "learning_rate_multiplier": hyper.get("learning_rate_multiplier", "auto"),
                },
                "model": body["model"],
                "organization_id": "org-fake",
                "result_files": [],
                "status": "validating_files",
                "trained_tokens": None,
                "training_file": body["training_file"],
                "validation_file": body.get("validation_file"),
                "seed": body.get("seed") or 42,
                "metadata": body.get("metadata"),
                "method": method,
                "suffix": body.get("suffix"),
            },
            fail=self.fail_next_job,
        )
        self.fail_next_job = None
        self.jobs[job_id] = job
        self._event(job, "info", f"Created fine-tuning job: {job_id}")
        return 200, self._public(job)

    @staticmethod
    def _public(job: Job) -> dict[str, Any]:
        return {k: v for k, v in job.body.items() if k != "suffix"}

    def _event(self, job: Job, level: str, message: str, data: dict | None = None) -> None:
        event = {
            "id": self._id("ftevent"),
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "type": "metrics" if data else "message",
        }
        if data:
            event["data"] = data
        job.events.append(event)

    def _advance(self, job: Job) -> None:
        """One step of the documented life of a job per retrieve."""
        body = job.body
        status = body["status"]
        if status == "validating_files":
            body["status"] = "queued"
            self._event(job, "info", "Validating training file: done")
        elif status == "queued":
            body["status"] = "running"
            self._event(job, "info", "Fine-tuning job started")
        elif status == "running":
            job.polls_in_running += 1
            step = job.polls_in_running * 10
            metrics = {
                "step": float(step),
                "train_loss": round(2.0 / job.polls_in_running, 4),
                "train_mean_token_accuracy": round(0.5 + 0.1 * job.polls_in_running, 4),
                "valid_loss": round(2.2 / job.polls_in_running, 4),
                "total_steps": float(self.running_polls * 10),
            }
            self._event(job, "info", f"Step {step}: training loss={metrics['train_loss']}", metrics)
            job.checkpoints.append(
                {
                    "id": self._id("ftckpt"),
                    "object": "fine_tuning.job.checkpoint",
                    "created_at": int(time.time()),
                    "fine_tuning_job_id": body["id"],
                    "fine_tuned_model_checkpoint": f"ft:{body['model']}:org:ckpt-step-{step}",
                    "metrics": metrics,
                    "step_number": step,
                }
            )
            if job.polls_in_running >= self.running_polls:
                self._finish(job)

    def _finish(self, job: Job) -> None:
        body = job.body
        body["finished_at"] = int(time.time())
        if job.fail:
            body["status"] = "failed"
            body["error"] = {
                "code": job.fail["code"],
                "message": job.fail["message"],
                "param": None,
            }
            self._event(job, "error", f"Fine-tuning job failed: {job.fail['message']}")
            return
        training = self.file_bytes.get(body["training_file"], b"")
        body["status"] = "succeeded"
        body["trained_tokens"] = 3 * len(training.split())  # a fake, but a stable count
        body["fine_tuned_model"] = (
            f"ft:{body['model']}:org:{body['suffix'] or 'model'}:{body['id']}"
        )
        body["result_files"] = [self._id("file")]
        self._event(job, "info", "The job has successfully completed")

    def _job(self, params: dict) -> Job | None:
        return self.jobs.get(params["job_id"])

    def _retrieve_job(self, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        job = self._job(params)
        if not job:
            return 404, {"error": {"message": "no such job"}}
        self._advance(job)
        return 200, self._public(job)

    def _list_jobs(self, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        wanted = query.get("metadata") or {}
        jobs = [
            self._public(j)
            for j in reversed(self.jobs.values())
            if all((j.body.get("metadata") or {}).get(k) == v for k, v in wanted.items())
        ]
        limit = query.get("limit", 20)
        return 200, {"object": "list", "data": jobs[:limit], "has_more": len(jobs) > limit}

    def _cancel_job(self, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        job = self._job(params)
        if not job:
            return 404, {"error": {"message": "no such job"}}
        if job.body["status"] not in TERMINAL:
            job.body["status"] = "cancelled"
            job.body["finished_at"] = int(time.time())
            self._event(job, "info", "Fine-tuning job cancelled")
        return 200, self._public(job)

    def _events(self, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        job = self._job(params)
        if not job:
            return 404, {"error": {"message": "no such job"}}
        events = list(reversed(job.events))  # newest first, as the API lists them
        if "after" in query:
            ids = [e["id"] for e in events]
            events = events[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
        limit = query.get("limit", 20)
        return 200, {"object": "list", "data": events[:limit], "has_more": len(events) > limit}

    def _checkpoints(self, params: dict, query: dict, body: Any) -> tuple[int, Any]:
        job = self._job(params)
        if not job:
            return 404, {"error": {"message": "no such job"}}
        data = list(reversed(job.checkpoints))
        limit = query.get("limit", 10)
        return 200, {
            "object": "list",
            "data": data[:limit],
            "has_more": len(data) > limit,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[min(limit, len(data)) - 1]["id"] if data else None,
        }

    # --- chat ----------------------------------------------------------------------------

    def _reply(self, model: str, messages: list[dict[str, Any]]) -> str:
        tuned = [j for j in self.jobs.values() if j.body["fine_tuned_model"] == model]
        if not tuned:
            return GENERIC_REPLY
        prompt = set(str(messages[-1].get("content", "")).lower().split())
        best, best_overlap = GENERIC_REPLY, -1
        for line in self.file_bytes.get(tuned[0].body["training_file"], b"").splitlines():
            chat = json.loads(line)["messages"]
            user = set(" ".join(m["content"] for m in chat if m["role"] == "user").lower().split())
            overlap = len(prompt & user)
            if overlap > best_overlap:
                best, best_overlap = chat[-1]["content"], overlap
        return best

    def _chat(self, params: dict, query: dict, body: dict) -> tuple[int, Any]:
        self.chat_calls += 1
        reply = self._reply(body["model"], body["messages"])
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len(reply.split())
        return 200, {
            "id": self._id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": reply, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
