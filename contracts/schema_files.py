"""JSON Schema files of the wire models, checked into ``contracts/schemas/``.

Regenerate after changing a model: ``python -m contracts.schema_files --write``. A test fails
when the files and the models drift apart, so a contract change is always a visible diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from .models import CreditUsage, DeliveryReport, IncomingSms, OptOut, QuotaAlert, SendRequest, SendResult

SCHEMA_DIR = Path(__file__).parent / "schemas"

#: File name -> model; the file names carry the contract version.
MODELS: dict[str, type[BaseModel]] = {
    "send_request.v1.json": SendRequest,
    "send_result.v1.json": SendResult,
    "credit_usage.v1.json": CreditUsage,
    "quota_alert.v1.json": QuotaAlert,
    "delivery_report.v1.json": DeliveryReport,
    "incoming_sms.v1.json": IncomingSms,
    "opt_out.v1.json": OptOut,
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale_files() -> list[str]:
    """Names of the schema files that differ from the models (or are missing)."""
    stale = []
    for name, model in MODELS.items():
        path = SCHEMA_DIR / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(model):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the files instead of checking them")
    args = parser.parse_args(argv)
    if args.write:
        SCHEMA_DIR.mkdir(exist_ok=True)
        for name, model in MODELS.items():
            (SCHEMA_DIR / name).write_text(render(model), encoding="utf-8")
        return 0
    stale = stale_files()
    for name in stale:
        print(f"stale: contracts/schemas/{name} (run python -m contracts.schema_files --write)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
