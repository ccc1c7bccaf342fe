"""Write examples/data/churn.csv: a synthetic customer-churn table.

Deterministic (a fixed seed and the standard library's Mersenne Twister, whose
sequence Python keeps stable), so running it again rewrites the same bytes:

    python examples/data/make_churn.py            # writes examples/data/churn.csv
    python examples/data/make_churn.py --check    # exit 1 if the file differs

Columns: customer_id, age (int, some missing), purchases (int), avg_basket (float,
some missing), country (category, some missing), plan (category), churned (0/1,
the target). Churn is more likely for young customers with few purchases, on the
monthly plan, and in some countries, so a model has something to learn.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import sys
from pathlib import Path

ROWS = 1500
SEED = 20240601
COUNTRIES = ("FR", "DE", "ES", "IT", "UK", "US")
COUNTRY_WEIGHTS = (0.28, 0.22, 0.14, 0.12, 0.14, 0.10)
COUNTRY_EFFECT = {"FR": 0.0, "DE": -0.3, "ES": 0.4, "IT": 0.3, "UK": -0.1, "US": 0.2}
PLANS = ("monthly", "yearly")
OUT = Path(__file__).with_name("churn.csv")


def _row(rng: random.Random, i: int) -> list[str]:
    age = min(90, max(18, round(rng.gauss(41, 13))))
    purchases = min(200, int(rng.expovariate(1 / 12)))
    avg_basket = round(rng.lognormvariate(3.4, 0.5), 2)
    country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
    plan = "monthly" if rng.random() < 0.6 else "yearly"
    logit = (
        0.8
        - 0.035 * (age - 41)
        - 0.09 * purchases
        - 0.004 * (avg_basket - 30)
        + COUNTRY_EFFECT[country]
        + (0.9 if plan == "monthly" else -0.6)
    )
    churned = int(rng.random() < 1 / (1 + math.exp(-logit)))
    cells = [f"C{i:05d}", str(age), str(purchases), f"{avg_basket:.2f}", country, plan]
    # Missing values: about 4 % of ages, 2 % of baskets, 3 % of countries.
    for column, share in ((1, 0.04), (3, 0.02), (4, 0.03)):
        if rng.random() < share:
            cells[column] = ""
    return [*cells, str(churned)]


def render() -> str:
    rng = random.Random(SEED)
    buf = io.StringIO()
    buf.write("customer_id,age,purchases,avg_basket,country,plan,churned\n")
    for i in range(1, ROWS + 1):
        buf.write(",".join(_row(rng, i)) + "\n")
    return buf.getvalue()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({ROWS} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
