"""No API read runs a database statement on the event loop (see
`tests.support.loop_reads`): every `GET` of the API without an id in its path, with a
bearer token, over the appliance's own listeners and TLS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.loop_reads import plain_reads, statements_on_the_loop
from tests.support.served_app import served_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_no_api_read_runs_a_statement_on_the_event_loop(tmp_path: Path) -> None:
    reads = plain_reads(api=True)
    on_loop: dict[str, list[str]] = {}
    statuses: dict[str, int] = {}
    async with served_app(tmp_path, "api.example.test", "lecteur") as site:
        bearer = {"Authorization": site.authorization}
        async with httpx.AsyncClient(base_url=site.url, verify=site.tls, headers=bearer) as api:
            for asking in reads:
                with statements_on_the_loop(site.runtime.engine) as found:
                    statuses[asking] = (await api.get(asking)).status_code
                if found:
                    on_loop[asking] = found
    assert len(reads) > 15
    # some answer their documented refusals here: no supervisor to ask about installs
    # (503), no pair upgrade started (404)
    assert {path: status for path, status in statuses.items() if status == 500} == {}
    assert sum(status == 200 for status in statuses.values()) >= 15
    assert on_loop == {}
