"""Release downloads started from the Updates page, run in a background thread.

The page shows a progress bar that ``static/updates.js`` fills by polling the
job's progress; the download itself is ``services.updates.download``, the same
call the API and the command line make, with its own unit of work and audit.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field

from bastion.platform.errors import ServiceError
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.updates import service as updates

KEEP_FINISHED = 20
log = logging.getLogger(__name__)


@dataclass
class DownloadJob:
    id: str
    release: str
    done: int = 0
    total: int = 0
    state: str = "running"
    message: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, done: int, total: int) -> None:
        with self._lock:
            self.done, self.total = done, total

    def finish(self, state: str, message: str) -> None:
        with self._lock:
            self.state, self.message = state, message

    def view(self) -> dict[str, object]:
        with self._lock:
            return {
                "id": self.id,
                "release": self.release,
                "done": self.done,
                "total": self.total,
                "state": self.state,
                "message": self.message,
            }


class DownloadJobs:
    """The downloads of one running appliance, newest last."""

    def __init__(self) -> None:
        self._jobs: dict[str, DownloadJob] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> DownloadJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, runtime: Runtime, actor: Actor, release: str) -> DownloadJob:
        job = DownloadJob(secrets.token_urlsafe(12), release)
        with self._lock:
            self._forget_finished()
            self._jobs[job.id] = job
        thread = threading.Thread(
            target=_run, args=(runtime, actor, job), name=f"download {release}", daemon=True
        )
        thread.start()
        return job

    def _forget_finished(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]


def _run(runtime: Runtime, actor: Actor, job: DownloadJob) -> None:
    setup = runtime.part(updates.UpdateSetup)
    try:
        with runtime.uow() as uow:
            done = updates.download(uow, setup, actor, job.release, job.progress)
            uow.commit()
    except ServiceError as error:
        job.finish("failed", str(error))
        return
    except Exception:  # a job must never look as if it were still running
        log.exception("download of %s failed", job.release)
        job.finish("failed", "The download failed unexpectedly; the appliance log has the cause.")
        return
    job.progress(done.row.length, done.row.length)
    job.finish(
        "done",
        f"{done.row.name} downloaded and verified: {done.row.length:,} bytes in "
        f"{done.seconds:.1f} s. It waits in storage until it is installed.",
    )
