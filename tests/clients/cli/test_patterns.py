"""--include / --exclude globs against relative paths: properties over generated paths."""

from __future__ import annotations

import fnmatch
import posixpath
import re

from hypothesis import given
from hypothesis import strategies as st

from emulsion_cli.patterns import Selection, translate

# Segments from a small alphabet (no glob characters, so a path is also a literal
# pattern), so generated patterns and paths actually meet.
segment = st.text(alphabet="abAB1._- ", min_size=1, max_size=4).filter(
    lambda s: s not in (".", "..")
)
paths = st.lists(segment, min_size=1, max_size=4).map("/".join)
glob_segment = st.lists(
    st.sampled_from(["a", "b", "A", "1", ".", "_", "*", "?", "[ab]", "[!a]"]),
    min_size=1,
    max_size=4,
).map("".join)


def matches(pattern: str, path: str) -> bool:
    return re.fullmatch(translate(pattern), path, re.DOTALL) is not None


@given(glob_segment, paths)
def test_a_pattern_without_a_slash_matches_the_name_at_any_depth(pattern: str, path: str) -> None:
    expected = fnmatch.fnmatchcase(posixpath.basename(path), pattern)
    assert matches(pattern, path) == expected


# A segment that is exactly `**` is the any-depth wildcard (the double-star tests below).
@given(st.lists(glob_segment.filter(lambda s: s != "**"), min_size=2, max_size=3), paths)
def test_a_pattern_with_slashes_matches_segment_by_segment(parts: list[str], path: str) -> None:
    pattern = "/".join(parts)
    names = path.split("/")
    expected = len(names) == len(parts) and all(
        fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts, strict=True)
    )
    assert matches(pattern, path) == expected


@given(paths, paths)
def test_a_directory_with_double_star_is_everything_below_it(directory: str, path: str) -> None:
    below = matches(f"{directory}/**", path)
    assert below == path.startswith(directory + "/")
    assert matches(f"{directory}/", path) == below


@given(paths, paths)
def test_double_star_in_front_matches_at_any_depth(prefix: str, name: str) -> None:
    assert matches(f"**/{name}", f"{prefix}/{name}")
    assert matches(f"**/{name}", name)
    assert matches("**", f"{prefix}/{name}")


@given(
    st.lists(paths, max_size=8),
    st.lists(glob_segment, max_size=2),
    st.lists(glob_segment, max_size=2),
)
def test_selected_is_included_minus_excluded(
    files: list[str], include: list[str], exclude: list[str]
) -> None:
    selection = Selection(tuple(include), tuple(exclude))
    for path in files:
        included = not include or any(matches(p, path) for p in include)
        excluded = any(matches(p, path) for p in exclude)
        assert selection.selects(path) == (included and not excluded)
        # The order the patterns are given in does not matter.
        assert Selection(tuple(reversed(include)), tuple(reversed(exclude))).selects(path) == (
            selection.selects(path)
        )


@given(
    st.lists(
        st.one_of(
            glob_segment,
            st.lists(glob_segment, min_size=1, max_size=2).map(
                lambda parts: "/".join(parts) + "/**"
            ),
        ),
        max_size=3,
    ),
    paths,
    paths,
)
def test_a_pruned_directory_holds_nothing_selectable(
    exclude: list[str], directory: str, rest: str
) -> None:
    """Discovery does not walk a pruned directory: that must never hide a selected file."""
    selection = Selection((), tuple(exclude))
    if selection.prunes(directory):
        assert not selection.selects(f"{directory}/{rest}")


def test_examples_from_the_help() -> None:
    selection = Selection(("*.jpg",), ("raw/**",))
    assert selection.selects("a.jpg")
    assert selection.selects("2024/june/a.jpg")
    assert not selection.selects("a.png")
    assert not selection.selects("raw/a.jpg")
    assert selection.selects("x/raw/a.jpg")  # anchored: only the top-level raw/
    assert Selection((), ("**/raw/**",)).prunes("x/raw")
    assert Selection(("2024/**/*.png",)).selects("2024/a.png")
    assert Selection(("2024/**/*.png",)).selects("2024/06/01/a.png")
    assert not Selection(("2024/**/*.png",)).selects("2023/a.png")
    assert Selection(("[a",)).selects("[a")  # an unclosed class is literal
