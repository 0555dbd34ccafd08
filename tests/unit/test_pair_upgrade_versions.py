"""What the pair's upgrade runbook compares: the site version and the base, so that a
base-only release is an upgrade too; a record written before bases were recorded is
read with its base left out of the comparison."""

from __future__ import annotations

from bastion.failover.upgrade import Mode, Prepared, Runbook, Runs


def runbook(**changed: str) -> Runbook:
    book = Runbook(
        id="r", mode=Mode.SYNC, releases=["base 1.1.0"], accept_licence=False,
        accept_offline_clients=False, requested_by="admin", started_at="",
        peer={"host": "127.0.0.2", "port": 443, "fingerprint": "f"},
        reverse={"host": "127.0.0.1", "port": 443},
        from_version="1.3.0", to_version="1.3.0", **changed,
    )  # fmt: skip
    book.steps = {step: {"state": "pending"} for step in book.order}
    return book


def test_a_base_only_upgrade_is_done_when_the_base_changed() -> None:
    book = runbook(from_base="1.0.0", to_base="1.1.0")
    assert not Runs("1.3.0", "1.0.0").reaches(book.target)
    assert Runs("1.3.0", "1.1.0").reaches(book.target)
    assert Runs("1.3.0", "1.0.0").reaches(book.before)
    assert str(book.target) == "1.3.0 on base 1.1.0"


def test_the_record_keeps_the_bases_and_an_earlier_record_compares_the_site_alone() -> None:
    book = runbook(from_base="1.0.0", to_base="1.1.0")
    assert Runbook.from_dict(book.to_dict()).target == Runs("1.3.0", "1.1.0")
    earlier = book.to_dict()
    del earlier["from_base"], earlier["to_base"]
    read = Runbook.from_dict(earlier)
    assert Runs("1.3.0", "1.0.0").reaches(read.target)
    assert not Runs("1.2.0", "1.0.0").reaches(read.target)


def test_what_an_appliance_will_run_crosses_the_wire() -> None:
    ready = Prepared(["base 1.1.0"], [], "1.3.0", 10, 20, [], "1.0.0", "1.1.0")
    again = Prepared.from_wire(ready.to_wire())
    assert again == ready and again.target == Runs("1.3.0", "1.1.0")
    assert Runs.from_wire({"version": "1.3.0", "base_version": "1.1.0"}) == again.target
