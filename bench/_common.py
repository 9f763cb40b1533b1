"""Shared pieces of the node benchmark: corpus, measurements, subprocesses, a TAXII client, the report."""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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
    """The few TAXII 2.1 calls the benchmark makes, the same for every server.

    It uses the standard library's http.client on one kept-alive connection: the benchmark measures servers,
    and httpx's pure-Python body handling would add ~5 ms per 3 MB page to every system alike.
    """

    def __init__(self, base_url: str, authorization: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.headers = {"Accept": MEDIA_TYPE, "Authorization": authorization}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, params: dict[str, str | int] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on the kept-alive connection (reconnecting once if the server closed it)."""
        url = path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = MEDIA_TYPE
        for attempt in (1, 2):
            try:
                self.conn.request(method, url, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def wait_ready(self, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
        """Poll the discovery endpoint until it answers 200, the server dies, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}:\n{log_tail(log_path)}")
            try:
                status, _, data = self.request("GET", "/taxii2/")
                if status == 200:
                    return
                last = f"HTTP {status}: {data[:300]!r}"
            except OSError as error:
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                last = repr(error)
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s ({last}):\n{log_tail(log_path)}")

    def post(self, path: str, envelope: Envelope) -> dict[str, Any]:
        """POST an envelope; return the status resource of the 202."""
        status, _, data = self.request("POST", path, body=envelope.body)
        if status != 202:
            raise RuntimeError(f"POST {path}: HTTP {status}: {data[:500]!r}")
        result: dict[str, Any] = orjson.loads(data)
        return result

    def status(self, path: str) -> dict[str, Any]:
        """GET a status resource."""
        status, _, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        result: dict[str, Any] = orjson.loads(data)
        return result

    def page(self, path: str, params: dict[str, str | int]) -> Page:
        """GET one page of objects and parse it, as a client must."""
        status, headers, data = self.request("GET", path, params=params)
        if status != 200:
            raise RuntimeError(f"GET {path} {params}: HTTP {status}: {data[:500]!r}")
        body = orjson.loads(data)
        return Page(
            size=len(body.get("objects", [])),
            more=bool(body.get("more", False)),
            next=body.get("next"),
            date_added_last=headers.get("x-taxii-date-added-last"),
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


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bearer_auth(token: str) -> str:
    """A Bearer Authorization header value."""
    return f"Bearer {token}"
