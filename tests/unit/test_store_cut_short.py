"""The check that refuses a store cut short must never refuse a healthy one: DuckDB truncates free blocks off the
end of its file while still counting them, so a store that grew and shrank is smaller than all its blocks."""

from __future__ import annotations

import os
import random
from pathlib import Path

import duckdb
import orjson

from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def test_a_store_that_grew_and_shrank_still_opens(tmp_path: Path) -> None:
    samples = [orjson.loads((p / "measurement.json").read_bytes()) for p in sorted(SAMPLES.iterdir())]
    db = tmp_path / "s.duckdb"
    rng = random.Random(1)
    smaller_than_every_block = 0
    for r in range(12):
        n = rng.choice([10, 200, 1500])
        path = tmp_path / f"in{r}.jsonl"
        path.write_bytes(b"\n".join(orjson.dumps(dict(samples[i % len(samples)], report_id=f"r{r}-{i}"))
                                    for i in range(n)))
        s = Store(db)  # refused here if the check were wrong
        pipeline.run([str(path)], s)
        s.close()
        if r % 4 == 3:  # deletions, as the collector's admin deletes
            con = duckdb.connect(str(db))
            for table in ("observations", "verdicts", "measurements"):
                con.execute(f"DELETE FROM {table} WHERE hash(measurement_uid) % 3 = 0")
            con.close()
        con = duckdb.connect(str(db), read_only=True)
        total, block = con.execute("SELECT total_blocks, block_size FROM pragma_database_size()").fetchone()
        con.close()
        smaller_than_every_block += os.path.getsize(db) < total * block
    Store(db).close()
    assert smaller_than_every_block  # the case the check once got wrong did occur here
