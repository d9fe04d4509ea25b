"""The Dagster instance storage for one machine: Dagster's sqlite storage with a concurrency-slot claim that holds
across processes, so the `gpu` pool's limit holds when two runs (two `aya` commands, two UI launches) start together.

Dagster's own sqlite claim selects a free slot row and then updates that row by id. SQLite ignores the select's
FOR UPDATE, so two processes can select the same free row and both update it: both steps hold the one slot (measured:
4 processes at a barrier, 2-4 winners in 9 of 30 rounds). Here the claim is one guarded UPDATE, which SQLite
serialises: whoever writes second finds no free row and waits for the slot, as on Postgres.
"""

import os

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._utils.concurrency import ConcurrencySlotStatus

__all__ = ["SqliteStorage", "SlotSafeSqliteEventLogStorage"]


class SlotSafeSqliteEventLogStorage(SqliteEventLogStorage):
    def _claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str) -> ConcurrencySlotStatus:
        slots = ConcurrencySlotsTable
        free = (db.select(slots.c.id)
                .where(slots.c.concurrency_key == concurrency_key, slots.c.step_key.is_(None),
                       slots.c.deleted == False)  # noqa: E712  (a SQL comparison)
                .limit(1).scalar_subquery())
        # The guard `step_key IS NULL` makes the take atomic: a row another process took in between is not free.
        claim = (slots.update().values(run_id=run_id, step_key=step_key)
                 .where(slots.c.id == free, slots.c.step_key.is_(None)))
        with self.index_connection() as conn:
            taken = conn.execute(claim).rowcount
        return ConcurrencySlotStatus.CLAIMED if taken else ConcurrencySlotStatus.BLOCKED


class SqliteStorage(DagsterSqliteStorage):
    """`storage: custom:` in dagster.yaml; the same files as `storage: sqlite:`. `base_dir` defaults to
    $DAGSTER_HOME/storage, as Dagster's own default does, so one dagster.yaml serves every instance home."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = SlotSafeSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        base_dir = config_value.get("base_dir") or os.path.join(os.environ["DAGSTER_HOME"], "storage")
        return cls.from_local(inst_data=inst_data, base_dir=base_dir)
