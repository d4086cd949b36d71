"""Webhook deliveries: the outbox rows a finish writes, and what each send attempt did.

| state     | meaning                                                        |
|-----------|----------------------------------------------------------------|
| pending   | written with the finish; its Cloud Task is not created yet     |
| enqueued  | its Cloud Task exists; sends and retries are the queue's       |
| delivered | the receiver answered 2xx                                      |
| failed    | attempts used up, or the URL was refused (never retried)       |
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, select, update

from offload.store.models import Delivery
from offload.store.schema import deliveries

__all__ = ["DELIVERED", "ENQUEUED", "FAILED_DELIVERY", "PENDING", "DeliveryLog", "DeliveryRecord"]

PENDING = "pending"
ENQUEUED = "enqueued"
DELIVERED = "delivered"
FAILED_DELIVERY = "failed"

_FOR_JOB = (
    select(deliveries)
    .where(deliveries.c.job_id == bindparam("p_job"))
    .order_by(deliveries.c.created_at, deliveries.c.id)
)
_ONE = select(deliveries).where(deliveries.c.id == bindparam("p_id"))
# Asked after every finish (the on-finish hook), so built once.
_PENDING_FOR = select(deliveries.c.id).where(
    deliveries.c.job_id == bindparam("p_id"), deliveries.c.state == PENDING
)


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery with what sending it needs."""

    delivery: Delivery
    job_id: str
    url: str


def _delivery(row: object) -> Delivery:
    m = row._mapping  # type: ignore[attr-defined]
    return Delivery(
        id=m["id"],
        event=m["event"],
        state=m["state"],
        attempts=m["attempts"],
        last_status=m["last_status"],
        last_error=m["last_error"],
        created_at=m["created_at"],
        delivered_at=m["delivered_at"],
    )


def for_job(conn: Connection, job_id: str) -> tuple[Delivery, ...]:
    """A job's deliveries, oldest first (inside the caller's connection)."""
    return tuple(_delivery(r) for r in conn.execute(_FOR_JOB, {"p_job": job_id}).all())


class DeliveryLog:
    """Reading and updating webhook deliveries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery, or None (expired with its job)."""
        with self.engine.connect() as conn:
            row = conn.execute(_ONE, {"p_id": delivery_id}).first()
        if row is None:
            return None
        return DeliveryRecord(_delivery(row), row._mapping["job_id"], row._mapping["url"])

    def pending_jobs(self, *, created_before: dt.datetime, limit: int = 100) -> list[str]:
        """Jobs with deliveries whose Cloud Task was never created (the enqueue was lost)."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(deliveries.c.job_id)
                    .where(deliveries.c.state == PENDING, deliveries.c.created_at < created_before)
                    .group_by(deliveries.c.job_id)
                    .limit(limit)
                ).scalars()
            )

    def pending_for(self, job_id: str) -> list[str]:
        """Ids of one job's deliveries still waiting for their Cloud Task."""
        with self.engine.connect() as conn:
            return list(conn.execute(_PENDING_FOR, {"p_id": job_id}).scalars())

    def mark_enqueued(self, delivery_id: str, now: dt.datetime) -> None:
        """Its Cloud Task exists now."""
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.state == PENDING)
                .values(state=ENQUEUED, updated_at=now)
            )

    def record_attempt(
        self,
        delivery_id: str,
        now: dt.datetime,
        *,
        state: str,
        status: int | None,
        error: str | None,
    ) -> None:
        """What one send did; ``state`` is enqueued (to be retried), delivered or failed."""
        values: dict[str, object] = {
            "state": state,
            "attempts": deliveries.c.attempts + 1,
            "last_status": status,
            "last_error": None if error is None else error[:500],
            "updated_at": now,
        }
        if state == DELIVERED:
            values["delivered_at"] = now
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.state.in_((PENDING, ENQUEUED)),
                )
                .values(**values)
            )
