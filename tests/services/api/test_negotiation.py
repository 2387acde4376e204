"""`Accept` negotiation of a style's renderings, as properties over Accept headers with
q-values (pure logic: emulsion_api.negotiation)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emulsion_api.negotiation import choose, parse_accept, quality_of

IMAGE_TYPES = ["image/avif", "image/webp", "image/jpeg", "image/png"]
ALL_RANGES = [*IMAGE_TYPES, "image/*", "*/*", "text/html", "application/json", "image/gif"]

offers = st.lists(st.sampled_from(IMAGE_TYPES), min_size=1, max_size=4, unique=True)
qvalues = st.one_of(
    st.none(), st.sampled_from([0, 1]), st.integers(0, 1000).map(lambda q: q / 1000)
)


@st.composite
def accept_members(draw: st.DrawFn) -> list[tuple[str, float | None]]:
    ranges = draw(st.lists(st.sampled_from(ALL_RANGES), max_size=6, unique=True))
    return [(media, draw(qvalues)) for media in ranges]


def header(members: list[tuple[str, float | None]], spaces: bool = True) -> str:
    separator = ", " if spaces else ","
    return separator.join(
        media if q is None else f"{media};q={q:g}" if not spaces else f"{media}; q={q:g}"
        for media, q in members
    )


@given(offers, accept_members(), st.booleans())
def test_the_choice_is_offered_and_none_offered_is_better(
    offered: list[str], members: list[tuple[str, float | None]], spaces: bool
) -> None:
    accept = header(members, spaces)
    chosen = choose(accept, offered)
    assert 0 <= chosen < len(offered)
    ranges = parse_accept(accept)
    qualities = [quality_of(media, ranges) for media in offered]
    if members and max(qualities) > 0:
        # The best accepted quality; the style's order breaks ties.
        assert qualities[chosen] == max(qualities)
        assert all(q < qualities[chosen] for q in qualities[:chosen])
    elif members:
        # Nothing acceptable: JPEG when offered, else the first.
        assert chosen == (offered.index("image/jpeg") if "image/jpeg" in offered else 0)


@given(offers, accept_members(), st.randoms())
def test_the_order_of_the_header_does_not_matter(
    offered: list[str], members: list[tuple[str, float | None]], random: object
) -> None:
    shuffled = list(members)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert choose(header(members), offered) == choose(header(shuffled), offered)


@given(offers, st.sampled_from([None, "", "*/*", "*/*;q=0.8", "image/*", " , ;;", "garbage"]))
def test_no_preference_gets_the_first_listed(offered: list[str], accept: str | None) -> None:
    assert choose(accept, offered) == 0


@given(offers, st.data())
def test_a_type_refused_with_q0_is_never_chosen_while_another_is_accepted(
    offered: list[str], data: st.DataObject
) -> None:
    refused = data.draw(st.sampled_from(offered))
    accepted = [media for media in offered if media != refused]
    accept = f"{refused};q=0, */*;q=0.1"
    chosen = offered[choose(accept, offered)]
    if accepted:
        assert chosen != refused
        assert chosen == accepted[0]


@given(offers, st.data())
def test_the_only_accepted_type_is_chosen(offered: list[str], data: st.DataObject) -> None:
    wanted = data.draw(st.sampled_from(offered))
    assert offered[choose(f"text/html, {wanted};q=0.2", offered)] == wanted


def test_browsers() -> None:
    style = ["image/avif", "image/webp", "image/jpeg"]
    chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
    safari_15 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
    old = "image/png,image/*;q=0.8,*/*;q=0.5"
    assert style[choose(chrome, style)] == "image/avif"
    assert style[choose(safari_15, style)] == "image/webp"
    # image/* gives all three 0.8: the style's order decides.
    assert style[choose(old, style)] == "image/avif"
    assert style[choose("image/jpeg", style)] == "image/jpeg"
    assert style[choose("image/png", style)] == "image/jpeg"  # nothing acceptable: JPEG
    assert ["image/avif", "image/webp"][choose("image/png", ["image/avif", "image/webp"])] == (
        "image/avif"
    )
    # The most specific range decides: image/avif;q=0 beats image/*.
    assert style[choose("image/avif;q=0, image/*", style)] == "image/webp"
    # Case and odd q-values: types are case-insensitive, a bad q counts as 1.
    assert style[choose("IMAGE/WEBP;Q=0.9, image/jpeg;q=abc", style)] == "image/jpeg"


def test_a_huge_header_is_read_only_so_far() -> None:
    style = ["image/avif", "image/jpeg"]
    padding = ", ".join(f"text/x-{i}" for i in range(1000))  # past ACCEPT_MAX
    assert style[choose(f"image/jpeg, {padding}, image/avif", style)] == "image/jpeg"
    # What is read accepts neither: the JPEG fallback, whatever comes after the limit.
    assert style[choose(f"{padding}, image/avif", style)] == "image/jpeg"
