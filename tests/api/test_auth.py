"""relto.api.auth: the token in each Authorization scheme a TAXII client sends (bad ones: test_bad_input.py)."""

from __future__ import annotations

import base64

import pytest

from relto.api.auth import token_from
from tests.conftest import TAXII, Harness

TOKEN = "rt_0123456789abcdef_" + "A" * 43


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"Token {TOKEN}",  # taxii2-client's TokenAuth
        f"token {TOKEN}",
        f"Token  {TOKEN} ",
        "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode(),
    ],
)
def test_token_from_each_scheme(header: str) -> None:
    assert token_from(header) == TOKEN


@pytest.mark.parametrize("header", [None, "", "Token", "Token ", f"Digest {TOKEN}", TOKEN, f"Tokens {TOKEN}"])
def test_no_token_from_other_headers(header: str | None) -> None:
    assert token_from(header) is None


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_a_real_token_in_each_scheme_reads_and_writes(harness: Harness, scheme: str) -> None:
    coll = harness.collection()
    token = harness.token("GBR")
    headers = {"Authorization": f"{scheme} {token}", "Accept": TAXII, "Content-Type": TAXII}
    for path in ("/taxii2/", "/api/", "/api/collections/", f"/api/collections/{coll}/objects/"):
        r = harness.client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.text)
    r = harness.client.post(f"/api/collections/{coll}/objects/", content=b'{"objects": []}', headers=headers)
    assert r.status_code == 202, r.text
