"""Regenerate ``orders.csv``, the example's bundled dataset (deterministic: fixed seed).

    python examples/shop/data/generate_orders.py

Orders of five stores from 2024-01-01 to 2024-03-31 (UTC), busier on weekends and in
the evening. The output is committed; run this only to change the dataset.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

SEED = 20240101
FIRST_DAY = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 91  # 2024-01-01 .. 2024-03-31 (2024 is a leap year)
STORES = {"berlin": 9.0, "lisbon": 6.0, "madrid": 7.0, "paris": 8.0, "vienna": 4.0}  # orders per day
OUTPUT = Path(__file__).with_name("orders.csv")


def generate() -> list[tuple[str, str, str, str]]:
    rng = random.Random(SEED)
    orders: list[tuple[datetime, str, float]] = []
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        weekend = 1.4 if day.weekday() >= 5 else 1.0
        for store, per_day in STORES.items():
            count = max(0, round(rng.gauss(per_day * weekend, per_day**0.5)))
            for _ in range(count):
                hour = min(23, max(0, round(rng.triangular(6, 23, 19))))
                at = day + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))
                amount = round(min(400.0, rng.lognormvariate(3.3, 0.6)), 2)
                orders.append((at, store, amount))
    orders.sort()
    return [
        (f"O{n:06d}", at.strftime("%Y-%m-%dT%H:%M:%SZ"), store, f"{amount:.2f}")
        for n, (at, store, amount) in enumerate(orders, start=1)
    ]


def main() -> None:
    rows = generate()
    with OUTPUT.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("order_id", "ordered_at", "store", "amount"))
        writer.writerows(rows)
    print(f"wrote {len(rows)} orders to {OUTPUT}")


if __name__ == "__main__":
    main()
