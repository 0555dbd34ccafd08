"""Role swap by DNS swing: how long after the primary steps down a client resolving the
site's name through the DNS server every 10 ms is still answered the old primary's
address (goal: under 2 s).

Two real appliances on loopback (127.0.0.175 and 127.0.0.176) and a real named (Debian
bind9) on 127.0.0.1; the appliance that takes over sends an RFC 2136 update signed with
TSIG. Each round swaps the roles back: Become Primary on whichever appliance is the
backup, with the default sync first (made before the primary steps down, so not
counted). The figure is the server's answer; a client whose
resolver caches also keeps the old address for up to the record's TTL (printed).

    uv run python bench/bench_dns_swing.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import named  # noqa: E402
from tests.support.dns_swing import TTL, dns_pair, swap_while_polling  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    if not named.available():
        sys.exit("named is not installed (Debian: apt-get install bind9)")
    gaps: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-dns-") as tmp,
        named.name_server(Path(tmp) / "named") as server,
        dns_pair(Path(tmp), server) as (primary, backup),
    ):
        for round_number in range(1, options.rounds + 1):
            gap, answers = swap_while_polling(server, backup, "become-primary", backup, primary)
            gaps.append(gap)
            print(
                f"round {round_number}: {len(answers)} answers, the old primary's address "
                f"{gap * 1000:.0f} ms after it stepped down (TTL {TTL} s)"
            )
            primary, backup = backup, primary
    print()
    print(f"| role swap by DNS swing (record TTL {TTL} s) | median | max | goal |")
    print("| --- | --- | --- | --- |")
    print(
        f"| server still answering the old primary, 10 ms poller "
        f"| {statistics.median(gaps) * 1000:.0f} ms | {max(gaps) * 1000:.0f} ms | < 2000 ms |"
    )


if __name__ == "__main__":
    main()
