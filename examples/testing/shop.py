"""
A small application to test: a task that sends a receipt, and the code that
enqueues it when an order is placed. Its queue's root comes from the
environment, as an application's usually does.
"""

from __future__ import annotations

import os

import fsjobs

queue = fsjobs.Queue(os.environ["SHOP_JOBS"])


@queue.task(max_attempts=3)
async def send_receipt(order: int, email: str) -> str:
    if "@" not in email:
        raise ValueError(f"not an address: {email}")
    return f"receipt for order {order} sent to {email}"


@queue.task(priority=10)
def restock(sku: str, count: int) -> int:
    return count


async def place_order(order: int, email: str, sku: str, left: int) -> str:
    """Enqueue the receipt, and a restock when stock runs low; return the receipt's job id."""
    job_id = await send_receipt.enqueue(order=order, email=email)
    if left < 5:
        await restock.enqueue(sku=sku, count=20)
    return job_id
