"""``sms-worker callbacks setup --url https://...``: point OVH's callbacks at ``sms-worker inbound``.

Sets, through the OVH API, on the account (``PUT /sms/{sn}``): ``callBack`` (delivery reports),
``stopCallBack`` (STOPs) and ``smsResponse`` (replies, ``responseType`` cgi), and on each API user
(``PUT /sms/{sn}/users/{login}``, which has no ``smsResponse``): ``callBack`` and
``stopCallBack``. The URLs are ``<url>/ovh/<token>/delivery``, ``.../reply?service=<sn>`` and
``.../stop?service=<sn>``; the token comes from ``SMS_WORKER_INBOUND_TOKEN`` (never from the
command line, where shells and process lists keep it) and is masked in what is printed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from typing import Any
from urllib.parse import urlsplit

from worker.cli.common import check_production_config, load_settings, print_table, redis_for
from worker.cli.inbound import check_token
from worker.errors import ConfigurationError, GatewayError

#: Writable fields of OVH's ``sms.Response`` kept as they are when the cgi URL is set.
RESPONSE_FIELDS = ("cgiUrl", "responseType", "text", "trackingDefaultSmsSender", "trackingOptions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    setup = actions.add_parser("setup", help="set callBack, stopCallBack and smsResponse on the account and API users")
    setup.add_argument("--url", required=True, help="public base URL of sms-worker inbound (https://...)")
    setup.add_argument("--service", help="OVH SMS account (default SMS_WORKER_SERVICE_NAME)")
    setup.add_argument("--users", help="comma-separated API user logins (default: every user of the account)")
    setup.add_argument("--no-users", action="store_true", help="set the account's callbacks only")
    setup.add_argument("--json", action="store_true", help="print JSON instead of a table")


def base_url(url: str) -> str:
    """The service's base URL: https, or http to this machine (the sandbox, tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigurationError(f"--url must be an https:// URL (http only to this machine), got {url!r}")
    if parts.query or parts.fragment or not host:
        raise ConfigurationError("--url is the service's base URL, without a query or a fragment")
    return url.rstrip("/")


def run(args: argparse.Namespace) -> int:
    from worker.app import consumer_key_id
    from worker.ovhcloud.background_calls import BackgroundCalls
    from worker.ovhcloud.client import make_client
    from worker.ovhcloud.gateway import OvhGateway
    from worker.ovhcloud.rate_limit import RateLimiter

    settings = load_settings()
    token = check_token(settings)
    check_production_config(settings, "callbacks setup")
    service = args.service or settings.service_name
    if not service:
        raise ConfigurationError("no SMS account: give --service or set SMS_WORKER_SERVICE_NAME")
    base = base_url(args.url)
    urls = {
        "callBack": f"{base}/ovh/{token}/delivery",
        "stopCallBack": f"{base}/ovh/{token}/stop?service={service}",
        "cgiUrl": f"{base}/ovh/{token}/reply?service={service}",
    }

    def factory() -> Any:
        return make_client(settings.ovh_endpoint, timeout=(settings.ovh_connect_timeout_s, settings.ovh_read_timeout_s))

    limiter = RateLimiter(
        redis_for(settings, "callbacks setup"),
        key=consumer_key_id(settings.ovh_endpoint, factory()),
        rate_per_s=settings.rate_limit,
        burst=settings.rate_limit_burst,
        headroom=settings.rate_limit_headroom,
    )
    calls = BackgroundCalls(OvhGateway(factory), limiter)
    done: list[dict[str, str]] = []
    try:
        account = calls.get(f"/sms/{service}")
        response = {k: v for k, v in (account.get("smsResponse") or {}).items() if k in RESPONSE_FIELDS}
        response.update({"responseType": "cgi", "cgiUrl": urls["cgiUrl"]})
        calls.put(f"/sms/{service}", callBack=urls["callBack"], stopCallBack=urls["stopCallBack"], smsResponse=response)
        done.append({"target": service, **urls})
        if not args.no_users:
            logins = args.users.split(",") if args.users else calls.get(f"/sms/{service}/users")
            user_urls = {"callBack": urls["callBack"], "stopCallBack": urls["stopCallBack"]}
            for login in [str(name).strip() for name in logins if str(name).strip()]:
                calls.put(f"/sms/{service}/users/{login}", **user_urls)
                done.append({"target": f"{service}/users/{login}", **user_urls})
    except GatewayError as exc:
        print(f"sms-worker callbacks setup: OVH refused ({exc.ovh_class or 'error'}): {exc.message}", file=sys.stderr)
        return 1
    masked = [{k: v.replace(f"/ovh/{token}/", "/ovh/****/") for k, v in row.items()} for row in done]
    if args.json:
        print(json.dumps(masked, indent=2))
    else:
        header = ["target", "callBack", "stopCallBack", "smsResponse cgiUrl"]
        rows = [[r["target"], r["callBack"], r["stopCallBack"], r.get("cgiUrl", "-")] for r in masked]
        print_table([header, *rows])
    return 0
