# -*- coding: utf-8 -*-
"""Measures the record trees: bytes per million records (the committed pickles of every
bucket and node of both OOBTrees, as the stand-in stores them: ZODB's records are the same
pickles plus a small header each) and purge time per 100,000 records (in chunks of 1,000,
one committed transaction each). Usage: /usr/bin/python3 erp5/measure_records.py [N]"""

import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zodb_site  # noqa: E402
from zodb_standin import VersionedStore  # noqa: E402


def main(n):
    clock = [datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)]
    store = VersionedStore()
    pub = zodb_site.Publisher(store, zodb_site.Catalog(), lambda: clock[0],
                              receiver_options={"retention_days": 1})
    pub.run(zodb_site.install)
    result = {"seq": 0, "status": "ok", "id": "person_module/12345",
              "version": "2026-03-01T10:00:00.250000Z", "modification_date": "Sun, 01 Mar 2026 10:00:00 +0000",
              "state": {"portal_type": "Person", "title": "Ann Example", "reference": "P-12345",
                        "validation_state": "validated"}}
    per_txn = 500
    for start in range(0, n, per_txn):
        clock[0] += datetime.timedelta(seconds=1)

        def write(r, site, start=start):
            for seq in range(start, min(n, start + per_txn)):
                r.storage.set(("seq", "site-a", "3f2a9c0e1b7d4e55", seq),
                              {"hash": "%064x" % seq, "result": dict(result, seq=seq)})
        pub.publish(write)
    oids = set()
    for tid, changed in store._log:
        oids.update(changed)
    total = sum(len(store.current_pickle(o)) for o in oids)
    print("records: %d, objects: %d, bytes: %d, bytes per million records: %.0f MB"
          % (n, len(oids), total, total * 1e6 / n / 1e6))
    clock[0] += datetime.timedelta(days=2)
    t0 = time.time()
    purged = 0
    while True:
        k, more = pub.publish(lambda r, site: r.purge(1000))
        purged += k
        if not more:
            break
    dt = time.time() - t0
    print("purged %d in %.2f s: %.2f s per 100k" % (purged, dt, dt * 100000 / purged))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200000)
