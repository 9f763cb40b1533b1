"""Shared pieces of the node benchmark: corpus, measurements, subprocesses, a TAXII client, the report."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import orjson

MEDIA_TYPE = "application/taxii+json;version=2.1"
PAGE_SIZE = 1000

StixObject = dict[str, Any]


def log(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- corpus -------------------------------------------------------------------------------------


class Envelope(NamedTuple):
    """A TAXII envelope pre-serialised as a client would send it."""

    body: bytes
    size: int


def load_objects(path: Path) -> list[StixObject]:
    """Read a gzipped STIX bundle; marking definitions first, so no object precedes its marking."""
    with gzip.open(path, "rb") as stream:
        objects: list[StixObject] = orjson.loads(stream.read())["objects"]
    return sorted(objects, key=lambda obj: obj["type"] != "marking-definition")


def envelopes(objects: list[StixObject], size: int = PAGE_SIZE) -> list[Envelope]:
    """Cut the objects into serialised envelopes of `size` objects."""
    chunks = (objects[start : start + size] for start in range(0, len(objects), size))
    return [Envelope(orjson.dumps({"objects": chunk}), len(chunk)) for chunk in chunks]


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Measurement:
    """What one system did: objects and seconds for ingest and read-back, page latencies."""

    system: str
    ingested: int = 0
    ingest_s: float = 0.0
    read: int = 0
    read_s: float = 0.0
    first_page_ms: float | None = None
    last_page_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ingest_rate(self) -> float | None:
        return self.ingested / self.ingest_s if self.ingest_s > 0 and self.ingested else None

    @property
    def read_rate(self) -> float | None:
        return self.read / self.read_s if self.read_s > 0 and self.read else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report, rates included."""
        return asdict(self) | {"ingest_obj_s": self.ingest_rate, "read_obj_s": self.read_rate}


def median_ms(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of `action` over `repeat` calls, in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


# --- subprocesses -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(command: list[str]) -> str:
    """Run a command to completion and return its stripped stdout; raise with its stderr on failure."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a server log, for error messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextmanager
def server(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group for the duration of the block; always stop it."""
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server's process group, killing it if it does not go within 5 s."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


# --- TAXII client -------------------------------------------------------------------------------


class Page(NamedTuple):
    """One GET of an objects endpoint, already parsed."""

    size: int
    more: bool
    next: str | None
    date_added_last: str | None


class TaxiiClient:
    """The few TAXII 2.1 calls the benchmark makes, the same for every server."""

    def __init__(self, base_url: str, auth: httpx.Auth, timeout: float) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            auth=auth,
            headers={"Accept": MEDIA_TYPE},
            timeout=httpx.Timeout(timeout, connect=10.0),
            trust_env=False,
        )

    def close(self) -> None:
        self.http.close()

    def wait_ready(self, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
        """Poll the discovery endpoint until it answers 200, the server dies, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}:\n{log_tail(log_path)}")
            try:
                response = self.http.get("/taxii2/")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:300]}"
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s ({last}):\n{log_tail(log_path)}")

    def post(self, path: str, envelope: Envelope) -> dict[str, Any]:
        """POST an envelope; return the status resource of the 202."""
        response = self.http.post(path, content=envelope.body, headers={"Content-Type": MEDIA_TYPE})
        if response.status_code != 202:
            raise RuntimeError(f"POST {path}: HTTP {response.status_code}: {response.text[:500]}")
        status: dict[str, Any] = orjson.loads(response.content)
        return status

    def status(self, path: str) -> dict[str, Any]:
        """GET a status resource."""
        response = self.http.get(path)
        response.raise_for_status()
        status: dict[str, Any] = orjson.loads(response.content)
        return status

    def page(self, path: str, params: dict[str, str | int]) -> Page:
        """GET one page of objects and parse it, as a client must."""
        response = self.http.get(path, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: HTTP {response.status_code}: {response.text[:500]}")
        body = orjson.loads(response.content)
        return Page(
            size=len(body.get("objects", [])),
            more=bool(body.get("more", False)),
            next=body.get("next"),
            date_added_last=response.headers.get("X-TAXII-Date-Added-Last"),
        )


# --- report -------------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "-"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def table(results: list[Measurement], floor: Measurement | None) -> str:
    """The results as a Markdown table, rates relative to the floor."""
    base_in = floor.ingest_rate if floor else None
    base_out = floor.read_rate if floor else None
    lines = [
        "| system | objects in | ingest obj/s | x floor | objects out | read obj/s | x floor "
        "| first page ms | last page ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.system} | {result.ingested:,} | {_rate(result.ingest_rate)} "
            f"| {_ratio(result.ingest_rate, base_in)} | {result.read:,} | {_rate(result.read_rate)} "
            f"| {_ratio(result.read_rate, base_out)} "
            f"| {_ms(result.first_page_ms)} | {_ms(result.last_page_ms)} |"
        )
    return "\n".join(lines)


class Target(NamedTuple):
    """A ratio with the bound it should meet; no bound: shown for information."""

    name: str
    value: float | None
    bound: float | None
    at_least: bool

    def line(self) -> str:
        if self.value is None:
            return f"{self.name}: not measured"
        if self.bound is None:
            return f"{self.name}: {self.value:.2f} (information)"
        met = self.value >= self.bound if self.at_least else self.value <= self.bound
        sign = ">=" if self.at_least else "<="
        return f"{self.name}: {self.value:.2f} (target {sign} {self.bound:g}) {'PASS' if met else 'FAIL'}"


def quotient(top: float | None, bottom: float | None) -> float | None:
    """top / bottom, or None when either is missing or bottom is zero."""
    return top / bottom if top is not None and bottom else None
