"""emulsion: ingest directories of photos, follow jobs, list, fetch and delete assets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any, Final

import shtab
import stamina.instrumentation
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emulsion_cli import gallery
from emulsion_cli.api import Api, Json
from emulsion_cli.config import ConfigFile, Overrides, config_path, load_config
from emulsion_cli.errors import (
    EXIT_CODES_HELP,
    EXIT_EXPIRED,
    EXIT_INTERRUPTED,
    EXIT_ITEMS_FAILED,
    EXIT_OK,
    EXIT_TERMINATED,
    CliError,
    IngestExpired,
    Stopped,
    UsageError,
)
from emulsion_cli.ingest import (
    Options,
    Reporter,
    SilentReporter,
    Tally,
    dry_run,
    follow_job,
    ingest,
    summary_document,
    summary_rows,
)
from emulsion_cli.output import (
    FORMATS,
    Format,
    emit,
    emit_in_stream,
    key_values,
    literal,
    out,
    printable,
)
from emulsion_cli.output import rows_table as _rows_table
from emulsion_cli.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, every_item
from emulsion_cli.patterns import Selection
from emulsion_cli.progress import DEFAULT_INTERVAL_SECONDS, LineReporter, RichReporter
from emulsion_cli.resume import ResumeState

# The API's collection rule, checked here too so a typo fails before anything is uploaded.
COLLECTION_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

err = Console(stderr=True)

ASSET_COLUMNS: Final = ("asset", "state", "version", "committed_at", "job")
JOB_COLUMNS: Final = (
    "name",
    "collection",
    "profile",
    "phase",
    "progress",
    "succeeded",
    "failed",
    "total",
    "created_at",
    "duration",
)
STATUS_KEYS: Final = (
    "phase",
    "collection",
    "profile",
    "progress",
    "succeeded",
    "failed",
    "total",
    "created_at",
    "started_at",
    "completed_at",
    "duration",
)

ROOT_EPILOG: Final = f"""configuration (highest first, per setting):
  1. flags          --api-url, --token-file, --context
  2. environment    EMULSION_API_URL, EMULSION_TOKEN or EMULSION_TOKEN_FILE, EMULSION_CONTEXT
  3. config file    the context named by --context/EMULSION_CONTEXT, else current-context,
                    in $EMULSION_CONFIG or $XDG_CONFIG_HOME/emulsion/config.yaml
                    (~/.config/emulsion/config.yaml); see `emulsion config --help`
  After `make up`: source .emulsion/env

examples:
  emulsion ingest ~/Pictures/wedding -c wedding-2026
  emulsion ls wedding-2026 -o json
  emulsion status ingest-01j9z... --watch
  emulsion completion bash > ~/.local/share/bash-completion/completions/emulsion

{EXIT_CODES_HELP}
"""


def _version() -> str:
    try:
        return version("emulsion-cli")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "unknown"


# -- running against the API ---------------------------------------------------------------


def _overrides(args: argparse.Namespace) -> Overrides:
    return Overrides(
        api_url=getattr(args, "api_url", None),
        token_file=getattr(args, "token_file", None),
        context=getattr(args, "context", None),
    )


def _run_api(args: argparse.Namespace, call: Callable[[Api], Awaitable[int]]) -> int:
    """Run `call` with an Api; SIGTERM cancels it like Ctrl-C does (then Stopped is raised),
    so uploads stop, the resume state is saved and the connections are closed."""
    config = load_config(overrides=_overrides(args))

    async def with_api() -> int:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        terminated = False

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            if main is not None:
                main.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            async with Api(config) as api:
                return await call(api)
        except asyncio.CancelledError:
            if terminated:
                raise Stopped from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(with_api())


def _fmt(args: argparse.Namespace) -> Format:
    fmt: Format = getattr(args, "output", "table")
    return fmt


# -- ingest --------------------------------------------------------------------------------


def print_summary(tally: Tally, fmt: Format) -> None:
    def table() -> None:
        summary = Table(title="emulsion ingest", show_header=False)
        summary.add_column(style="bold")
        summary.add_column(justify="right")
        for name, value in summary_rows(tally):
            summary.add_row(name, Text(printable(value)))
        out.print(summary)
        if tally.failures:
            failed = Table(title="failed", show_header=True)
            failed.add_column("file")
            failed.add_column("reason")
            for failure in tally.failures:
                failed.add_row(Text(printable(failure.file)), Text(printable(failure.reason)))
            out.print(failed)

    emit(summary_document(tally), fmt, table)


def _selection(args: argparse.Namespace) -> Selection:
    selection = Selection(tuple(args.include or ()), tuple(args.exclude or ()))
    try:
        selection.selects("x")
    except Exception as error:  # re.error: a malformed character class
        raise UsageError(f"bad --include/--exclude pattern: {error}") from None
    return selection


def _ingest_options(args: argparse.Namespace) -> Options:
    if not COLLECTION_RE.fullmatch(args.collection):
        raise UsageError(
            f"collection {args.collection!r}: 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not args.directory.is_dir():
        raise UsageError(f"{args.directory} is not a directory")
    return Options(
        args.directory,
        args.collection,
        args.profile,
        args.concurrency,
        selection=_selection(args),
        wait=not args.no_wait,
    )


@contextlib.contextmanager
def _reporter(args: argparse.Namespace) -> Iterator[Reporter]:
    mode = args.progress
    if mode == "auto":
        mode = "bars" if err.is_terminal else "lines"
    if mode == "bars":
        with RichReporter(err) as bars:
            yield bars
    elif mode == "lines":
        with LineReporter(sys.stderr, args.progress_interval) as lines:
            yield lines
    else:
        yield SilentReporter()


def cmd_ingest(args: argparse.Namespace) -> int:
    options = _ingest_options(args)
    fmt = _fmt(args)
    if args.dry_run:
        return _dry_run(args, options, fmt)
    tally = Tally()
    try:
        with _reporter(args) as reporter:
            _run_api(args, lambda api: _ingest_and_return(api, options, reporter, tally))
    except (KeyboardInterrupt, Stopped) as stop:
        _say_how_to_resume(tally, args)
        print_summary(tally, fmt)
        return EXIT_TERMINATED if isinstance(stop, Stopped) else EXIT_INTERRUPTED
    print_summary(tally, fmt)
    if tally.found == 0:
        err.print(f"no images found in {args.directory}", markup=False)
    if not options.wait and tally.jobs:
        # One job per upload batch: a large gallery is several; a rerun follows them all.
        how = (
            f"`emulsion status {tally.jobs[0]} --watch`"
            if len(tally.jobs) == 1
            else "`emulsion status JOB --watch` for each, or all of them by running the "
            "same command without --no-wait"
        )
        literal(
            err,
            f"handed {tally.items} file(s) to {', '.join(tally.jobs)}; follow with {how}",
            soft_wrap=True,
        )
    return EXIT_ITEMS_FAILED if tally.failures else EXIT_OK


def _say_how_to_resume(tally: Tally, args: argparse.Namespace) -> None:
    jobs = f" ({', '.join(tally.jobs)})" if tally.jobs else ""
    literal(
        err,
        f"interrupted: uploaded {tally.uploaded_files} file(s) "
        f"({tally.uploaded_bytes / 1e6:.1f} MB), {tally.succeeded} processed so far; "
        f"jobs already accepted{jobs} keep running on the server. "
        f"Run the same command again to resume: {args.command_line}",
        soft_wrap=True,
    )


async def _ingest_and_return(api: Api, options: Options, reporter: Reporter, tally: Tally) -> int:
    await ingest(api, options, reporter, tally)
    return 0


def _dry_run(args: argparse.Namespace, options: Options, fmt: Format) -> int:
    try:
        config = load_config(overrides=_overrides(args))
        state: ResumeState | None = ResumeState.for_collection(config.api_url, options.collection)
    except UsageError:
        state = None  # no API configured: no resume state to consult; nothing is sent anyway
    document = dry_run(options, state)

    def table() -> None:
        out.print(_rows_table(document["files"], ("file", "asset", "bytes", "action"), "dry run"))
        for skipped in document["not_images"]:
            literal(
                out,
                f"skipped {printable(skipped['file'])}: {skipped['reason']}",
            )
        literal(
            out,
            f"{document['found']} image(s) found, {document['excluded']} excluded; would upload "
            f"{document['to_upload']} ({document['upload_bytes'] / 1e6:.1f} MB) to "
            f"{options.collection}; nothing was sent",
        )

    emit(document, fmt, table)
    return EXIT_OK


# -- jobs, assets --------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    fmt = _fmt(args)

    def show(status: Json) -> None:
        out.print(key_values(status, STATUS_KEYS, f"ingest {printable(str(status['name']))}"))
        for failure in status.get("failures") or []:
            literal(
                out,
                f"  failed #{failure['index']} {failure.get('asset') or ''}: "
                f"{failure['reason']} {failure.get('message') or ''}",
            )

    async def once(api: Api) -> int:
        try:
            status = await api.job(args.job, item_limit=0)
        except IngestExpired as expired:
            raise await _with_every_asset(api, args.job, expired) from None
        emit(status, fmt, lambda: show(status))
        return EXIT_OK

    def line(summary: Json) -> None:
        literal(
            out,
            f"{summary.get('phase')}  {summary.get('progress')}  succeeded {summary['succeeded']}"
            f"  failed {summary['failed']}  of {summary['total']}",
        )

    async def watch(api: Api) -> int:
        try:
            final = await follow_job(
                api,
                args.job,
                on_progress=lambda done: None,
                on_status=lambda summary: emit_in_stream(summary, fmt, lambda: line(summary)),
            )
        except IngestExpired as expired:
            raise await _with_every_asset(api, args.job, expired) from None
        return EXIT_ITEMS_FAILED if int(final.get("failed") or 0) else EXIT_OK

    return _run_api(args, watch if args.watch else once)


FAILURE_COLUMNS: Final = ("index", "asset", "reason", "message")
# Assets of an expired ingest asked for per request (the API pages them like items).
EXPIRED_ASSETS_PAGE: Final = 1000


async def _with_every_asset(api: Api, name: str, first: IngestExpired) -> IngestExpired:
    """The expired ingest with every asset it made, read page after page."""
    assets: list[Json] = []
    last = first
    while True:
        try:
            await api.job(name, item_offset=len(assets), item_limit=EXPIRED_ASSETS_PAGE)
        except IngestExpired as page:
            last = page
        else:  # there again (a name reused with kubectl): what was known first stands
            return first
        batch = last.ingest.get("assets") or []
        assets += batch
        if len(batch) < EXPIRED_ASSETS_PAGE or len(assets) >= int(
            last.ingest.get("assets_total") or 0
        ):
            break
    return IngestExpired(last.message, {**last.ingest, "asset_offset": 0, "assets": assets})


def cmd_failures(args: argparse.Namespace) -> int:
    return _list(
        args,
        lambda api, cursor, n: api.failures_page(args.job, cursor, n),
        FAILURE_COLUMNS,
    )


def print_expired(error: IngestExpired, args: argparse.Namespace) -> int:
    """An expired ingest, plainly: how it ended, the assets it made, where its failures are."""
    ingest = error.ingest
    if getattr(args, "output", None) in ("json", "yaml"):
        emit(ingest, args.output, lambda: None)
        return EXIT_EXPIRED
    name = printable(str(ingest.get("name") or ""))
    phase = ingest.get("phase")
    ended = f"finished {phase}" if phase else "was removed before it finished"
    lines = [
        f"ingest {name} {ended} and has expired: it is no longer in the cluster.",
        f"  collection  {printable(str(ingest.get('collection') or ''))}",
    ]
    if ingest.get("total") is not None:
        lines.append(
            f"  items       {ingest.get('total')}: succeeded {ingest.get('succeeded')}, "
            f"failed {ingest.get('failed')}"
        )
    for key in ("started_at", "completed_at"):
        if ingest.get(key):
            lines.append(f"  {key.replace('_', ' '):<11} {ingest[key]}")
    reasons = ingest.get("reasons") or {}
    if reasons:
        counted = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        lines.append(f"  reasons     {counted}")
    assets = ingest.get("assets") or []
    total = int(ingest.get("assets_total") or 0)
    shown = "" if total == len(assets) else f" ({len(assets)} shown)"
    lines.append(f"  assets made {total}{shown}")
    lines += [f"    {printable(str(asset.get('asset')))}" for asset in assets]
    if ingest.get("failed"):
        lines.append(f"  every failure: emulsion failures {name}")
    for line in lines:
        literal(out, line, soft_wrap=True)
    return EXIT_EXPIRED


def _page_args(args: argparse.Namespace) -> tuple[int, int | None]:
    if not 1 <= args.page_size <= MAX_PAGE_SIZE:
        raise UsageError(f"--page-size must be between 1 and {MAX_PAGE_SIZE}")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    return args.page_size, args.limit


def cmd_ls(args: argparse.Namespace) -> int:
    return _list(
        args,
        lambda api, cursor, n: api.assets_page(args.collection, cursor, n, args.state),
        ASSET_COLUMNS,
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    return _list(
        args, lambda api, cursor, n: api.jobs_page(args.collection, cursor, n), JOB_COLUMNS
    )


# One page of a listing, asked of the API: (api, cursor, page size).
PageOf = Callable[[Api, str | None, int], Awaitable[Page]]


def _list(args: argparse.Namespace, page: PageOf, columns: tuple[str, ...]) -> int:
    """Every item of a paged listing (up to --limit), as a table or in --output's format."""
    page_size, limit = _page_args(args)
    fmt = _fmt(args)

    async def listing(api: Api) -> int:
        items = [
            item
            async for item in every_item(lambda cursor, n: page(api, cursor, n), page_size, limit)
        ]
        emit(items, fmt, lambda: out.print(_rows_table(items, columns)))
        return EXIT_OK

    return _run_api(args, listing)


def _print_asset(asset: Json) -> None:
    making = asset.get("processing_ingest")
    if "version" not in asset:  # its first version is being made (202)
        literal(out, f"{asset['collection']}/{asset['asset']} is being made by ingest {making}")
        return
    literal(
        out,
        f"{asset['collection']}/{asset['asset']} version {asset['version']}"
        + (f" (a new version is being made by ingest {making})" if making else ""),
    )
    original = asset["original"]
    literal(
        out,
        f"  original  {original['width']}x{original['height']}  {original['url']}",
        soft_wrap=True,
    )
    for line in _described(asset):
        literal(out, f"  {line}", soft_wrap=True)
    for output in asset["outputs"]:
        literal(
            out,
            f"  {output['style']:<12} {output['width']}x{output['height']}  {output['url']}",
            soft_wrap=True,
        )
        # A style with several formats: each rendering on its own line, under its style.
        for rendering in (output.get("renderings") or [])[1:]:
            literal(
                out,
                f"  {'':<12} {rendering['format']:<9}  {rendering['url']}",
                soft_wrap=True,
            )


def _described(asset: Json) -> list[str]:
    """What the API says of the photo itself (an older API says none of it): the name it was
    uploaded as and its checksum, then when and with what it was taken."""
    lines = []
    original = asset["original"]
    if original.get("sha256"):
        lines.append(f"{'file':<12} {original['filename']}  sha256 {original['sha256']}")
    metadata = asset.get("metadata") or {}
    exposure = metadata.get("exposure_time")
    parts = [
        metadata.get("taken_at"),
        " ".join(filter(None, (metadata.get("camera_make"), metadata.get("camera_model")))),
        metadata.get("lens"),
        f"f/{metadata['aperture']:g}" if metadata.get("aperture") else None,
        (f"1/{round(1 / exposure)} s" if exposure < 1 else f"{exposure:g} s") if exposure else None,
        f"ISO {metadata['iso']}" if metadata.get("iso") else None,
        f"{metadata['focal_length']:g} mm" if metadata.get("focal_length") else None,
        f"by {metadata['artist']}" if metadata.get("artist") else None,
    ]
    taken = "  ".join(part for part in parts if part)
    if taken:
        lines.append(f"{'taken':<12} {taken}")
    placeholder = asset.get("placeholder")
    if placeholder:
        lines.append(
            f"{'placeholder':<12} {placeholder['dominant_color']}  {placeholder['thumbhash']}"
        )
    return lines


def cmd_get(args: argparse.Namespace) -> int:
    async def show(api: Api) -> int:
        asset = await api.asset(args.collection, args.asset)
        emit(asset, _fmt(args), lambda: _print_asset(asset))
        return EXIT_OK

    return _run_api(args, show)


def cmd_delete(args: argparse.Namespace) -> int:
    async def delete(api: Api) -> int:
        deleted = await api.delete_asset(args.collection, args.asset)
        emit(
            deleted,
            _fmt(args),
            lambda: literal(
                out,
                f"deleted {deleted['collection']}/{deleted['asset']} "
                f"(version {deleted['version']}); its {deleted['keys']} object(s) are removed "
                f"after {deleted['not_before']}",
            ),
        )
        return EXIT_OK

    return _run_api(args, delete)


def cmd_cancel(args: argparse.Namespace) -> int:
    async def cancel(api: Api) -> int:
        answer = await api.cancel(args.job)
        emit(answer, _fmt(args), lambda: literal(out, cancel_line(answer)))
        return EXIT_OK

    return _run_api(args, cancel)


def cancel_line(answer: Json) -> str:
    """One line for people: what was already done, what the cancel stops."""
    name = answer["name"]
    done = f"{answer['succeeded']} succeeded, {answer['failed']} failed"
    if answer.get("cancelled_at") is None:
        return f"{name} had already finished ({done}); nothing to cancel"
    if answer["finished"]:
        return f"{name} was cancelled: {done}, {answer['cancelled']} cancelled"
    return (
        f"cancelling {name}: {done} already; {answer['cancelled']} cancelled, "
        f"{answer['stopping']} stopping (not started: cancelled; being made: finish or stop)"
    )


def cmd_retry(args: argparse.Namespace) -> int:
    async def retry(api: Api) -> int:
        answer = await api.retry(args.job, args.include_deterministic)
        emit(answer, _fmt(args), lambda: literal(out, retry_text(answer)))
        return EXIT_OK

    return _run_api(args, retry)


def retry_text(answer: Json) -> str:
    skipped = answer.get("skipped") or []
    lines = []
    if answer.get("name"):
        lines.append(
            f"retrying {len(answer['items'])} item(s) of {answer['retry_of']} "
            f"as {answer['name']} (emulsion status {answer['name']})"
        )
    else:
        lines.append(f"nothing of {answer['retry_of']} to retry")
    for entry in skipped:
        why = (
            "its upload is gone: upload it again"
            if entry["skipped"] == "upload_gone"
            else "the image itself failed: --include-deterministic to retry it"
        )
        lines.append(f"  not retried: {entry.get('asset')} ({entry['reason']}): {why}")
    return "\n".join(lines)


def cmd_gallery(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    params = gallery.GalleryParams(count=args.count, seed=args.seed)
    if not (gallery.gallery_dir(params, args.root) / gallery.MARKER).exists():
        err.print(f"generating {params.count} demo images (once; then cached)")
    directory = gallery.ensure_gallery(params, args.root)
    # Plain output is the directory alone, for scripts (`make run`).
    emit({"directory": str(directory)}, _fmt(args), lambda: print(directory))
    return EXIT_OK


# -- config, completion --------------------------------------------------------------------


def _contexts_document(file: ConfigFile) -> Json:
    return {
        "path": str(file.path),
        "current-context": file.current_context,
        "contexts": {name: c.document() for name, c in sorted(file.contexts.items())},
    }


def cmd_get_contexts(args: argparse.Namespace) -> int:
    file = ConfigFile.load(config_path())

    def table() -> None:
        rows = [
            {
                "current": "*" if name == file.current_context else "",
                "name": name,
                "api_url": context.api_url,
                "token_file": context.token_file,
            }
            for name, context in sorted(file.contexts.items())
        ]
        out.print(_rows_table(rows, ("current", "name", "api_url", "token_file")))

    emit(_contexts_document(file), _fmt(args), table)
    return EXIT_OK


def cmd_current_context(args: argparse.Namespace) -> int:
    file = ConfigFile.load(config_path())
    if file.current_context is None:
        raise UsageError(f"no current-context in {file.path}; set one with `config use-context`")
    emit(
        {"current-context": file.current_context},
        _fmt(args),
        lambda: print(file.current_context),
    )
    return EXIT_OK


def cmd_use_context(args: argparse.Namespace) -> int:
    file = ConfigFile.load(config_path())
    file.use_context(args.name)
    file.save()
    emit(
        {"current-context": args.name},
        _fmt(args),
        lambda: literal(err, f"switched to context {args.name!r}"),
    )
    return EXIT_OK


def cmd_set_context(args: argparse.Namespace) -> int:
    file = ConfigFile.load(config_path())
    context = file.set_context(args.name, args.context_api_url, args.context_token_file)
    if args.use or file.current_context is None:
        file.current_context = args.name
    file.save()
    emit(
        {"name": args.name, **context.document()},
        _fmt(args),
        lambda: literal(
            err,
            f"context {args.name!r} saved in {file.path}"
            + (" (current)" if file.current_context == args.name else ""),
        ),
    )
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(shtab.complete(parser(), shell=args.shell))
    return EXIT_OK


# -- the parser ----------------------------------------------------------------------------


class _Help(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    """On the root and on every command that talks to the API, so they go either side of
    the command name. SUPPRESS: a command's parser must not reset what the root parsed."""
    group = parser.add_argument_group("connection (overrides environment and config file)")
    group.add_argument(
        "--api-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the API's base URL, e.g. http://127.0.0.1:8000 (else EMULSION_API_URL)",
    )
    group.add_argument(
        "--token-file",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="a file holding the bearer token (else EMULSION_TOKEN / EMULSION_TOKEN_FILE)",
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    group.add_argument(
        "--context",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="the config file's context to use (else EMULSION_CONTEXT, else current-context)",
    )


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="table",
        help="output format: table for people (default), json or yaml for programs",
    )
    # The old spelling of `-o json`, kept for scripts written against it.
    parser.add_argument(
        "--json", dest="output", action="store_const", const="json", help=argparse.SUPPRESS
    )


def _command(
    commands: Any,
    name: str,
    summary: str,
    examples: str,
    *,
    api: bool = True,
    output: bool = True,
    description: str | None = None,
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description or summary,
        epilog=f"examples:\n{examples}\n\n{EXIT_CODES_HELP}",
        formatter_class=_Help,
    )
    if output:
        _output_flag(command)
    if api:
        _connection_flags(command)
    return command


def _paging_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="list at most N (default: all, page after page)",
    )
    command.add_argument(
        "--page-size",
        type=int,
        default=DEFAULT_PAGE_SIZE,
        metavar="N",
        help=f"items per request, 1-{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})",
    )


def _add_ingest(commands: Any) -> None:
    command = _command(
        commands,
        "ingest",
        "upload a directory of images and process it",
        """  emulsion ingest ~/Pictures/wedding -c wedding-2026
  emulsion ingest photos -c shop --include '*.jpg' --exclude 'raw/**' --dry-run
  emulsion ingest photos -c shop --no-wait -o json | jq -r '.jobs[]'
  emulsion ingest photos -c shop --progress lines --progress-interval 10   # in CI""",
        description="""Upload a directory of images straight to the object store, ingest them, and
follow the jobs to the end. Re-running the same command after an interruption uploads
nothing twice (the resume state lives under ~/.cache/emulsion/ingest).

Patterns (--include/--exclude) are globs on the path relative to DIR: without a '/'
they match the file name at any depth ('*.jpg'); with one, the whole path ('raw/**',
'2024/**/*.png'); '**' is any number of directories. A file is taken when it matches an
include (or none is given) and no exclude.""",
    )
    command.add_argument(
        "directory", type=Path, metavar="DIR", help="the directory to ingest (walked recursively)"
    ).complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    command.add_argument(
        "--collection",
        "-c",
        required=True,
        help="the collection to ingest into, e.g. wedding-2026 (letters, digits, . _ -)",
    )
    command.add_argument(
        "--profile", "-p", default="default", help="the processing profile (default: default)"
    )
    command.add_argument(
        "--concurrency", "-j", type=int, default=8, metavar="N", help="parallel uploads (default 8)"
    )
    command.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only files matching GLOB, e.g. '*.jpg' (repeatable)",
    )
    command.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave out files matching GLOB, e.g. 'raw/**' (repeatable; wins over --include)",
    )
    command.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be uploaded and ingested; send nothing",
    )
    command.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the API has accepted the files, with the job names",
    )
    command.add_argument(
        "--progress",
        choices=("auto", "bars", "lines", "none"),
        default="auto",
        help="bars on a terminal, plain lines otherwise (auto, the default), or none",
    )
    command.add_argument(
        "--progress-interval",
        type=float,
        default=DEFAULT_INTERVAL_SECONDS,
        metavar="SECONDS",
        help=f"seconds between progress lines (default {DEFAULT_INTERVAL_SECONDS:g})",
    )
    command.set_defaults(handler=cmd_ingest)


def _add_config(commands: Any) -> None:
    config = commands.add_parser(
        "config",
        help="named contexts (API URL + token file) in the config file",
        description=f"""Named contexts in the config file, like kubeconfig contexts:

  current-context: local
  contexts:
    local:
      api-url: http://127.0.0.1:8000
      token-file: ~/src/emulsion/.emulsion/token

The file is $EMULSION_CONFIG, else $XDG_CONFIG_HOME/emulsion/config.yaml
(~/.config/emulsion/config.yaml); now {config_path()}. A relative token-file is relative
to the file's directory. Flags and environment variables override it.""",
        epilog="""examples:
  emulsion config set-context local --api-url http://127.0.0.1:8000 --token-file .emulsion/token
  emulsion config set-context prod --api-url https://emulsion.example.com --token-file ~/.prod-token
  emulsion config use-context prod
  emulsion config get-contexts""",
        formatter_class=_Help,
    )
    actions = config.add_subparsers(
        dest="config_command",
        required=True,
        metavar="ACTION",
        help="`emulsion config ACTION --help` for its options",
    )
    get = _command(
        actions, "get-contexts", "list the contexts", "  emulsion config get-contexts", api=False
    )
    get.set_defaults(handler=cmd_get_contexts)
    current = _command(
        actions,
        "current-context",
        "print the current context's name",
        "  emulsion config current-context",
        api=False,
    )
    current.set_defaults(handler=cmd_current_context)
    use = _command(
        actions,
        "use-context",
        "make NAME the current context",
        "  emulsion config use-context prod",
        api=False,
    )
    use.add_argument("name", metavar="NAME", help="an existing context's name")
    use.set_defaults(handler=cmd_use_context)
    set_context = _command(
        actions,
        "set-context",
        "create or update context NAME (settings not given are kept)",
        "  emulsion config set-context prod --api-url https://emulsion.example.com "
        "--token-file ~/.prod-token --use",
        api=False,
    )
    set_context.add_argument("name", metavar="NAME", help="the context's name, e.g. prod")
    set_context.add_argument(
        "--api-url", dest="context_api_url", metavar="URL", help="the API's base URL"
    )
    set_context.add_argument(
        "--token-file",
        dest="context_token_file",
        metavar="PATH",
        help="the file holding the token (kept as written; '~' and relative paths allowed)",
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    set_context.add_argument("--use", action="store_true", help="also make it the current context")
    set_context.set_defaults(handler=cmd_set_context)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="emulsion", description=__doc__, epilog=ROOT_EPILOG, formatter_class=_Help
    )
    root.add_argument("--version", action="version", version=f"emulsion {_version()}")
    _connection_flags(root)
    commands = root.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do; `emulsion COMMAND --help` for its options and examples",
    )

    _add_ingest(commands)

    status = _command(
        commands,
        "status",
        "an ingest job's progress (--watch: follow it to the end)",
        """  emulsion status ingest-01j9z...
  emulsion status ingest-01j9z... --watch -o json   # one JSON line per change""",
    )
    status.add_argument(
        "job", metavar="JOB", help="the job's name, as `ingest` or `jobs` prints it"
    )
    status.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="print every change until the job ends; exit 1 if items failed",
    )
    status.set_defaults(handler=cmd_status)

    failures = _command(
        commands,
        "failures",
        "every failed item of an ingest job, with its reason and whole message",
        """  emulsion failures ingest-01j9z...
  emulsion failures ingest-01j9z... -o json | jq -r '.[] | select(.reason=="NotAnImage").asset'""",
    )
    failures.add_argument(
        "job", metavar="JOB", help="the job's name, as `ingest` or `jobs` prints it"
    )
    _paging_flags(failures)
    failures.set_defaults(handler=cmd_failures)

    ls = _command(
        commands,
        "ls",
        "list a collection's assets, newest first",
        """  emulsion ls wedding-2026
  emulsion ls wedding-2026 --limit 20 -o json | jq -r '.[].asset'""",
    )
    ls.add_argument("collection", metavar="COLLECTION", help="the collection, e.g. wedding-2026")
    ls.add_argument(
        "--state", metavar="STATE", help="only assets in this state (as the API names it)"
    )
    _paging_flags(ls)
    ls.set_defaults(handler=cmd_ls)

    jobs = _command(
        commands,
        "jobs",
        "list ingest jobs, in the order the API lists them (oldest first)",
        """  emulsion jobs
  emulsion jobs --collection wedding-2026 -o yaml""",
    )
    jobs.add_argument(
        "--collection", "-c", metavar="COLLECTION", help="only this collection's jobs"
    )
    _paging_flags(jobs)
    jobs.set_defaults(handler=cmd_jobs)

    get = _command(
        commands,
        "get",
        "an asset's original and styles, with download URLs",
        """  emulsion get wedding-2026 IMG_0001.jpg
  emulsion get wedding-2026 IMG_0001.jpg -o json | jq -r '.outputs[].url'""",
    )
    get.add_argument("collection", metavar="COLLECTION", help="the collection")
    get.add_argument("asset", metavar="ASSET", help="the asset's name (the file's name)")
    get.set_defaults(handler=cmd_get)

    delete = _command(
        commands,
        "delete",
        "delete an asset (its files go after the grace period)",
        "  emulsion delete wedding-2026 IMG_0001.jpg",
    )
    delete.add_argument("collection", metavar="COLLECTION", help="the collection")
    delete.add_argument("asset", metavar="ASSET", help="the asset's name")
    delete.set_defaults(handler=cmd_delete)

    cancel = _command(
        commands,
        "cancel",
        "cancel an ingest job: items not started are not made, items being made finish "
        "or stop; the job is kept, with every item's outcome",
        """  emulsion cancel 01jdq3g2m4p8r6t0v2x4z6b8d0
  emulsion cancel 01jdq3g2m4p8r6t0v2x4z6b8d0 -o json""",
    )
    cancel.add_argument(
        "job", metavar="JOB", help="the job's name, as `ingest` or `jobs` prints it"
    )
    cancel.set_defaults(handler=cmd_cancel)

    retry = _command(
        commands,
        "retry",
        "re-run the failed items of a finished ingest job whose uploads still exist, as a new job",
        """  emulsion retry 01jdq3g2m4p8r6t0v2x4z6b8d0
  emulsion retry 01jdq3g2m4p8r6t0v2x4z6b8d0 --include-deterministic""",
    )
    retry.add_argument("job", metavar="JOB", help="the job's name, as `ingest` or `jobs` prints it")
    retry.add_argument(
        "--include-deterministic",
        action="store_true",
        help="also retry items whose image failed (NotAnImage, Truncated...), which fail "
        "again unless the processors changed",
    )
    retry.set_defaults(handler=cmd_retry)

    _add_config(commands)

    completion = _command(
        commands,
        "completion",
        "print a shell completion script",
        """  emulsion completion bash > ~/.local/share/bash-completion/completions/emulsion
  emulsion completion zsh > "${fpath[1]}/_emulsion"
  emulsion completion fish > ~/.config/fish/completions/emulsion.fish""",
        api=False,
        output=False,
    )
    completion.add_argument(
        "shell", choices=("bash", "zsh", "fish", "tcsh"), help="the shell to complete for"
    )
    completion.set_defaults(handler=cmd_completion)

    gallery_command = _command(
        commands,
        "gallery",
        "generate (once) the demo gallery and print its directory",
        """  emulsion gallery --count 40
  emulsion ingest "$(emulsion gallery)" -c demo""",
        api=False,
    )
    gallery.add_arguments(gallery_command)
    gallery_command.set_defaults(handler=cmd_gallery)
    return root


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["emulsion", *argv])
    handler: Callable[[argparse.Namespace], int] = args.handler
    # Outside an event loop SIGTERM stops like Ctrl-C; inside one, `_run_api` cancels.
    signal.signal(signal.SIGTERM, _raise_stopped)
    # stamina logs each scheduled retry as a warning on stderr; the CLI's contract there is
    # progress and one line per error.
    stamina.instrumentation.set_on_retry_hooks([])
    try:
        return handler(args)
    except IngestExpired as error:
        # Not a failure to report but an answer: what is still known, on stdout.
        return print_expired(error, args)
    except CliError as error:
        literal(err, f"emulsion: {error.message}", soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except Stopped:
        err.print("stopped (SIGTERM)")
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
