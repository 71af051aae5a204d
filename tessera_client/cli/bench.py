"""`tessera bench`: measure Tessera under load, against the classic design, in one run.

Each scenario runs alone (`tessera bench hot`, `tessera bench flash`, …) or all together
(`tessera bench all`); `--smoke` runs a seconds-long version that checks the suite and the
outcomes, not the speed. Without --db-url a throwaway local stack is started in a temporary
directory, so a benchmark never touches your data.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markdown import Markdown
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tessera_client.bench import SCENARIOS, BenchSettings, run_bench, save_results
from tessera_client.cli import bench_failover
from tessera_client.cli._common import (
    JsonOut,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
)

app = typer.Typer(
    help=(
        "Benchmark Tessera: hot event vs the classic FOR UPDATE design, spread, flash sale, "
        "big waitlist, 2,000 connections through PgBouncer, realtime, abuse. "
        "Example: tessera bench all --smoke"
    ),
    no_args_is_help=True,
)

BenchDbUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        envvar="TESSERA_DB_URL",
        help="PostgreSQL URL of a migrated Tessera database (a role like postgres). "
        "Default: a throwaway local stack in a temporary directory.",
        show_default=False,
    ),
]
Smoke = Annotated[
    bool,
    typer.Option(
        "--smoke",
        envvar="TESSERA_BENCH_SMOKE",
        help="A seconds-long version: checks the suite and the outcomes, not the speed.",
    ),
]
Save = Annotated[
    bool | None,
    typer.Option(
        "--save/--no-save",
        envvar="TESSERA_BENCH_SAVE",
        help="Write JSON and chart to --out-dir and append to --markdown "
        "(default: yes, except with --smoke).",
        show_default=False,
    ),
]
OutDir = Annotated[
    Path | None,
    typer.Option(
        "--out-dir",
        envvar="TESSERA_BENCH_OUT_DIR",
        help="Where results go: JSON, chart and benchmarks.md. Default: Tessera's data folder "
        "(never the repository); `--out-dir docs/benchmarks --markdown docs/benchmarks.md` "
        "records a run in the docs.",
        show_default=False,
    ),
]
MarkdownFile = Annotated[
    Path | None,
    typer.Option(
        "--markdown",
        envvar="TESSERA_BENCH_MARKDOWN",
        help="Markdown file the results table is appended to. Default: OUT_DIR/benchmarks.md.",
        show_default=False,
    ),
]
Clients = Annotated[
    str | None,
    typer.Option(
        "--clients",
        envvar="TESSERA_BENCH_CLIENTS",
        help="Comma-separated concurrent clients (default 1,8,32,128).",
        show_default=False,
    ),
]
Seconds = Annotated[
    float | None,
    typer.Option(
        "--seconds",
        envvar="TESSERA_BENCH_SECONDS",
        help="Measured seconds per phase (default 20).",
        show_default=False,
    ),
]
Warmup = Annotated[
    float | None,
    typer.Option(
        "--warmup",
        envvar="TESSERA_BENCH_WARMUP",
        help="Unmeasured seconds before each phase (default 2).",
        show_default=False,
    ),
]
Ceiling = Annotated[
    bool,
    typer.Option(
        "--ceiling/--no-ceiling",
        envvar="TESSERA_BENCH_CEILING",
        help="Also measure the client ceiling (a call that does nothing).",
    ),
]

INSTALL_BENCH = (
    "pip install 'tessera-client[bench]' (in a checkout: .venv/bin/pip install -e '.[bench]')"
)


def default_out_dir() -> Path:
    """Where results go without --out-dir: Tessera's data folder, outside any checkout."""
    import platformdirs

    return Path(platformdirs.user_data_dir("tessera")) / "bench"


def check_dependencies(scenarios: list[str], saving: bool) -> None:
    """Fail at once, in one line, when something a run will need is missing.

    Raises:
        typer.Exit: matplotlib (the chart) or pgbouncer (the connections scenario) is missing.
    """
    missing: list[str] = []
    if saving:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            missing.append(f"matplotlib, for the chart: {INSTALL_BENCH}")
    if "connections" in scenarios:
        from tessera_client.bench._pgbouncer import PgBouncerError, find_pgbouncer

        try:
            find_pgbouncer()
        except PgBouncerError as exc:
            missing.append(str(exc))
    if missing:
        raise fail("tessera bench needs " + "; and ".join(missing))


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_PASSWORD_IN_CONNINFO = re.compile(r"(password\s*=\s*)('[^']*'|\S+)")


def _parse_clients(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise fail(f"--clients must be comma-separated numbers, got {value!r}") from None
    if not counts or min(counts) < 1:
        raise fail("--clients needs at least one count, each at least 1")
    return counts


def _command_line(command: str) -> str:
    """The command as typed (passwords masked), for the results."""
    argv = sys.argv[1:]
    words = (
        ["tessera", *argv[argv.index("bench") :]]
        if "bench" in argv
        else ["tessera", "bench", command]
    )
    masked = (
        _PASSWORD_IN_CONNINFO.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", word)) for word in words
    )
    return shlex.join(masked)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )


def _run(
    command: str,
    scenarios: list[str],
    settings: BenchSettings,
    *,
    db_url: str | None,
    json_out: bool,
    save: bool | None,
    out_dir: Path | None,
    markdown: Path | None,
) -> None:
    saving = save if save is not None else not settings.smoke
    check_dependencies(scenarios, saving)
    out_dir = out_dir or default_out_dir()
    markdown = markdown or out_dir / "benchmarks.md"
    with _progress(enabled=True) as progress:
        document = asyncio.run(
            run_bench(
                scenarios,
                settings,
                db_url=db_url,
                progress=progress,
                command=_command_line(command),
            )
        )
    saved = save_results(document, out_dir, markdown) if saving else None
    if json_out:
        print_json(document)
    else:
        from tessera_client.bench import render_markdown

        console.print(Markdown(render_markdown(document)))
        if saved is not None:
            console.print(
                f"[green]saved[/] {saved.json}"
                + (f", {saved.chart}" if saved.chart else "")
                + f"; appended to {saved.markdown}"
            )
    if not document["ok"]:
        raise fail("some benchmark checks failed (see the results above)")


def _settings(smoke: bool, **changes: Any) -> BenchSettings:
    base = BenchSettings.for_smoke() if smoke else BenchSettings()
    return base.replace(**changes)


@app.command()
@handle_errors
def hot(
    clients: Clients = None,
    seconds: Seconds = None,
    warmup: Warmup = None,
    ceiling: Ceiling = True,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Hot event: every client books one event; the FOR UPDATE baseline at the same counts.

    Example: tessera bench hot --clients 1,32,128 --seconds 5
    """
    settings = _settings(
        smoke, clients=_parse_clients(clients), seconds=seconds, warmup=warmup, ceiling=ceiling
    )
    _run(
        "hot",
        ["hot"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def pgbench(
    clients: Clients = None,
    seconds: Seconds = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Hot event vs the FOR UPDATE seed design through pgbench (PostgREST-style calls).

    Example: tessera bench pgbench --clients 1,32,128 --seconds 20
    """
    settings = _settings(smoke, clients=_parse_clients(clients), seconds=seconds)
    _run(
        "pgbench",
        ["pgbench"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def openloop(
    clients: Clients = None,
    seconds: Seconds = None,
    connections: Annotated[
        int | None,
        typer.Option("--connections", help="pgbench connections (default 32).", show_default=False),
    ] = None,
    factor: Annotated[
        float | None,
        typer.Option(
            "--factor",
            help="Arrival rate as a multiple of the seed design's best rate (default 1.5).",
            show_default=False,
        ),
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Open loop: bookings arrive at a fixed rate; latency from the scheduled start.

    The rate is --factor times the seed design's best closed-loop rate over --clients
    (measured first, in the same run).

    Example: tessera bench openloop --seconds 20
    """
    settings = _settings(
        smoke,
        clients=_parse_clients(clients),
        seconds=seconds,
        open_loop_clients=connections,
        open_loop_factor=factor,
    )
    _run(
        "openloop",
        ["openloop"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def spread(
    clients: Clients = None,
    seconds: Seconds = None,
    warmup: Warmup = None,
    events: Annotated[
        int | None,
        typer.Option("--events", help="Events to spread over (default 1,000).", show_default=False),
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Spread: the same clients over many events (no contention), to price contention.

    Example: tessera bench spread --clients 32 --seconds 10
    """
    settings = _settings(
        smoke,
        clients=_parse_clients(clients),
        seconds=seconds,
        warmup=warmup,
        spread_events=events,
    )
    _run(
        "spread",
        ["spread"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def flash(
    users: Annotated[
        int | None, typer.Option("--users", help="Users rushing in (default 5,000).")
    ] = None,
    seats: Annotated[int | None, typer.Option("--seats", help="Seats (default 1,000).")] = None,
    cancellations: Annotated[
        int | None, typer.Option("--cancellations", help="Cancellations after (default 500).")
    ] = None,
    connections: Annotated[
        int | None, typer.Option("--connections", help="Pool connections (default 128).")
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Flash sale: users rush the seats at once; then cancellations promote the queue (FIFO).

    Example: tessera bench flash --users 5000 --seats 1000
    """
    settings = _settings(
        smoke,
        flash_users=users,
        flash_seats=seats,
        flash_cancellations=cancellations,
        flash_clients=connections,
    )
    if settings.flash_seats > settings.flash_users:
        raise fail("--seats must not exceed --users")
    _run(
        "flash",
        ["flash"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def waitlist(
    size: Annotated[
        int | None, typer.Option("--size", help="People waiting (default 100,000).")
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", help="Samples per latency (default 1,000).")
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Big waitlist: waitlist_position, joining, and cancel → promotion at 100,000 waiting.

    Example: tessera bench waitlist --size 1000000 --samples 1000
    """
    settings = _settings(smoke, waitlist_size=size, waitlist_samples=samples)
    _run(
        "waitlist",
        ["waitlist"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def connections(
    clients: Annotated[
        int | None, typer.Option("--clients", help="Client connections (default 2,000).")
    ] = None,
    pool_size: Annotated[
        int | None, typer.Option("--pool-size", help="Server connections (default 20).")
    ] = None,
    bookings: Annotated[
        int | None, typer.Option("--bookings", help="Bookings per client (default 3).")
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Connections: thousands of clients through PgBouncer (transaction pooling).

    Example: tessera bench connections --clients 2000 --pool-size 20
    """
    settings = _settings(
        smoke, connections=clients, pgbouncer_pool=pool_size, bookings_per_connection=bookings
    )
    _run(
        "connections",
        ["connections"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def realtime(
    subscribers: Annotated[
        int | None, typer.Option("--subscribers", help="Subscribers (default 100).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Bookings per second (default 100).")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Duration (default 10).")
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Realtime: commit-to-receipt latency while bookings flow.

    Example: tessera bench realtime --subscribers 100 --rate 100
    """
    settings = _settings(
        smoke, realtime_subscribers=subscribers, realtime_rate=rate, realtime_seconds=seconds
    )
    _run(
        "realtime",
        ["realtime"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command()
@handle_errors
def abuse(
    clients: Annotated[
        int | None, typer.Option("--clients", help="Clients booking the hot event (default 32).")
    ] = None,
    attackers: Annotated[
        int | None,
        typer.Option("--attackers", help="Loops making refused claim_offer calls (default 16)."),
    ] = None,
    attack_rate: Annotated[
        float | None,
        typer.Option(
            "--attack-rate",
            min=0,
            help="Refused calls per second each attacker loop offers (default 20; 0: a flood, "
            "as fast as answered).",
        ),
    ] = None,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Measured seconds per phase (default 20).")
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Abuse: a hot event's bookings while attackers make refused calls against it.

    Example: tessera bench abuse --clients 32 --attackers 16 --attack-rate 20
    """
    settings = _settings(
        smoke,
        abuse_clients=clients,
        abuse_attackers=attackers,
        abuse_attack_rate=attack_rate,
        seconds=seconds,
    )
    _run(
        "abuse",
        ["abuse"],
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


@app.command(name="all")
@handle_errors
def all_scenarios(
    clients: Clients = None,
    seconds: Seconds = None,
    warmup: Warmup = None,
    ceiling: Ceiling = True,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            envvar="TESSERA_BENCH_ONLY",
            help=f"Comma-separated subset, in this order: {', '.join(SCENARIOS)}.",
            show_default=False,
        ),
    ] = None,
    smoke: Smoke = False,
    db_url: BenchDbUrl = None,
    save: Save = None,
    out_dir: OutDir = None,
    markdown: MarkdownFile = None,
    json_out: JsonOut = False,
) -> None:
    """Every scenario in one run, on one database: the run docs/benchmarks.md reports.

    Example: tessera bench all
    """
    settings = _settings(
        smoke, clients=_parse_clients(clients), seconds=seconds, warmup=warmup, ceiling=ceiling
    )
    chosen = list(SCENARIOS)
    if only is not None:
        wanted = {name.strip() for name in only.split(",") if name.strip()}
        unknown = wanted - set(SCENARIOS)
        if unknown or not wanted:
            raise fail(f"--only takes scenario names from: {', '.join(SCENARIOS)}")
        chosen = [name for name in SCENARIOS if name in wanted]
    _run(
        "all",
        chosen,
        settings,
        db_url=db_url,
        json_out=json_out,
        save=save,
        out_dir=out_dir,
        markdown=markdown,
    )


# The chaos benchmark builds an HA formation of its own (tessera_client.bench.failover).
app.command("failover")(handle_errors(bench_failover.failover))
