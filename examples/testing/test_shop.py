"""
Tests of `shop` with the fixtures of the fsjobs pytest plugin: installing fsjobs
is all it takes, no conftest.py. (The application's own queue uses the root in
SHOP_JOBS, which the test run points at a temporary directory.)
"""

from __future__ import annotations

import shop

import fsjobs
from fsjobs.testing import drain


async def test_an_order_pushes_a_receipt(fsjobs_pushed):
    """Assert on what the code under test pushed, without running anything."""
    await shop.place_order(1, "ann@example.com", "tea", left=50)
    fsjobs_pushed.assert_pushed(shop.send_receipt, order=1, email="ann@example.com")
    fsjobs_pushed.assert_not_pushed(shop.restock)


async def test_low_stock_pushes_a_restock_first_in_line(fsjobs_pushed):
    await shop.place_order(2, "bob@example.com", "tea", left=3)
    pushed = fsjobs_pushed.assert_pushed(shop.restock, sku="tea")
    assert pushed.job.priority == 10


async def test_a_task_on_its_own(fsjobs_queue):
    """A job of the task on a fresh temporary root, then drain: a worker in this process."""
    job_id = await fsjobs_queue.push(shop.send_receipt.job(order=3, email="cid@example.com"))
    assert await drain(fsjobs_queue) == 1
    assert await fsjobs_queue.result(job_id) == "receipt for order 3 sent to cid@example.com"


async def test_eager_mode_runs_jobs_inside_the_push(fsjobs_eager):
    """With fsjobs_eager the receipt has been sent when place_order returns."""
    job_id = await shop.place_order(4, "dee@example.com", "tea", left=50)
    assert await shop.queue.result(job_id) == "receipt for order 4 sent to dee@example.com"


async def test_a_bad_address_fails_and_will_retry(fsjobs_eager):
    job_id = await shop.place_order(5, "nobody", "tea", left=50)
    state = await shop.queue.get(job_id)
    assert (state.status, state.error.type) == (fsjobs.JobStatus.RETRYING, "ValueError")
