"""Stop requests: the first SIGINT or SIGTERM during training asks the loop
to stop after the current step, with a resumable checkpoint."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["StopRequest", "stop_requests"]


class StopRequest:
    """Set by the SIGINT/SIGTERM handler; read by the loop between steps."""

    def __init__(self) -> None:
        self.signum = 0


@contextlib.contextmanager
def stop_requests(request: StopRequest) -> Iterator[None]:
    """While training: the first SIGINT or SIGTERM asks the loop to stop after
    the current step (and write a resumable checkpoint); a second one acts as
    usual (KeyboardInterrupt, or termination)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        request.signum = signum
        signal.signal(signum, previous[signum])

    for sig in (signal.SIGINT, signal.SIGTERM):
        before = signal.getsignal(sig)
        previous[sig] = before if before is not None else signal.SIG_DFL
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)
