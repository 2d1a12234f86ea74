"""Which libraries are measured, pinned, and how each one's adapter is run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LIBRARIES", "PEERS", "Library"]


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    #: pip requirements for the library's own venv; empty: runs in the harness's interpreter
    requirements: tuple[str, ...] = ()
    #: a peer (competes for "best peer") rather than runnerq itself or the ceiling
    peer: bool = True
    #: handlers run one at a time whatever concurrency is asked (RQ's forking worker)
    serial: bool = False
    #: delayed activities run with the worker alone (taskiq needs a scheduler process)
    scheduling: bool = True

    @property
    def version(self) -> str:
        if not self.requirements:
            return "repo"
        return self.requirements[0].split("==", 1)[-1]

    @property
    def module(self) -> str:
        return f"benchmarks.peers.{self.name}"


# hiredis goes into every venv (runnerq's own venv has it too): same parser for everyone.
_HIREDIS = "hiredis==3.5.0"

LIBRARIES: tuple[Library, ...] = (
    Library("runnerq", peer=False),
    Library("ceiling", peer=False),
    Library("arq", ("arq==0.28.0", _HIREDIS)),
    Library("saq", ("saq[redis]==0.26.4", "typing_extensions==4.16.0", _HIREDIS)),
    Library("dramatiq", ("dramatiq[redis]==2.2.1", _HIREDIS)),
    Library("rq", ("rq==2.12.0", _HIREDIS), serial=True),
    Library("celery", ("celery[redis]==5.7.0", _HIREDIS)),
    Library("taskiq", ("taskiq==0.13.0", "taskiq-redis==1.2.4", _HIREDIS), scheduling=False),
)

PEERS: tuple[str, ...] = tuple(lib.name for lib in LIBRARIES if lib.peer)
