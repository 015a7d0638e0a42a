"""The few Databricks workspace calls the appliance makes, through databricks-sdk.

Used by `edge doctor`, `edge table create` and the real-table verification; the
hot path (ZeroBus) never touches this module. The client is created lazily with
bounded retries: with the workspace unreachable, databricks-sdk's defaults can
block for ~300 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.config import ZerobusConfig
from edge.schema import columns as proto_columns
from edge.schema import ddl


class WorkspaceError(RuntimeError):
    """A workspace call failed; the message is safe to show (no secrets)."""


def client(cfg: ZerobusConfig, *, timeout_s: float = 30.0):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    conf = Config(
        host=cfg.workspace_url,
        client_id=cfg.client_id,
        client_secret=str(cfg.client_secret),
        auth_type="oauth-m2m",
        retry_timeout_seconds=int(timeout_s),
        http_timeout_seconds=int(timeout_s),
    )
    return WorkspaceClient(config=conf)


@dataclass
class Sql:
    """Runs statements on a SQL warehouse and returns rows as lists of strings/None."""

    w: Any
    warehouse_id: str
    wait_timeout: str = "50s"

    def run(self, statement: str, params: dict[str, tuple[Any, str]] | None = None) -> list[list[str | None]]:
        from databricks.sdk.service.sql import StatementParameterListItem, StatementState

        items = [StatementParameterListItem(name=k, value=None if v is None else str(v), type=t)
                 for k, (v, t) in (params or {}).items()]
        try:
            resp = self.w.statement_execution.execute_statement(
                statement=statement, warehouse_id=self.warehouse_id, parameters=items or None,
                wait_timeout=self.wait_timeout,
            )
        except Exception as exc:
            raise WorkspaceError(f"statement execution: {_safe(exc)}") from None
        state = resp.status.state if resp.status else None
        if state != StatementState.SUCCEEDED:
            err = resp.status.error.message if resp.status and resp.status.error else ""
            raise WorkspaceError(f"statement {state.value if state else 'UNKNOWN'}: {err}".strip())
        if resp.manifest and resp.manifest.total_chunk_count and resp.manifest.total_chunk_count > 1:
            raise WorkspaceError("result larger than one chunk; narrow the query")
        return list(resp.result.data_array or []) if resp.result else []


def _safe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def table_info(w: Any, table: str):
    try:
        return w.tables.get(table)
    except Exception as exc:
        raise WorkspaceError(f"table {table}: {_safe(exc)}") from None


def schema_differences(info: Any) -> list[str]:
    """Every difference between the table's columns and our reading message, empty when 1:1."""
    want = {n: (t.lower(), not req) for n, t, req in proto_columns()}
    have = {}
    for c in info.columns or []:
        type_text = (c.type_text or (c.type_name.value if c.type_name else "")).lower()
        have[c.name.lower()] = (type_text, bool(c.nullable) if c.nullable is not None else True)
    diffs = []
    for name, (t, nullable) in want.items():
        if name not in have:
            diffs.append(f"column {name} ({t}{'' if nullable else ' NOT NULL'}) is missing from the table")
            continue
        ht, hn = have[name]
        if _norm(ht) != _norm(t):
            diffs.append(f"column {name}: table has type {ht}, the appliance sends {t}")
        if hn != nullable:
            diffs.append(f"column {name}: table has it {'nullable' if hn else 'NOT NULL'}, "
                         f"the appliance needs {'nullable' if nullable else 'NOT NULL'}")
    for name in have:
        if name not in want:
            diffs.append(f"column {name} is in the table but not in the appliance's message (ZeroBus needs 1:1)")
    return diffs


def _norm(t: str) -> str:
    return {"long": "bigint", "integer": "int", "timestamp_ltz": "timestamp"}.get(t, t)


def table_problems(info: Any) -> list[str]:
    problems = []
    ttype = getattr(info.table_type, "value", info.table_type)
    fmt = getattr(info.data_source_format, "value", info.data_source_format)
    if ttype != "MANAGED":
        problems.append(f"table type is {ttype}; ZeroBus writes only to managed tables")
    if fmt != "DELTA":
        problems.append(f"table format is {fmt}; ZeroBus writes only to Delta tables")
    return problems


def bootstrap_statements(table: str, principal: str | None) -> list[str]:
    """CREATE TABLE plus the grants a service principal needs to write through ZeroBus."""
    catalog, schema, _ = table.split(".")
    out = [ddl(table, header=False).strip().rstrip(";")]
    if principal:
        p = f"`{principal}`"
        out += [
            f"GRANT USE CATALOG ON CATALOG `{catalog}` TO {p}",
            f"GRANT USE SCHEMA ON SCHEMA `{catalog}`.`{schema}` TO {p}",
            f"GRANT SELECT, MODIFY ON TABLE {table} TO {p}",
        ]
    return out
