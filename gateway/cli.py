"""`smpp-gateway run|check-config|hash-key|stats|reload`."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from gateway import config as C
from gateway.errors import ConfigError


def _admin_call(url: str, method: str = "GET") -> int:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - operator-given URL
            print(json.dumps(json.loads(r.read()), indent=2))
            return 0
    except urllib.error.HTTPError as e:
        print(e.read().decode(errors="replace"), file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot reach {url}: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="smpp-gateway")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the gateway in the foreground")
    r.add_argument("--config", default="config/gateway.toml")
    c = sub.add_parser("check-config", help="validate a config file and print it, secrets masked")
    c.add_argument("file")
    h = sub.add_parser("hash-key", help="make an API key (or hash the one given) for [[tenants]]")
    h.add_argument("key", nargs="?")
    for name, help_ in (("stats", "print the running gateway's stats"), ("reload", "ask the running gateway to reload")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--admin", default="http://127.0.0.1:8081")
    a = p.parse_args(argv)

    if a.cmd == "run":
        from gateway.daemon import run

        return run(a.config)
    if a.cmd == "check-config":
        try:
            cfg = C.load(a.file)
        except ConfigError as e:
            print(f"invalid: {e}", file=sys.stderr)
            return 2
        for warning in C.warnings(cfg):
            # valid (a gateway may start so), but a running one refuses to reload into it
            print(f"warning: {warning}", file=sys.stderr)
        print(json.dumps(C.masked(cfg), indent=2))
        return 0
    if a.cmd == "hash-key":
        key = a.key or C.new_api_key()
        if not a.key:
            print(f"api key (give it to the tenant, it is not stored): {key}")
        print(f"api_key_hash = \"{C.hash_api_key(key)}\"")
        return 0
    if a.cmd == "stats":
        return _admin_call(a.admin.rstrip("/") + "/admin/stats")
    if a.cmd == "reload":
        return _admin_call(a.admin.rstrip("/") + "/admin/reload", "POST")
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
