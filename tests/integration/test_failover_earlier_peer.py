"""A peer of an earlier build, whose challenge offers no binding: this version still
proves the key to it the earlier way (unbound), which is what lets a pair upgrade run
from this version reach a peer not upgraded yet. The peer here answers over real TLS
the way earlier builds did (`/challenge` without `binding`, `/prove` checking the
unbound proof)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.failover import rules
from bastion.failover.peer import PEER_PREFIX, PeerClient
from bastion.failover.rules import PeerAddress
from tests.support.asgi_tls import served
from tests.support.pki import TestCa

KEY = b"a shared inter-appliance key"


def earlier_peer(received: list[dict[str, Any]]) -> Starlette:
    async def challenge(_request: Request) -> JSONResponse:
        return JSONResponse({"challenge": rules.stamp(KEY, "challenge", int(time.time()), "r")})

    async def prove(request: Request) -> JSONResponse:
        body = await request.json()
        received.append(body)
        expected = rules.caller_proof(KEY, body["challenge"], body["nonce"], "")
        if not rules.proof_matches(expected, body["proof"]):
            return JSONResponse({"error": {"type": "forbidden", "message": "differ"}}, 403)
        proof = rules.answer_proof(KEY, body["challenge"], body["nonce"], "")
        answer = {"proof": proof, "ticket": "t", "version": "1.0.0", "time": time.time()}
        return JSONResponse({**answer, "role": "none", "appliance": "earlier"})

    return Starlette(
        routes=[
            Route(f"{PEER_PREFIX}/challenge", challenge, methods=["POST"]),
            Route(f"{PEER_PREFIX}/prove", prove, methods=["POST"]),
        ]
    )


def test_a_peer_of_an_earlier_build_is_given_the_earlier_proof(tmp_path: Path) -> None:
    issued = TestCa().issue(["127.0.0.1"])
    chain = tmp_path / "peer.pem"
    chain.write_bytes(issued.certificate_pem() + issued.key_pem())
    received: list[dict[str, Any]] = []
    with served(earlier_peer(received), chain) as url:
        port = int(url.rsplit(":", 1)[1])
        with PeerClient(PeerAddress("127.0.0.1", port), KEY) as client:
            met = client.introduce()
    assert met.appliance == "earlier" and met.fingerprint == issued.fingerprint
    (sent,) = received
    assert "binding" not in sent and "certificate" not in sent
