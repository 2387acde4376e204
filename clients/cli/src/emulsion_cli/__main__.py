"""`emulsion`: ingest a directory of photos, follow jobs, fetch and delete assets.

    emulsion ingest DIR --collection C [--profile P] [--concurrency N]
    emulsion status JOB
    emulsion get COLLECTION ASSET
    emulsion delete COLLECTION ASSET
    emulsion gallery [--count N] [--seed S]

Reads EMULSION_API_URL and EMULSION_TOKEN (`source .emulsion/env` after `make up`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from emulsion_cli import gallery
from emulsion_cli.api import Api, Json
from emulsion_cli.config import load_config
from emulsion_cli.errors import EXIT_INTERRUPTED, EXIT_ITEMS_FAILED, CliError
from emulsion_cli.ingest import Options, Tally, ingest, summary_document, summary_rows

# The API's collection rule, checked here too so a typo fails before anything is uploaded.
COLLECTION_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

out = Console()
err = Console(stderr=True)


def printable(text: str) -> str:
    """File names can hold anything (newlines, escape sequences, undecodable bytes);
    the terminal gets them escaped, never interpreted."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode()
        for c in text
    )


def _print_json(document: object) -> None:
    # Not through rich: it wraps long lines at the console width, which breaks JSON.
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


class RichReporter:
    """Two bars on stderr: upload (files and bytes), then processing (items)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.completed:>.0f}/{task.total:.0f} {task.fields[unit]}"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._upload: TaskID | None = None
        self._process: TaskID | None = None
        self._files = 0
        self._uploaded_files = 0
        self._total_bytes = 0
        self._uploaded_bytes = 0

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, message: str) -> None:
        self.progress.console.print(Text(printable(message), style="dim"))

    def uploads_planned(self, files: int, total_bytes: int) -> None:
        self._files += files
        self._total_bytes += total_bytes
        if self._upload is None:
            self._upload = self.progress.add_task(
                "upload", total=self._files, unit="files", detail=""
            )
        self.progress.update(self._upload, total=self._files, detail=self._bytes_detail())

    def uploaded(self, size: int) -> None:
        self._uploaded_files += 1
        self._uploaded_bytes += size
        if self._upload is not None:
            self.progress.update(
                self._upload, completed=self._uploaded_files, detail=self._bytes_detail()
            )

    def _bytes_detail(self) -> str:
        return f"{self._uploaded_bytes / 1e6:,.1f}/{self._total_bytes / 1e6:,.1f} MB"

    def processing_planned(self, items: int) -> None:
        if items == 0:
            return
        self._process = self.progress.add_task("process", total=items, unit="images", detail="")

    def processed(self, done: int) -> None:
        if self._process is not None:
            self.progress.update(self._process, completed=done)


def print_summary(tally: Tally, console: Console, as_json: bool = False) -> None:
    if as_json:
        _print_json(summary_document(tally))
        return
    table = Table(title="emulsion ingest", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in summary_rows(tally):
        table.add_row(name, Text(printable(value)))
    console.print(table)
    if tally.failures:
        failed = Table(title="failed", show_header=True)
        failed.add_column("file")
        failed.add_column("reason")
        for failure in tally.failures:
            failed.add_row(Text(printable(failure.file)), Text(printable(failure.reason)))
        console.print(failed)


def _run_api(call: Callable[[Api], Awaitable[int]]) -> int:
    config = load_config()

    async def with_api() -> int:
        async with Api(config) as api:
            return await call(api)

    return asyncio.run(with_api())


def cmd_ingest(args: argparse.Namespace) -> int:
    if not COLLECTION_RE.fullmatch(args.collection):
        raise CliError(
            f"collection {args.collection!r}: 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    if not args.directory.is_dir():
        raise CliError(f"{args.directory} is not a directory")
    options = Options(args.directory, args.collection, args.profile, args.concurrency)
    tally = Tally()
    try:
        with RichReporter(err) as reporter:
            _run_api(lambda api: _ingest_and_return(api, options, reporter, tally))
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted[/yellow]: uploaded {tally.uploaded_files} file(s), "
            f"{tally.succeeded} processed so far; jobs already accepted keep running "
            "on the server. Run the same command again to resume."
        )
        print_summary(tally, out, args.json)
        return EXIT_INTERRUPTED
    print_summary(tally, out, args.json)
    if tally.found == 0:
        err.print(f"no images found in {args.directory}", markup=False)
    return EXIT_ITEMS_FAILED if tally.failures else 0


async def _ingest_and_return(
    api: Api, options: Options, reporter: RichReporter, tally: Tally
) -> int:
    await ingest(api, options, reporter, tally)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    async def show(api: Api) -> int:
        status = await api.job(args.job, item_limit=0)
        if args.json:
            _print_json(status)
            return 0
        table = Table(title=f"ingest {status['name']}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key in (
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
        ):
            if status.get(key) is not None:
                table.add_row(key, Text(printable(str(status[key]))))
        out.print(table)
        for failure in status.get("failures") or []:
            out.print(
                f"  failed #{failure['index']} {failure.get('asset') or ''}: "
                f"{failure['reason']} {failure.get('message') or ''}",
                highlight=False,
                markup=False,
            )
        return 0

    return _run_api(show)


def _print_asset(asset: Json) -> None:
    out.print(
        f"{asset['collection']}/{asset['asset']} version {asset['version']}",
        highlight=False,
        markup=False,
    )
    original = asset["original"]
    out.print(
        f"  original  {original['width']}x{original['height']}  {original['url']}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for output in asset["outputs"]:
        out.print(
            f"  {output['style']:<12} {output['width']}x{output['height']}  {output['url']}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def cmd_get(args: argparse.Namespace) -> int:
    async def show(api: Api) -> int:
        asset = await api.asset(args.collection, args.asset)
        if args.json:
            _print_json(asset)
        else:
            _print_asset(asset)
        return 0

    return _run_api(show)


def cmd_delete(args: argparse.Namespace) -> int:
    async def delete(api: Api) -> int:
        deleted = await api.delete_asset(args.collection, args.asset)
        out.print(
            f"deleted {deleted['collection']}/{deleted['asset']} (version {deleted['version']}); "
            f"its {deleted['keys']} object(s) are removed after {deleted['not_before']}",
            highlight=False,
            markup=False,
        )
        return 0

    return _run_api(delete)


def cmd_gallery(args: argparse.Namespace) -> int:
    return gallery.run(args)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="emulsion", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True)

    ingest_parser = commands.add_parser(
        "ingest", help="upload a directory of images and process it"
    )
    ingest_parser.add_argument("directory", type=Path, metavar="DIR")
    ingest_parser.add_argument("--collection", "-c", required=True)
    ingest_parser.add_argument("--profile", "-p", default="default")
    ingest_parser.add_argument("--concurrency", "-j", type=int, default=8, help="parallel uploads")
    ingest_parser.add_argument("--json", action="store_true", help="the summary as JSON")
    ingest_parser.set_defaults(handler=cmd_ingest)

    status_parser = commands.add_parser("status", help="an ingest job's progress")
    status_parser.add_argument("job", metavar="JOB")
    status_parser.add_argument("--json", action="store_true")
    status_parser.set_defaults(handler=cmd_status)

    get_parser = commands.add_parser("get", help="the URLs of an asset's styles")
    get_parser.add_argument("collection", metavar="COLLECTION")
    get_parser.add_argument("asset", metavar="ASSET")
    get_parser.add_argument("--json", action="store_true")
    get_parser.set_defaults(handler=cmd_get)

    delete_parser = commands.add_parser("delete", help="delete an asset (its files go later)")
    delete_parser.add_argument("collection", metavar="COLLECTION")
    delete_parser.add_argument("asset", metavar="ASSET")
    delete_parser.set_defaults(handler=cmd_delete)

    gallery_parser = commands.add_parser("gallery", help="generate (once) the demo gallery")
    gallery.add_arguments(gallery_parser)
    gallery_parser.set_defaults(handler=cmd_gallery)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as error:
        err.print(f"emulsion: {error.message}", highlight=False, markup=False, soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
