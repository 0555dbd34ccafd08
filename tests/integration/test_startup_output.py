"""What a real appliance process prints into a pipe (a service manager's journal, a log file):
whole plain lines, and each start-up line once."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.appliance import appliance_command, free_port, test_environment

HOST = "127.0.0.51"
READY_LINE = "Stop with Ctrl+C."
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@dataclass
class PipedOutput:
    """Every line the appliance wrote, read as it comes."""

    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.rstrip("\n") == READY_LINE:
                self.ready.set()


@contextmanager
def appliance_into_a_pipe(data_dir: Path, listen: list[str]) -> Iterator[PipedOutput]:
    """A real `bastion appliance serve` whose standard output and error are one pipe;
    stopped with SIGTERM on exit, its output read to the end."""
    env = test_environment({"COLUMNS": "80"})  # Rich's width when it is told nothing
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    process = subprocess.Popen(
        appliance_command(data_dir, listen),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output = PipedOutput()
    reader = threading.Thread(target=output.read, args=(process,), daemon=True)
    reader.start()
    try:
        assert output.ready.wait(90), "\n".join(["the appliance did not start:", *output.lines])
        yield output
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()


def test_the_banner_is_whole_plain_lines_and_each_start_line_comes_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "a data directory with a path long enough to wrap at 80 columns"
    addresses = [f"{HOST}:{free_port(HOST)}", f"{HOST}:{free_port(HOST)}"]
    with appliance_into_a_pipe(data_dir, addresses) as output:
        pass
    lines = output.lines
    shown = "\n".join(lines)

    ca_file = data_dir / "certs" / "internal-ca.pem"
    certificate_line = next(line for line in lines if "issued by the CA in" in line)
    assert certificate_line.endswith(f"issued by the CA in {ca_file}"), shown
    assert any(line.endswith("(you will choose a new password at once).") for line in lines)
    assert [line for line in lines if line != line.rstrip()] == [], "trailing spaces"
    assert "\x1b[" not in shown, "colour codes in a pipe"

    said = [TIMESTAMP.sub("", line) for line in lines if TIMESTAMP.match(line)]
    assert [line for line in said if said.count(line) > 1] == [], shown
    for address in addresses:
        assert f"INFO bastion.network.listeners serving on {address}" in said
        assert f"INFO bastion.network.listeners stopped serving on {address}" in said
    assert lines[-1] == "Bastion appliance stopped.", shown
