"""Styles with several formats (`formats: [avif, webp, jpeg]`): every rendering of a
superseded version is garbage, and no rendering of the live version is ever deleted, on
the guards (every key, any age) and on the real NATS and MinIO (the fast path)."""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench.janitor_bulk import placeholder_manifest
from emulsion_contracts import keys
from emulsion_contracts.formats import OUTPUT_CONTENT_TYPES, OutputFormat
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import Derivative, Rendering
from emulsion_devstack.stack import Endpoints
from emulsion_janitor.guards import Facts, Guard, Live
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.sweep import select

from .conftest import Layout, connected, janitor, until, version_id, wait_for_async
from .test_guards import GRACE, NOW, at, check, settings

COLLECTION = "gallery-r"
ASSET = "IMG_0001.HEIC"
STYLES = ("large", "thumb", "tiny")

formats_lists = st.lists(
    st.sampled_from(typing.get_args(OutputFormat)), min_size=1, max_size=4, unique=True
)


def multi_format_manifest(
    collection: str,
    asset: str,
    version: str,
    formats: dict[str, list[OutputFormat]],
    committed_at: datetime,
) -> AssetManifest:
    derivatives = []
    for style, names in formats.items():
        renderings = tuple(
            Rendering(
                format=name,
                key=keys.rendering_key(collection, asset, version, style, name),
                bytes=1,
                content_type=OUTPUT_CONTENT_TYPES[name],
            )
            for name in names
        )
        derivatives.append(
            Derivative(
                style=style,
                key=renderings[0].key,
                width=1,
                height=1,
                bytes=1,
                content_type=renderings[0].content_type,
                renderings=renderings if len(renderings) > 1 else (),
            )
        )
    original = keys.original_key(collection, asset, version, keys.safe_name(asset))
    return placeholder_manifest(
        collection, asset, version, original, derivatives, committed_at, content_type="image/heic"
    )


def rendering_keys(manifest: AssetManifest) -> set[str]:
    return {r.key for d in manifest.derivatives for r in d.all_renderings()}


@given(
    st.fixed_dictionaries({style: formats_lists for style in STYLES}),
    st.fixed_dictionaries({style: formats_lists for style in STYLES}),
    st.integers(0, 10 * 24 * 3600),
)
def test_no_live_rendering_may_go_and_every_superseded_one_may(
    old_formats: dict[str, list[OutputFormat]],
    live_formats: dict[str, list[OutputFormat]],
    age_seconds: int,
) -> None:
    earlier = keys.version_id(keys.new_ulid(NOW.timestamp() - 3600), 0)
    current = keys.version_id(keys.new_ulid(NOW.timestamp() - 1800), 0)
    old = multi_format_manifest(COLLECTION, ASSET, earlier, old_formats, NOW - timedelta(days=11))
    live_manifest = multi_format_manifest(
        COLLECTION, ASSET, current, live_formats, NOW - timedelta(hours=1)
    )
    live = Live.of(live_manifest)
    age = timedelta(seconds=age_seconds)

    # Every rendering is listed as live, so the processor's supersession GC names them all.
    assert rendering_keys(live_manifest) <= live_manifest.live_keys()
    assert rendering_keys(old) <= old.live_keys() - live_manifest.live_keys()
    for key in rendering_keys(live_manifest):
        assert check(key, Facts(live=live), last_modified=NOW - age) is Guard.LIVE
        assert select(at(key, age), live, NOW, settings()) is None
    for key in rendering_keys(old):
        verdict = check(key, Facts(live=live), last_modified=NOW - age)
        assert verdict is (None if age >= GRACE else Guard.GRACE)
        assert select(at(key, age), live, NOW, settings()) == (
            "superseded" if age >= GRACE else None
        )


Settings = Callable[..., JanitorSettings]


@pytest.mark.usefixtures("empty_gc_queue")
def test_the_fast_path_removes_every_superseded_rendering_and_no_live_one(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    asset = "IMG_0002.HEIC"
    every: dict[str, list[OutputFormat]] = {
        "large": ["avif", "webp", "jpeg"],
        "thumb": ["avif", "jpeg"],
        "tiny": ["jpeg"],
    }
    old = multi_format_manifest(collection, asset, version_id(), every, datetime.now(UTC))
    new = multi_format_manifest(collection, asset, version_id(), every, datetime.now(UTC))
    for manifest in (old, new):
        layout.put_many(sorted(manifest.live_keys()))
    layout.put(keys.manifest_key(collection, asset), new.to_bytes())
    doomed = sorted(old.live_keys() - new.live_keys())
    assert set(doomed) == old.live_keys()  # every old rendering, not only the first ones

    async def scenario() -> None:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            # A request that also names the live renderings (a bug, or a hostile message).
            await bus.publish("superseded", [*doomed, *sorted(new.live_keys())])
            await wait_for_async("the old renderings to go", lambda: not layout.present(doomed))
            await until("the request to be acknowledged", bus.settled)

    run(scenario())
    assert layout.present(sorted(new.live_keys())) == new.live_keys()
