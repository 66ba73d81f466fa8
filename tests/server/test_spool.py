"""The spool file: held while its tracker lives, taken over only for the same server and
tenant once its holder is gone, removed when emptied."""

from __future__ import annotations

from pathlib import Path

from lineage.adapters.spool import SqliteSpool, orphans

URL = "http://127.0.0.1:1"


def test_a_spool_is_taken_over_only_when_free_and_for_the_same_server_and_tenant(
        tmp_path: Path) -> None:
    held = SqliteSpool.new(tmp_path, server=URL, tenant="team-a")
    held.append([{"t": "c", "id": "1"}])
    assert orphans(tmp_path, server=URL, tenant="team-a") == []  # its process is alive
    held.close()  # the process is gone; one item not acknowledged
    assert orphans(tmp_path, server=URL, tenant="team-b") == []  # never with another token
    assert orphans(tmp_path, server="http://elsewhere", tenant="team-a") == []
    [found] = orphans(tmp_path, server=URL, tenant="team-a")
    assert [(body, steps, item) for _, body, steps, item in found.head(10, 10)] == [
        ('{"t":"c","id":"1"}', 0, "1")]
    found.delete_through(found.last_seq() or 0)
    found.close()
    assert list(tmp_path.iterdir()) == []  # emptied: file, journal and lock file removed
