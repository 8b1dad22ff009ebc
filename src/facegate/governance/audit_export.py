"""The two export formats of the audit log, shared by ``facegate audit export`` and the
console, so an export from either is the same bytes.

JSONL is each record exactly as hashed (with its hash), one per line, so the file can be
verified (``facegate audit verify --file``). CSV is for spreadsheets: one column per field,
``policies`` and ``summary`` as JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from facegate.store.audit_chain import canonical

CSV_COLUMNS = ["seq", "time", "request_id", "key_id", "organization", "sector", "purpose", "operation", "collection",
               "case_reference", "threshold", "decision", "policies", "status", "error_type", "summary", "prev_hash", "hash"]


def jsonl(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield canonical(record) + "\n"


def csv_rows(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The header, then one CSV line per record."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "policies": json.dumps(record.get("policies")),
                         "summary": json.dumps(record.get("summary"), sort_keys=True)})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
