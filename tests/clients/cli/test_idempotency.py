"""The Idempotency-Key: the same file set names the same key, anything else another."""

from __future__ import annotations

import re

from emulsion_cli.idempotency import idempotency_key

FILES = [("a" * 64, "IMG_1.jpg"), ("b" * 64, "sub/IMG_2.jpg")]


def test_same_files_in_any_order_give_the_same_key() -> None:
    assert idempotency_key("c", "default", FILES) == idempotency_key(
        "c", "default", list(reversed(FILES))
    )


def test_every_input_changes_the_key() -> None:
    base = idempotency_key("c", "default", FILES)
    assert idempotency_key("d", "default", FILES) != base
    assert idempotency_key("c", "thumbs", FILES) != base
    assert idempotency_key("c", "default", FILES[:1]) != base
    assert idempotency_key("c", "default", [("c" * 64, "IMG_1.jpg"), FILES[1]]) != base
    assert idempotency_key("c", "default", [("a" * 64, "IMG_9.jpg"), FILES[1]]) != base
    assert idempotency_key("c", "default", FILES, ["staging/X/IMG_1.jpg"]) != base


def test_no_ambiguity_between_collection_and_profile() -> None:
    assert idempotency_key("ab", "c", FILES) != idempotency_key("a", "bc", FILES)


def test_the_key_is_what_the_api_accepts() -> None:
    # The API takes 1-255 printable ASCII characters.
    assert re.fullmatch(r"[\x21-\x7e]{1,255}", idempotency_key("c", "default", FILES))
