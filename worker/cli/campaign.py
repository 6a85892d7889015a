"""``sms-worker campaign send|report|status|pause|resume|cancel``: send a mail-merge contacts file;
report on a tag; control a bulk campaign.

``send CONTACTS.csv --message "Hello #firstname# ..."`` queues one request per row (ids derived
from the campaign and the line: run the same command again after a crash or Ctrl-C and it
resumes, sending nothing twice), lists refused rows in a rejects file, shows progress on a
terminal and ends with a summary. ``report --tag T`` reads the worker's own counters for the tag
(no OVH call; ``--check N`` compares with OVH on a sample), as a table, ``--json`` or ``--html``.
``--via bulk`` sends the rows as OVH receivers documents, one jobs call per document
(``worker.campaigns.bulk``); ``pause|resume|cancel|status`` act on such a campaign by ``--tag``
or by its id (``worker.campaigns.control``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from contracts.models import SERVICE_NAME_PATTERN
from contracts.wire import LANES
from worker.cli.common import credits_cell, load_settings, print_table, redis_for
from worker.errors import ConfigurationError, GatewayError, UsageError

#: Most minutes ahead ``--at`` may be (the contract's bound on ``differed_period``: a year).
MAX_DIFFERED_MIN = 60 * 24 * 365
#: ``--via auto`` sends in bulk a mail merge (one text per row, so one jobs call per row in
#: requests mode) of at least this many rows: 1,000 calls are ~17 minutes at OVH's fair use.
AUTO_BULK_MERGE_ROWS = 1_000
#: ... and a broadcast (one text: 500 receivers per call) of at least this many rows (200 calls).
AUTO_BULK_BROADCAST_ROWS = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(
        dest="campaign_command", required=True, metavar="{send,report,status,pause,resume,cancel}"
    )
    send = commands.add_parser("send", help="queue one SMS per row of a mail-merge contacts file")
    send.add_argument("contacts", type=Path, metavar="CONTACTS.csv", help="header row, a number column, ; , or tab")
    send.add_argument("--message", required=True, help="the text; #column# is replaced by the row's value")
    send.add_argument("--tag", help="OVH tag of every SMS (default: campaign-<campaign id>); report on it later")
    send.add_argument("--sender", help="declared OVH sender (default: the worker's)")
    send.add_argument("--user", help="OVH SMS API user login whose quota pays")
    send.add_argument("--service", help="OVH SMS account (default: the worker's)")
    send.add_argument("--priority", choices=LANES, default="low", help="OVH priority and worker lane (default low)")
    send.add_argument("--at", help="start time: an ISO datetime, or HH:MM today (local time); OVH's differedPeriod")
    send.add_argument("--no-stop-clause", action="store_true", help="not commercial: no STOP mention")
    send.add_argument("--dry-run", action="store_true", help="check the file and estimate parts and credits only")
    send.add_argument("--number-column", default="number", help="the phone number's column (default: number)")
    send.add_argument("--encoding", default="utf-8-sig", help="the file's encoding (default UTF-8, BOM or not)")
    send.add_argument(
        "--campaign-id",
        help="resume under this id, bare or as the summary prints it, campaign-<id> (default: a digest of file, "
        "size, message, tag)",
    )
    send.add_argument("--rejects", type=Path, help="rejects file (default: CONTACTS.rejects.csv beside the file)")
    send.add_argument(
        "--chunk-rows", type=int, default=500, help="rows read and queued at once (a pipe is queued in such steps)"
    )
    send.add_argument("--no-wait", action="store_true", help="queue, then stop without waiting for results")
    send.add_argument("--timeout", type=float, help="longest wait for results, seconds (default: until all are in)")
    send.add_argument("--no-progress", action="store_true", help="no progress bars (off anyway when not a terminal)")
    send.add_argument("--json", action="store_true", help="print the summary as JSON")
    send.add_argument(
        "--via",
        choices=("auto", "bulk", "requests"),
        default="auto",
        help="bulk: OVH receivers documents, one jobs call each; requests: one request per row; auto (default): "
        f"bulk for a mail merge of {AUTO_BULK_MERGE_ROWS:,}+ rows or a broadcast of {AUTO_BULK_BROADCAST_ROWS:,}+ "
        "when SMS_WORKER_INBOUND_PUBLIC_URL is set",
    )
    send.set_defaults(campaign_func=_send)
    for name, what in (
        ("status", "a bulk campaign's state, documents and rows"),
        ("pause", "stop a bulk campaign's new jobs calls (within one slot interval)"),
        ("resume", "let a paused bulk campaign go on"),
        ("cancel", "stop a bulk campaign for good: delete its pending OVH jobs, end unsent rows cancelled"),
    ):
        control = commands.add_parser(name, help=what)
        which = control.add_mutually_exclusive_group(required=True)
        which.add_argument("campaign_id", nargs="?", help="the campaign id (campaign-<id> as the summary shows it)")
        which.add_argument("--tag", help="the campaign's tag")
        control.add_argument("--service", help="OVH SMS account (default: the worker's)")
        control.add_argument("--json", action="store_true", help="print JSON instead of a table")
        control.set_defaults(campaign_func=_control)
    report = commands.add_parser("report", help="a tag's figures from the worker's own records")
    report.add_argument("--tag", required=True, help="the campaign's OVH tag (campaign send's --tag or campaign-<id>)")
    report.add_argument("--service", help="OVH SMS account (default: the worker's)")
    report.add_argument("--check", type=int, default=0, metavar="N", help="compare with OVH, reading N of its SMS")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained page with charts")
    report.set_defaults(campaign_func=_report)


def run(args: argparse.Namespace) -> int:
    return int(args.campaign_func(args))


def start_time(at: str, now: datetime) -> datetime:
    """``--at`` as an aware datetime: an ISO datetime, or HH:MM today (naive means local time);
    refused when past, or more than a year ahead (the contract's bound on ``differed_period``)."""
    if re.fullmatch(r"\d{1,2}:\d{2}", at):
        hour, minute = (int(part) for part in at.split(":"))
        if hour > 23 or minute > 59:
            raise UsageError(f"--at {at}: not a time of day")
        when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    else:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise UsageError(f"--at {at}: give an ISO datetime (2025-06-01T09:30) or HH:MM") from None
        when = when.astimezone() if when.tzinfo is None else when
    seconds = (when - now).total_seconds()
    if seconds <= 0:
        raise UsageError(f"--at {at} is in the past (now {now:%Y-%m-%d %H:%M}): give a later time, or leave --at out")
    if math.ceil(seconds / 60) > MAX_DIFFERED_MIN:
        raise UsageError(f"--at {at} is more than a year ahead")
    return when


def _fetch(settings: Any) -> Any:
    """An OVH GET whose every failure is a ``GatewayError`` (``OvhGateway.get``; a client that cannot
    even be made, for want of credentials, is a ``RetryableError``): callers fall back on what
    they know without OVH."""
    import ovh.exceptions

    from worker.errors import RetryableError
    from worker.ovhcloud.client import describe_error, make_client
    from worker.ovhcloud.gateway import OvhGateway

    timeout = (settings.ovh_connect_timeout_s, settings.ovh_read_timeout_s)
    gateway = OvhGateway(lambda: make_client(settings.ovh_endpoint, timeout=timeout, **settings.ovh_credentials()))

    def fetch(path: str, **params: Any) -> Any:
        try:
            return gateway.get(path, **params)
        except ovh.exceptions.APIError as exc:  # raised making the client, before any call
            raise RetryableError(describe_error(exc)) from exc

    return fetch


def _service(given: str | None, settings: Any) -> str:
    service = given or settings.service_name
    if service is None:
        raise ConfigurationError("no SMS account: pass --service or set SMS_WORKER_SERVICE_NAME")
    if not re.match(SERVICE_NAME_PATTERN, service):
        raise UsageError(f"--service {service!r} is not an OVH SMS account name")
    return str(service)


# -- send ---------------------------------------------------------------------------------------


def _send(args: argparse.Namespace) -> int:
    from worker.campaigns.bulk import BulkRun
    from worker.campaigns.contacts import ContactsFile
    from worker.campaigns.pricing import Pricing
    from worker.campaigns.progress import CampaignProgress
    from worker.campaigns.rejects import RejectsFile
    from worker.campaigns.rows import CAMPAIGN_PREFIX, Campaign, check_campaign_id, derive_campaign_id
    from worker.campaigns.send import CampaignRun

    settings = load_settings()
    start_at = start_time(args.at, datetime.now().astimezone()) if args.at else None
    given_id = check_campaign_id(args.campaign_id) if args.campaign_id else None
    if not 1 <= args.chunk_rows <= 10_000:
        raise UsageError("--chunk-rows takes 1 to 10,000 rows")
    client = redis_for(settings, "campaign send")
    with ContactsFile(args.contacts, number_column=args.number_column, encoding=args.encoding) as contacts:
        campaign_id = given_id or derive_campaign_id(args.contacts, contacts.size, args.message, args.tag)
        campaign = Campaign(
            campaign_id=campaign_id,
            message=args.message,
            tag=args.tag or f"{CAMPAIGN_PREFIX}{campaign_id}",
            default_region=settings.default_region,
            priority=args.priority,
            sender=args.sender,
            user=args.user,
            service_name=args.service,
            start_at=start_at,
            no_stop_clause=args.no_stop_clause,
        )
        campaign.check_columns(contacts.variables, args.contacts)
        campaign.check()
        via = _via(args.via, args.contacts, campaign, settings)
        rejects_path = args.rejects or args.contacts.with_name(f"{args.contacts.stem}.rejects.csv")
        pricing = Pricing(client, _fetch(settings), ttl_s=settings.rates_ttl_s)
        with (
            RejectsFile(rejects_path, contacts.header, contacts.delimiter, contacts.number_index) as rejects,
            CampaignProgress(enabled=not args.no_progress) as progress,
        ):
            kind: Any = CampaignRun
            extra: dict[str, Any] = {}
            if via == "bulk":
                kind, extra = BulkRun, {"settings": settings}
            run = kind(
                campaign,
                contacts,
                client=client,
                pricing=pricing,
                rejects=rejects,
                progress=progress,
                numbers_ttl_s=settings.dedupe_ttl_s,
                dry_run=args.dry_run,
                chunk_rows=args.chunk_rows,
                **extra,
            )
            try:
                run.queue()
                if not (args.dry_run or args.no_wait):
                    run.wait(args.timeout)
            except KeyboardInterrupt:
                s = run.summary
                print(
                    f"sms-worker: interrupted after {s.rows:,} rows ({s.queued + s.earlier:,} queued): run the same "
                    "command again to resume; nothing is sent twice",
                    file=sys.stderr,
                )
                return 130
    summary = run.summary
    summary.rejects_file = str(rejects_path) if rejects.count else None
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        print_table([("CAMPAIGN", f"{CAMPAIGN_PREFIX}{campaign_id}"), *_summary_rows(summary)])
    if summary.waiting and not (args.no_wait or args.dry_run):
        print(
            f"sms-worker: {summary.waiting:,} queued rows have no result yet: run the same command again to keep "
            "waiting (nothing is sent twice)",
            file=sys.stderr,
        )
        return 1
    return 0


def _via(asked: str, path: Path, campaign: Any, settings: Any) -> str:
    """``bulk`` or ``requests``: as asked, or for ``auto`` by the file's rows (see the thresholds)."""
    if asked != "auto":
        return asked
    if not (settings.inbound_public_url and settings.inbound_token) or not path.is_file():
        return "requests"
    with path.open("rb") as f:
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    threshold = AUTO_BULK_MERGE_ROWS if campaign.placeholders else AUTO_BULK_BROADCAST_ROWS
    return "bulk" if rows >= threshold else "requests"


def _summary_rows(s: Any) -> list[tuple[str, str]]:
    rows = [("tag", s.tag), ("via", s.via + (f" ({s.documents:,} documents)" if s.via == "bulk" else ""))]
    if s.held_until:
        rows.append(("held", f"commercial SMS: held by the quiet hours until {s.held_until}"))
    if s.differed_period:
        rows.append(("starts", f"in {s.differed_period} min for the first rows (OVH differedPeriod)"))
    rows.append(("rows", f"{s.rows:,} read, {s.rejected:,} rejected before queueing"))
    if s.dry_run:
        rows.append(("would send", f"{s.rows - s.rejected:,} SMS, {s.parts:,} parts"))
        if s.example is not None:
            rows.append((f"line {s.example['line']}", s.example["text"]))
    else:
        rows.append(("queued", f"{s.queued:,} now, {s.earlier:,} by an earlier run"))
        results = ", ".join(f"{n:,} {status}" for status, n in sorted(s.results.items())) or "none yet"
        rows.append(("results", f"{results}; {s.waiting:,} waiting"))
        rows.append(("credits", credits_cell(s.credits)))
    estimate = credits_cell(s.estimated_credits)
    if s.unknown_rates:
        estimate += f" (and rows to {', '.join(s.unknown_rates)}, whose rate OVH did not tell)"
    rows.append(("estimated credits", estimate))
    if s.rejects_file:
        rows.append(("rejects", s.rejects_file))
    rows.append(("elapsed", f"{s.elapsed_s:.1f} s"))
    return rows


# -- status, pause, resume, cancel --------------------------------------------------------------


def _control(args: argparse.Namespace) -> int:
    from worker.campaigns import control
    from worker.campaigns.outcomes import CampaignRecord, RowResults

    settings = load_settings()
    client = redis_for(settings, f"campaign {args.campaign_command}")
    by_tag = args.tag is not None
    service = _service(args.service, settings) if by_tag else ""
    record = control.find(client, service, args.tag if by_tag else args.campaign_id, by_tag=by_tag)
    command = args.campaign_command
    done = ""
    if command == "pause":
        done = "paused" if control.pause(client, record) else f"not paused: it is {record.state}"
    elif command == "resume":
        done = "resumed" if control.resume(client, record) else f"not resumed: it is {record.state}"
    elif command == "cancel":
        results = RowResults(
            client,
            result_ttl_s=settings.result_ttl_s,
            queue_cap=settings.results_queue_max_length,
            tracking_ttl_s=settings.delivery_tracking_ttl_s,
            stats_ttl_s=settings.campaign_stats_ttl_s,
        )
        try:
            report = control.cancel(client, record, results, _calls(settings))
        except GatewayError as exc:
            print(f"sms-worker: cancelled, but OVH's pending jobs were not all deleted: {exc.message}", file=sys.stderr)
            return 1
        done = (
            f"cancelled: {report.documents_stopped} documents never sent, {report.jobs_deleted} pending OVH jobs "
            f"deleted, {report.rows_cancelled:,} rows ended cancelled"
        )
        if report.jobs_left:
            done += f"; {report.jobs_left} pending jobs not read (run cancel again)"
    record = CampaignRecord.read(client, record.campaign_id) or record
    figures = {
        "campaign": f"campaign-{record.campaign_id}",
        "tag": record.tag,
        "state": record.state + (f" (by {record.fields['paused_by']})" if record.fields.get("paused_by") else ""),
        "documents": f"{record.documents}: {record.count('docs_sent')} sent, {record.count('docs_failed')} failed",
        "rows": f"{record.rows:,}: "
        + ", ".join(f"{record.count('rows_' + s):,} {s}" for s in ("sent", "failed", "unknown", "cancelled")),
    }
    if record.fields.get("breaker_reason"):
        figures["breaker"] = record.fields["breaker_reason"]
    if record.fields.get("deferred_until"):
        when = datetime.fromtimestamp(float(record.fields["deferred_until"])).astimezone()
        figures["held"] = f"quiet hours: goes at {when:%Y-%m-%d %H:%M %Z}"
    if done:
        figures["done"] = done
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table([("FIGURE", "VALUE"), *figures.items()])
    return 0


def _calls(settings: Any) -> Any:
    """Rate-limited OVH calls (the background lane of the shared limiter), or ``None`` without credentials."""
    if not settings.ovh_credentials():
        return None

    from worker.app import consumer_key_id
    from worker.ovhcloud.background_calls import BackgroundCalls
    from worker.ovhcloud.client import make_client
    from worker.ovhcloud.gateway import OvhGateway
    from worker.ovhcloud.rate_limit import RateLimiter

    def factory() -> Any:
        timeout = (settings.ovh_connect_timeout_s, settings.ovh_read_timeout_s)
        return make_client(settings.ovh_endpoint, timeout=timeout, **settings.ovh_credentials())

    limiter = RateLimiter(
        redis_for(settings, "campaign"),
        key=consumer_key_id(settings.ovh_endpoint, factory()),
        rate_per_s=settings.rate_limit,
        burst=settings.rate_limit_burst,
        headroom=settings.rate_limit_headroom,  # the bucket is the workers' too: the same shape
    )
    return BackgroundCalls(OvhGateway(factory), limiter)


# -- report -------------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    from worker.after_send.ptts import PttLookup
    from worker.campaigns import html, report
    from worker.campaigns.stats import CampaignStats

    if args.html is not None:
        html._pyplot()  # the extra is missing: say so before anything else
    if not 0 <= args.check <= 1000:
        raise UsageError("--check takes 0 to 1000 SMS to read from OVH")
    settings = load_settings()
    service = _service(args.service, settings)
    client = redis_for(settings, "campaign report")
    stats = CampaignStats(client, ttl_s=settings.campaign_stats_ttl_s).read(service, args.tag)
    if stats is None:
        print(
            f"sms-worker: the worker has no record of tag {args.tag!r} on {service} (nothing sent with it, or longer "
            "ago than SMS_WORKER_CAMPAIGN_STATS_TTL_S)",
            file=sys.stderr,
        )
        return 1
    fetch = _fetch(settings) if settings.ovh_credentials() else None
    built = report.build(stats, PttLookup(client, fetch, ttl_s=settings.ptt_cache_ttl_s))
    if args.check:
        try:
            built = built.with_check(report.cross_check(built, fetch or _fetch(settings), args.check))
        except GatewayError as exc:
            print(f"sms-worker: the check against OVH failed: {exc.message}", file=sys.stderr)
            return 1
    if args.html is not None:
        try:
            args.html.write_text(html.render(built), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.html}: {exc.strerror}") from None
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(built.as_json(), indent=2))
    else:
        print_table([("FIGURE", "VALUE"), *report.table_rows(built)])
    return 0
