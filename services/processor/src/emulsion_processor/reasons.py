"""How the processor ends an item early: rejected for good (with one of the contract's
`FailureReason`s, see emulsion_contracts.reasons) or troubled for a while."""

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
