"""LwM2M paths: ``/``, ``/3``, ``/3/0``, ``/3/0/1``, ``/3/0/7/1``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import total_ordering

MAX_ID = 65535


class InvalidPathError(ValueError):
    """A string or id tuple that is not a valid LwM2M path."""


@total_ordering
@dataclass(frozen=True, slots=True)
class LwM2mPath:
    """A path into the LwM2M data model; missing levels are ``None``.

    Ids are 0..65535 (16 bits), except that 65535 is reserved and refused for
    object instance ids (OMA-TS-LightweightM2M-Core, "MAX_ID").

    ``ids`` and ``depth`` are computed once, at construction, and the text form on first
    use: paths are hashed, compared and printed for every value a device reports.
    """

    object_id: int | None = None
    instance_id: int | None = None
    resource_id: int | None = None
    resource_instance_id: int | None = None
    ids: tuple[int, ...] = field(init=False, repr=False, compare=False)
    """The ids that are set, from the object down."""
    depth: int = field(init=False, repr=False, compare=False)
    _text: str | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        ids = self.ids_with_none
        seen_none = False
        for value in ids:
            if value is None:
                seen_none = True
                continue
            if seen_none:
                raise InvalidPathError("a path level is set below an unset one")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
                raise InvalidPathError(f"path id out of range 0..{MAX_ID}: {value!r}")
        if self.instance_id == MAX_ID:
            raise InvalidPathError("object instance id 65535 is reserved")
        set_ids = tuple(value for value in ids if value is not None)
        object.__setattr__(self, "ids", set_ids)
        object.__setattr__(self, "depth", len(set_ids))

    @classmethod
    def parse(cls, text: str) -> LwM2mPath:
        """Parse ``/3/0/1`` (leading slash optional, trailing slash tolerated)."""
        stripped = text.strip()
        if stripped in ("", "/"):
            return cls()
        parts = stripped.strip("/").split("/")
        if len(parts) > 4:
            raise InvalidPathError(f"too many levels in path {text!r}")
        ids: list[int] = []
        for part in parts:
            if not part.isdigit() or not part.isascii() or (len(part) > 1 and part[0] == "0"):
                raise InvalidPathError(f"not a numeric path segment: {part!r} in {text!r}")
            if len(part) > 5:  # ids are 16-bit; int() of over 4,300 digits raises otherwise
                raise InvalidPathError(f"path segment out of range: {part[:8]}... in path")
            ids.append(int(part))
        return cls.of(*ids)

    @classmethod
    def of(cls, *ids: int) -> LwM2mPath:
        if len(ids) > 4:
            raise InvalidPathError("a path has at most four levels")
        return cls(*ids)

    @property
    def ids_with_none(self) -> tuple[int | None, int | None, int | None, int | None]:
        return (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)

    @property
    def is_root(self) -> bool:
        return self.depth == 0

    @property
    def is_object(self) -> bool:
        return self.depth == 1

    @property
    def is_object_instance(self) -> bool:
        return self.depth == 2

    @property
    def is_resource(self) -> bool:
        return self.depth == 3

    @property
    def is_resource_instance(self) -> bool:
        return self.depth == 4

    @property
    def parent(self) -> LwM2mPath:
        if self.is_root:
            raise InvalidPathError("the root path has no parent")
        return LwM2mPath.of(*self.ids[:-1])

    def child(self, child_id: int) -> LwM2mPath:
        return LwM2mPath.of(*self.ids, child_id)

    def starts_with(self, prefix: LwM2mPath) -> bool:
        """True when ``prefix`` is this path or one of its ancestors."""
        return self.ids[: prefix.depth] == prefix.ids

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = "/" + "/".join(map(str, self.ids))
            object.__setattr__(self, "_text", text)
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, LwM2mPath):
            return NotImplemented
        return self.ids < other.ids


ROOT = LwM2mPath()
