"""The dask engine's LocalCluster keeps its scheduler's HTTP server to a free port of this machine: with Dask's
default it takes 0.0.0.0:8787, open to the network, and two analyses at once collide there (the second one
warned, which pytest's warnings-as-errors turned into a failed run)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def test_a_dask_analysis_runs_while_port_8787_is_taken(tmp_path: Path) -> None:
    taken = socket.socket()
    try:
        taken.bind(("0.0.0.0", 8787))
        taken.listen()
    except OSError as exc:  # taken already by someone else: the condition this test wants all the same
        assert exc.errno == errno.EADDRINUSE
    try:
        with Store(tmp_path / "a.duckdb") as store:
            stats = pipeline.run([str(SAMPLES / "successWithHTTP")], store, pipeline.Options(engine="dask", workers=1))
        assert stats.new == 1
    finally:
        taken.close()
