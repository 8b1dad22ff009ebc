"""Issue 9: no request may crash the server, get a non-AWS answer, or escape the audit.

About 2,000 requests generated from botocore's Rekognition model (see
``tests/support/fuzz_requests.py``) and a hostile image corpus go to a real
``facegate serve`` child process, after a world of collections, faces and users has been
set up. Every answer is judged (no 5xx; errors AWS-shaped; successes in the output shape),
the process must stay up, the audit chain must verify, and the audit must hold one record
per request. All failures are collected and reported together, with the seed to replay them.

``make fuzz`` runs a long version. ``FACEGATE_FUZZ_SEED`` and ``FACEGATE_FUZZ_REQUESTS`` set the
plan; ``FACEGATE_FUZZ_ONLY=12,345`` sends only those request numbers of it (after the setup).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from facegate.bench.local_server import FACEGATE, free_port, start_serve_process
from tests.support.fuzz_client import FuzzClient, healthy, problems
from tests.support.fuzz_requests import LONG_RUN, FuzzRequest, World, known_error_types, make_plan
from tests.support.image_corpus import corpus_summary, hostile_images, under_minimum, valid_faces
from tests.support.photos import lfw_photo

SEED = int(os.environ.get("FACEGATE_FUZZ_SEED", "9"))
REQUESTS = int(os.environ.get("FACEGATE_FUZZ_REQUESTS", "2000"))
ONLY = {int(n) for n in os.environ.get("FACEGATE_FUZZ_ONLY", "").split(",") if n.strip()}
BATCH = 100
"""Requests between liveness checks of the server process."""

SERVER_MEMORY_CAP = 6 * 1024**3
"""Address-space cap (bytes) for the server under test: a memory bomb then fails fast, as a
finding, instead of taking the machine's memory from everything else running on it."""

REPLAY = f"FACEGATE_FUZZ_SEED={SEED} FACEGATE_FUZZ_REQUESTS={REQUESTS}"


@dataclass(frozen=True)
class Finding:
    request: FuzzRequest
    problem: str
    answer: str

    def line(self) -> str:
        r = self.request
        return (f"#{r.number} {r.operation}: {r.description}\n"
                f"      -> {self.problem}; got {self.answer}\n      request: {r.reproduction()}")

    def group(self) -> str:
        """Findings of one cause look alike: the kind of problem (before its details) and the category."""
        return f"{self.problem.split(':')[0].split(';')[0]} | {self.request.category}"


@dataclass
class Campaign:
    sent: int = 0
    """Requests to ``/`` (setup included, /health not)."""
    findings: list[Finding] = field(default_factory=list)
    audit_verify: subprocess.CompletedProcess[str] | None = None
    audited_requests: int | None = None
    server_log: Path | None = None
    server_cpu: float = 0.0
    """CPU seconds of the server processes: the run's cost, whatever else shares the machine."""
    seconds_by_category: dict[str, float] = field(default_factory=dict)


class Server:
    """The ``facegate serve`` child process under test, restarted if a request kills it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.cpu_seconds = 0.0
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        process = start_serve_process(self.data_dir, self.port)
        resource.prlimit(process.pid, resource.RLIMIT_AS, (SERVER_MEMORY_CAP, SERVER_MEMORY_CAP))
        return process

    def down(self) -> str | None:
        """Why the server is not serving, or None when it is."""
        code = self.process.poll()
        if code is not None:
            return f"the server process exited with code {code}"
        if not healthy(self.port):
            return "the server process is running but /health does not answer"
        return None

    def restart(self) -> None:
        self.stop()
        self.process = self._start()

    def stop(self) -> None:
        """SIGTERM (the rejection log flushes its counts on the way out), then wait."""
        if self.process.poll() is None:
            self.cpu_seconds += _cpu_seconds(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _create_key(data_dir: Path) -> tuple[str, str]:
    key = json.loads(subprocess.run(
        [FACEGATE, "keys", "create", "--name", "fuzz", "--data-dir", str(data_dir), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout)
    return key["AccessKeyId"], key["SecretAccessKey"]


def _build_world(client: FuzzClient, faces_dir: Path) -> World:
    """Collections, faces and users for valid requests to name (through boto3, counted as sent)."""
    def index(collection: str, name: str, number: int) -> str:
        image = {"Bytes": lfw_photo(faces_dir, name, number).read_bytes()}
        return client.call("IndexFaces", CollectionId=collection, Image=image, MaxFaces=1)["FaceRecords"][0]["Face"]["FaceId"]

    doomed = tuple(f"fuzz-doomed-{i}" for i in range(5))
    for collection in ("fuzz-main", "fuzz-decoy", "fuzz-images", *doomed):
        client.call("CreateCollection", CollectionId=collection)
    faces = (index("fuzz-main", "Colin_Powell", 1), index("fuzz-main", "Colin_Powell", 2), index("fuzz-main", "Tony_Blair", 1))
    client.call("CreateUser", CollectionId="fuzz-main", UserId="fuzz-user")
    client.call("AssociateFaces", CollectionId="fuzz-main", UserId="fuzz-user", FaceIds=[faces[0]])
    decoy_faces = (index("fuzz-decoy", "Colin_Powell", 3), index("fuzz-decoy", "Tony_Blair", 2))
    decoy_users = tuple(f"fuzz-decoy-user-{i}" for i in range(3))
    for user in decoy_users:
        client.call("CreateUser", CollectionId="fuzz-decoy", UserId=user)
    arn = client.call("DescribeCollection", CollectionId="fuzz-main")["CollectionARN"]
    face = valid_faces(faces_dir)[1]
    return World("fuzz-main", "fuzz-decoy", "fuzz-images", arn, faces, "fuzz-user", decoy_faces, decoy_users, doomed,
                 face, under_minimum())


def _audited_requests(data_dir: Path) -> int:
    """Requests the audit stands for: a record's ``count``, else 1, leaving out the records the
    CLI and the sweepers write for themselves (operations named ``facegate:...``)."""
    export = subprocess.run([FACEGATE, "audit", "export", "--format", "jsonl", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, check=True).stdout
    records = [json.loads(line) for line in export.splitlines() if line.strip()]
    return sum(int(r.get("count", 1)) for r in records if not str(r.get("operation") or "").startswith("facegate:"))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Campaign:
    started = time.monotonic()
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    key_id, secret = _create_key(data_dir)
    images = hostile_images(faces_dir, SEED, flips=2 if REQUESTS < LONG_RUN else 40) + valid_faces(faces_dir)
    server = Server(data_dir)
    client = FuzzClient(server.port, key_id, secret)
    result = Campaign(server_log=data_dir / "serve.log")
    try:
        plan = make_plan(_build_world(client, faces_dir), images, SEED, REQUESTS)
        print(f"\nfuzz: {REPLAY}; corpus {corpus_summary(images)}; plan {plan.counts}")
        _send_all([r for r in plan.requests if not ONLY or r.number in ONLY], client, server, result)
    finally:
        server.stop()
    result.sent, result.server_cpu = client.sent, server.cpu_seconds
    result.audit_verify = subprocess.run([FACEGATE, "audit", "verify", "--data-dir", str(data_dir)], capture_output=True, text=True)
    result.audited_requests = _audited_requests(data_dir)
    by_category = ", ".join(f"{c} {t:.1f}" for c, t in sorted(result.seconds_by_category.items(), key=lambda i: -i[1]))
    print(f"fuzz: {result.sent} requests in {time.monotonic() - started:.0f} s (by category: {by_category} s); "
          f"server CPU {result.server_cpu:.0f} s; {len(result.findings)} findings")
    return result


def _send_all(requests: list[FuzzRequest], client: FuzzClient, server: Server, result: Campaign) -> None:
    """Send and judge each request; check the server is up after every batch and after any
    request that got no answer (then the finding names that request, and the server restarts)."""
    known = known_error_types()
    for position, request in enumerate(requests, start=1):
        sent_at = time.monotonic()
        answer = client.send(request)
        spent = time.monotonic() - sent_at
        result.seconds_by_category[request.category] = result.seconds_by_category.get(request.category, 0.0) + spent
        result.findings += [Finding(request, problem, answer.summary()) for problem in problems(request, answer, known)]
        if answer.status is None or position % BATCH == 0 or position == len(requests):
            down = server.down()
            if down is not None:
                result.findings.append(Finding(request, f"{down} (checked after this request); restarted it", answer.summary()))
                server.restart()


def _report(findings: list[Finding], server_log: Path | None) -> str:
    """Findings grouped by likely cause, biggest group first, three examples each."""
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.group(), []).append(finding)
    lines = [f"{len(findings)} findings in {len(groups)} groups ({REPLAY}; add FACEGATE_FUZZ_ONLY=<numbers> to replay some)",
             f"the server's log, with the tracebacks: {server_log}"]
    for name, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        operations = ", ".join(sorted({f.request.operation for f in members}))
        numbers = ",".join(str(f.request.number) for f in members[:30])
        lines.append(f"\n== {len(members)} x {name} in {operations}  (requests {numbers})")
        lines += [f"  {f.line()}" for f in members[:3]]
    return "\n".join(lines)


def test_generated_hostile_requests_get_aws_shaped_answers_and_never_a_5xx(campaign: Campaign) -> None:
    assert not campaign.findings, _report(campaign.findings, campaign.server_log)


def test_the_audit_chain_verifies_after_the_fuzz_run(campaign: Campaign) -> None:
    verdict = campaign.audit_verify
    assert verdict is not None and verdict.returncode == 0, f"facegate audit verify: {verdict}"


def test_the_audit_stands_for_every_request_sent(campaign: Campaign) -> None:
    assert campaign.audited_requests == campaign.sent, (
        f"{campaign.sent} requests were sent (not counting /health) but the audit stands for "
        f"{campaign.audited_requests}: requests rejected before the gate leave no record"
    )
