"""Signed checkpoints of the decision log: the node's word that its chain reached record `seq` with `hash`.

A checkpoint closes the records an archive takes out of the database (`relto audit archive`): verification
then starts from it, and an archive file ends with the checkpoint that closes its records. It is signed with
the node's Ed25519 key (RFC 8032) over the UTF-8 bytes of this JSON array, written without whitespace:

    ["relto.checkpoint.1", node_id, seq, hash, at, count]

- node_id: the node's id (a string), so that one node's checkpoint cannot pass as another's;
- seq, hash: the last record it closes and that record's hash;
- at: when it was made, microseconds since 1970-01-01T00:00:00Z;
- count: how many records it closes: seq minus the seq of the checkpoint before it (0 for the first).

The signature and the public key are kept as 128 and 64 lowercase hex digits. Checkpoints chain through the
records themselves: the first record after a checkpoint has the checkpoint's hash as its prev_hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "relto.checkpoint.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A signed (node, seq, hash, at, count)."""

    node: str
    seq: int
    hash: str
    at: int
    count: int
    public_key: str  # hex of the 32-byte Ed25519 public key
    signature: str  # hex of the 64-byte signature

    def to_json(self) -> dict[str, object]:
        """The checkpoint as a JSON object (archive files)."""
        return {
            "node": self.node,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "count": self.count,
            "public_key": self.public_key,
            "signature": self.signature,
        }


def new_signing_key() -> bytes:
    """A new Ed25519 private key, as its 32 raw bytes (kept with the node's other secrets)."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def public_key(private: bytes) -> str:
    """The hex public key of a raw private key."""
    return Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw().hex()


def fingerprint(public: str) -> str:
    """A short name of a public key for people: `ed25519:` and the first 16 hex digits of its SHA-256."""
    return "ed25519:" + hashlib.sha256(bytes.fromhex(public)).hexdigest()[:16]


def message(node: str, seq: int, hash: str, at: int, count: int) -> bytes:
    """The signed bytes (module docstring)."""
    return orjson.dumps([FORMAT, node, seq, hash, at, count])


def sign(private: bytes, *, node: str, seq: int, hash: str, at: int, count: int) -> Checkpoint:
    """A checkpoint signed with the node's key."""
    key = Ed25519PrivateKey.from_private_bytes(private)
    signature = key.sign(message(node, seq, hash, at, count)).hex()
    return Checkpoint(
        node=node,
        seq=seq,
        hash=hash,
        at=at,
        count=count,
        public_key=key.public_key().public_bytes_raw().hex(),
        signature=signature,
    )


def problem(checkpoint: Checkpoint, *, node: str, trusted_key: str) -> str | None:
    """Why this checkpoint is not the node's word (wrong node, another key, a bad signature), or None."""
    c = checkpoint
    if c.node != node:
        return f"it names node {c.node!r}, not this node ({node})"
    if c.public_key != trusted_key:
        return f"it is signed with another key ({_safe_fingerprint(c.public_key)}), not {fingerprint(trusted_key)}"
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(trusted_key)).verify(
            bytes.fromhex(c.signature), message(c.node, c.seq, c.hash, c.at, c.count)
        )
    except (InvalidSignature, ValueError):
        return "its signature does not verify with the node's key"
    return None


def from_json(doc: object) -> Checkpoint:
    """A checkpoint read from an archive file; ValueError if it is not one."""
    if not isinstance(doc, dict):
        raise ValueError("a checkpoint is a JSON object")
    try:
        cp = Checkpoint(
            node=str(doc["node"]),
            seq=int(doc["seq"]),
            hash=str(doc["hash"]),
            at=int(doc["at"]),
            count=int(doc["count"]),
            public_key=str(doc["public_key"]),
            signature=str(doc["signature"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a checkpoint: {exc}") from exc
    return cp


def _safe_fingerprint(public: str) -> str:
    try:
        return fingerprint(public)
    except ValueError:
        return "not a key"
