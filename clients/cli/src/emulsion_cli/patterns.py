"""`--include` / `--exclude`: which files under DIR an ingest considers.

Patterns are globs matched against a file's path relative to DIR, with '/' separators:

- a pattern without '/' matches the file's name at any depth: `*.jpg`, `IMG_00??.*`;
- a pattern with '/' matches the whole relative path (a leading '/' is ignored):
  `raw/*.png`, `2024/**/*.jpg`;
- `*` is any run of characters but '/', `?` one character but '/', `[abc]` / `[!abc]`
  a character class; `**` as a whole segment is any number of directories (none too),
  so `raw/**` is everything under raw/ and `**/thumbs/**` every thumbs/ directory's files;
  a trailing '/' means the same as '/**' (`raw/`).

A file is selected when it matches an include pattern (or none are given) and matches no
exclude pattern. Excluded directories are not even walked (see `Selection.prunes`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

ANY_DIRECTORIES: Final = "(?:[^/]+/)*"


def _segment(segment: str) -> str:
    """One path segment's glob as a regular expression that never crosses a '/'."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            while i + 1 < len(segment) and segment[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := _class_end(segment, i)) is not None:
            body = segment[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"[^/{escaped}]" if negate else f"[{escaped}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _class_end(segment: str, start: int) -> int | None:
    """Where the class opened at `start` closes; None if it never does (then '[' is literal).
    A ']' first in the class (after an optional '!') is a member, as in fnmatch."""
    i = start + 1
    if i < len(segment) and segment[i] in "!^":
        i += 1
    if i < len(segment) and segment[i] == "]":
        i += 1
    end = segment.find("]", i)
    return None if end < 0 else end


def translate(pattern: str) -> str:
    """The pattern as a regular expression over whole relative paths."""
    if pattern.endswith("/"):
        pattern += "**"
    anchored = "/" in pattern.rstrip("/")
    segments = [s for s in pattern.lstrip("/").split("/") if s]
    if not segments:
        return ANY_DIRECTORIES + "[^/]+"
    if not anchored:
        # A bare name pattern: the file's name at any depth.
        return ANY_DIRECTORIES + ("[^/]+" if segments == ["**"] else _segment(segments[0]))
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".+" if last else ANY_DIRECTORIES)
        else:
            parts.append(_segment(segment) + ("" if last else "/"))
    return "".join(parts)


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns), re.DOTALL)


@dataclass(frozen=True)
class Selection:
    include: tuple[str, ...] = field(default=())
    exclude: tuple[str, ...] = field(default=())

    @cached_property
    def _include(self) -> re.Pattern[str] | None:
        return _compile(self.include)

    @cached_property
    def _exclude(self) -> re.Pattern[str] | None:
        return _compile(self.exclude)

    @cached_property
    def _excluded_trees(self) -> re.Pattern[str] | None:
        """The directories whose every file an exclude pattern matches: for `P/**` (or `P/`),
        the paths P matches, since then `P/**` matches everything below them."""
        roots = tuple(
            p.removesuffix("/**").removesuffix("/") or "/"
            for p in self.exclude
            if p.endswith(("/**", "/")) and p.strip("/") not in ("", "**")
        )
        return _compile(tuple(r if "/" in r else "/" + r for r in roots))

    def selects(self, relative: str) -> bool:
        if self._include is not None and not self._include.fullmatch(relative):
            return False
        return self._exclude is None or not self._exclude.fullmatch(relative)

    def prunes(self, directory: str) -> bool:
        """True when no file under `directory` (relative, no trailing '/') can be selected."""
        return self._excluded_trees is not None and bool(self._excluded_trees.fullmatch(directory))
