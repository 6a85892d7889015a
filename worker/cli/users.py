"""``sms-worker users list|show|create|update|delete``: the OVH SMS API users of an account.

A user has a quota of credits, an alert threshold with its support (mail, SMS or both, to an
e-mail address or a number), ``callBack`` and ``stopCallBack`` URLs and up to 5 IP addresses
allowed to use http2sms (``PUT /sms/{sn}/users/{login}``, OVH's ``sms.User``). After a change,
the user's quota and alert as OVH now holds them are copied into the worker's own quota
(``QuotaStore.set_from_ovh``, as ``sms-worker quotas sync`` does) when ``REDIS_URL`` is set, so
the worker never reserves against a stale quota. Passwords are never printed, but the one
``create`` generates when none is given (printed once, as the only way to learn it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import string
import sys
from typing import Any

from contracts.models import LOGIN_PATTERN
from worker.cli.common import (
    check_ovh_credentials,
    credits_cell,
    load_settings,
    ovh_client,
    print_table,
    redis_for,
    service_of,
)
from worker.errors import UsageError

#: OVH accepts at most this many IP restrictions per user.
MAX_IPS = 5
#: Generated passwords: 8 letters and digits, as OVH requires.
PASSWORD_LENGTH = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="OVH SMS account (default: SMS_WORKER_SERVICE_NAME)")
    commands = parser.add_subparsers(dest="users_command", required=True, metavar="{list,show,create,update,delete}")
    listing = commands.add_parser("list", help="every API user with its quota, alert and callbacks")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = commands.add_parser("show", help="one API user")
    show.add_argument("login", help="the API user's login")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    create = commands.add_parser("create", help="create an API user, then apply the options given")
    create.add_argument("login", help="the API user's login")
    create.add_argument("--password", help="8 letters and digits (default: generated, printed once)")
    _settings_options(create)
    update = commands.add_parser("update", help="change an API user's quota, alert, callbacks or IPs")
    update.add_argument("login", help="the API user's login")
    update.add_argument("--password", help="a new password: 8 letters and digits")
    _settings_options(update)
    delete = commands.add_parser("delete", help="delete an API user (its quota's credits go back to the account)")
    delete.add_argument("login", help="the API user's login")
    delete.add_argument("--yes", action="store_true", help="really delete")


def _settings_options(parser: argparse.ArgumentParser) -> None:
    quota = parser.add_mutually_exclusive_group()
    quota.add_argument("--quota", type=float, metavar="CREDITS", help="give the user a quota of this many credits")
    quota.add_argument("--no-quota", action="store_true", help="remove the user's quota")
    parser.add_argument("--alert-threshold", type=int, metavar="CREDITS", help="alert when the quota left is this low")
    parser.add_argument("--alert-support", choices=("mail", "sms", "both"), help="how the alert is sent")
    parser.add_argument("--alert-email", help="where a mail alert goes")
    parser.add_argument("--alert-number", help="where an SMS alert goes (international format)")
    parser.add_argument("--callback", metavar="URL", help="URL called when a sent SMS changes state ('' clears it)")
    parser.add_argument("--stop-callback", metavar="URL", help="URL called on a STOP reply ('' clears it)")
    ips = parser.add_mutually_exclusive_group()
    ips.add_argument("--ip", action="append", help=f"an IP allowed to use http2sms; repeat, {MAX_IPS} at most")
    ips.add_argument("--no-ip-restriction", action="store_true", help="allow any IP again")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _check_login(login: str) -> str:
    import re

    if not re.match(LOGIN_PATTERN, login):
        raise UsageError(f"login {login!r}: letters, digits, '.', '_' or '-' only")
    return login


def changes(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """The ``sms.User`` fields to PUT for the options given (none: nothing to change)."""
    from worker.phones import normalize

    body: dict[str, Any] = {}
    if args.quota is not None:
        if args.quota < 0:
            raise UsageError("--quota cannot be negative")
        body["quotaInformations"] = {"quotaStatus": "active", "quotaLeft": args.quota}
    elif args.no_quota:
        body["quotaInformations"] = {"quotaStatus": "inactive"}
    alert: dict[str, Any] = {}
    if args.alert_threshold is not None:
        if args.alert_threshold < 0:
            raise UsageError("--alert-threshold cannot be negative")
        alert["alertThreshold"] = args.alert_threshold
    if args.alert_support is not None:
        alert["support"] = args.alert_support
    if args.alert_email is not None:
        if "@" not in args.alert_email:
            raise UsageError(f"--alert-email {args.alert_email!r} is not an e-mail address")
        alert["alertEmail"] = args.alert_email
    if args.alert_number is not None:
        number = normalize(args.alert_number, settings.default_region)
        if number.e164 is None:
            raise UsageError(f"--alert-number {args.alert_number!r}: {number.reason}")
        alert["alertNumber"] = number.e164
    if alert:
        body["alertThresholdInformations"] = alert
    if args.callback is not None:
        body["callBack"] = args.callback
    if args.stop_callback is not None:
        body["stopCallBack"] = args.stop_callback
    if args.ip:
        if len(args.ip) > MAX_IPS:
            raise UsageError(f"--ip: OVH takes {MAX_IPS} addresses at most")
        try:
            body["ipRestrictions"] = [str(ipaddress.ip_address(ip.strip())) for ip in args.ip]
        except ValueError as exc:
            raise UsageError(f"--ip: {exc}") from None
    elif args.no_ip_restriction:
        body["ipRestrictions"] = []
    if getattr(args, "password", None) is not None and args.users_command == "update":
        body["password"] = _check_password(args.password)
    return body


def _check_password(password: str) -> str:
    if not (len(password) == PASSWORD_LENGTH and password.isascii() and password.isalnum()):
        raise UsageError(f"--password: OVH wants exactly {PASSWORD_LENGTH} letters and digits")
    return password


def view(user: dict[str, Any]) -> dict[str, Any]:
    """An ``sms.User`` as shown: every field but the password."""
    return {name: value for name, value in user.items() if name != "password"}


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    service = service_of(args.service, settings)
    check_ovh_credentials(settings)
    client = ovh_client(settings)
    base = f"/sms/{service}/users"
    command = args.users_command
    if command == "list":
        users = [view(client.get(f"{base}/{login}")) for login in client.get(base)]
        return _print(users, args.json)
    login = _check_login(args.login)
    if command == "show":
        return _print([view(client.get(f"{base}/{login}"))], args.json, one=True)
    if command == "delete":
        if not args.yes:
            raise UsageError(f"deleting user {login} of {service} cannot be undone: add --yes")
        client.delete(f"{base}/{login}")
        if settings.redis_url:
            _forget(settings, service, login)
        print(f"deleted user {login} of {service}", file=sys.stderr)
        return 0
    body = changes(args, settings)
    generated = None
    if command == "create":
        password = _check_password(args.password) if args.password else None
        if password is None:
            alphabet = string.ascii_letters + string.digits
            password = generated = "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))
        client.post(base, login=login, password=password)
    if body:
        client.put(f"{base}/{login}", **body)
    user = client.get(f"{base}/{login}")
    synced = _sync(settings, service, login, user)
    if generated is not None:
        print(f"password of {login}: {generated} (shown once: keep it now)", file=sys.stderr)
    if not synced and ("quotaInformations" in body or "alertThresholdInformations" in body):
        print(
            f"sms-worker: REDIS_URL is not set: the worker's quota of {login} was not updated "
            "(sms-worker quotas sync does it later)",
            file=sys.stderr,
        )
    return _print([view(user)], args.json, one=True)


def _sync(settings: Any, service: str, login: str, user: dict[str, Any]) -> bool:
    """Copy the user's quota and alert from OVH's answer into the worker's quota store."""
    if not settings.redis_url:
        return False
    from worker.accounting.quotas import QuotaStore

    QuotaStore(redis_for(settings, "users")).set_from_ovh(service, login, user, alert_sms=settings.quota_alert_sms)
    return True


def _forget(settings: Any, service: str, login: str) -> None:
    from worker.accounting.quotas import QuotaStore

    QuotaStore(redis_for(settings, "users")).forget(service, login)


def _print(users: list[dict[str, Any]], as_json: bool, *, one: bool = False) -> int:
    """A table, or JSON: a list of users (``list``), or the user as an object (``one``)."""
    if as_json:
        print(json.dumps(users[0] if one else users, indent=2))
        return 0
    rows = [("LOGIN", "QUOTA LEFT", "ALERT AT", "ALERT BY", "CALLBACK", "STOP CALLBACK", "IPS")]
    for user in users:
        quota = user.get("quotaInformations") or {}
        alert = user.get("alertThresholdInformations") or {}
        left = credits_cell(quota.get("quotaLeft")) if quota.get("quotaStatus") == "active" else "-"
        to = [alert.get("alertEmail") or "", alert.get("alertNumber") or ""]
        by = f"{alert.get('support') or '-'} {' '.join(t for t in to if t)}".strip()
        threshold = alert.get("alertThreshold")
        rows.append(
            (str(user.get("login")), left, "-" if not threshold else str(threshold), by,
             user.get("callBack") or "-", user.get("stopCallBack") or "-",
             ",".join(user.get("ipRestrictions") or []) or "-")
        )  # fmt: skip
    print_table(rows)
    return 0
