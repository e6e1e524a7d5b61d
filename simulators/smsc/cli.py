"""`smsc-simulator`: run the SMSC simulator, or send it an MO through its control API.

    smsc-simulator [--config FILE] [--host H] [--port N] [--id-format hex|decimal]
                   [--id-width N] [--account SYSTEM_ID:PASSWORD] [--fault NAME=VALUE ...]
                   [--record FILE] [--control-port N] [--log-format pretty|json]
                   [--log-level LEVEL] [--enquire-link-interval S]
    smsc-simulator mo --control-port N --account A --from X --to Y --text T [--host H]

Flags override the config file. SIGINT / SIGTERM: every bind is unbound (bounded wait), then
a summary of the counters is printed on stdout. Exit status 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import urllib.error
import urllib.request

import trio

from gateway import gctune, logs
from simulators.smsc.config import (
    FAULT_NAMES,
    Config,
    ConfigError,
    apply_overrides,
    load_config,
)


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smsc-simulator", description="SMPP 3.4 SMSC simulator")
    p.add_argument("--config", metavar="FILE", help="TOML file (see config/simulator.toml)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="SMPP port (default 2775; 0 = ephemeral)")
    p.add_argument("--id-format", choices=["hex", "decimal"], help="message id format")
    p.add_argument("--id-width", type=int, help="zero-pad message ids to this width")
    p.add_argument(
        "--account", metavar="SYSTEM_ID:PASSWORD", help="add (or re-password) an account"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fault personality for every account; names: " + ", ".join(FAULT_NAMES) + ", seed",
    )
    p.add_argument("--record", metavar="FILE", help="append every received submit_sm as JSON lines")
    p.add_argument(
        "--control-port", type=int, help="HTTP control API port on 127.0.0.1 (0 = ephemeral)"
    )
    p.add_argument("--log-format", choices=["pretty", "json"])
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--enquire-link-interval", type=float, metavar="SECONDS")
    return p


def _mo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smsc-simulator mo", description="inject a mobile-originated message"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--account", required=True)
    p.add_argument("--from", dest="source", required=True, help="handset number (source_addr)")
    p.add_argument(
        "--to", dest="destination", required=True, help="service number (destination_addr)"
    )
    p.add_argument("--text", required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    return p


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config) if args.config else Config()
    return apply_overrides(
        cfg,
        host=args.host,
        port=args.port,
        id_format=args.id_format,
        id_width=args.id_width,
        account=args.account,
        faults=args.fault,
        control_port=args.control_port,
        record=args.record,
        log_format=args.log_format,
        log_level=args.log_level,
        enquire_link_interval=args.enquire_link_interval,
    )


async def _second_signal(signals: object, scope: trio.CancelScope) -> None:
    async for _ in signals:  # type: ignore[attr-defined]
        scope.cancel()  # a second Ctrl-C: stop now, without waiting for unbind_resp
        return


async def serve(cfg: Config) -> str:
    """Run until SIGINT/SIGTERM, unbind gracefully; returns the summary text."""
    from simulators.smsc.server import SmscServer

    server = SmscServer(cfg)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            ctl = (
                f" control=http://{cfg.server.control_host}:{server.control_port}"
                if server.control_port
                else ""
            )
            print(f"smsc-simulator listening on {cfg.server.host}:{server.port}{ctl}", flush=True)
            async for _ in signals:
                break
            nursery.start_soon(_second_signal, signals, nursery.cancel_scope)
            await server.shutdown()
            nursery.cancel_scope.cancel()
    return server.summary()


def run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    try:
        cfg = build_config(args)
    except ConfigError as e:
        print(f"smsc-simulator: config error: {e}", file=sys.stderr)
        return 2
    logs.configure(cfg.server.log_format, cfg.server.log_level)
    gctune.tune()  # the message ring keeps ~10^5 objects alive: fewer, larger collections
    try:
        summary = trio.run(serve, cfg)
    except OSError as e:
        print(f"smsc-simulator: {e}", file=sys.stderr)
        return 1
    print(summary, flush=True)
    return 0


def mo(argv: list[str]) -> int:
    args = _mo_parser().parse_args(argv)
    body = json.dumps(
        {
            "account": args.account,
            "source_addr": args.source,
            "destination_addr": args.destination,
            "text": args.text,
        }
    ).encode()
    req = urllib.request.Request(
        f"http://{args.host}:{args.control_port}/mo",
        data=body,
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            print(resp.read().decode())
            return 0
    except urllib.error.HTTPError as e:
        print(f"smsc-simulator mo: HTTP {e.code}: {e.read().decode()}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"smsc-simulator mo: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "mo":
        return mo(argv[1:])
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
