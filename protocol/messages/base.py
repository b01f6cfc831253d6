"""Common base of every wire message.

Each message class carries a ``type`` tag (its family and kind) and a version ``v``; both
take part in decoding (the union discriminates on ``type``) and in signing (the signing
domain is ``gpumarket:<type>:<v>``). Models are frozen and refuse unknown fields.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from protocol.ids import Address


class WireMessage(BaseModel):
    """A frozen, versioned message. Subclasses set ``type`` to a ``Literal`` tag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1

    AUTHOR_FIELD: ClassVar[str | None] = None
    """Name of the field holding the address that must have signed this message, if any."""

    @property
    def message_type(self) -> str:
        return str(getattr(self, "type"))  # noqa: B009 - ``type`` is declared by each subclass

    def author(self) -> Address | None:
        """The address whose signature this message needs, or None if any signer may send it."""
        if self.AUTHOR_FIELD is None:
            return None
        value: Address = getattr(self, self.AUTHOR_FIELD)
        return value
