"""The processor's exceptions: how an item ends early.

`ItemRejected` fails the item for good, with one of the contract's `FailureReason`s (the
enum is `emulsion_contracts.reasons`); the others say that something outside the item
went wrong: whether that is waited out, given back or fails the item is the delivery's
to decide.
"""

from __future__ import annotations

from emulsion_contracts.reasons import FailureReason


class ItemRejected(Exception):
    """The item ends now as failed, with `reason`; retrying cannot help."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[ItemRejected], tuple[FailureReason, str]]:
        # Crosses process boundaries when rendering runs in a process pool.
        return (ItemRejected, (self.reason, self.message))


class TransientTrouble(Exception):
    """Something outside the item went wrong (storage, messaging, disk); try it again later."""


class OutageTooLong(Exception):
    """Transient trouble outlasted the outage budget."""


class RenderCrashed(Exception):
    """The render process died (the OOM killer, a crashing decoder) on this item.

    Not waited out in-process: an image that kills its renderer every time is a poison
    message, so this delivery is given back and counts against `max_deliver`.
    """
