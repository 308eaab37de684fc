# -*- coding: utf-8 -*-
"""Late and out-of-order indexing against the changes query.

ERP5's catalog stamps ``indexation_timestamp`` when an indexing transaction writes a row,
and the row becomes visible when that transaction commits, later; two indexing
transactions can commit in the other order. A reader whose cursor passed a later stamp
then never sees the earlier one. ``LateCatalogSite`` models exactly that (stamps at index
time, visibility at commit, commits in random order, each within ``MAX_DELAY`` of its
stamp); the tests replay randomized interleavings of head-office edits, indexing starts,
commits and a gateway's polls, and check that the gateway ends with every document's last
version. Without the overlap window the skip shows; with it, no interleaving misses one."""

import datetime
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sync_gateway_receiver as core  # noqa: E402
from fake_site import FakeSite, parse_version  # noqa: E402

MAX_DELAY_US = 500000  # an indexing transaction commits within 0.5 s of its stamp
WINDOW_SECONDS = 1  # the receiver's overlap window: longer than MAX_DELAY_US
DOCS = ["person_module/%d" % i for i in range(1, 5)]


class LateCatalogSite(FakeSite):
    """A FakeSite whose catalog indexes late: a change queues its document; an indexer
    stamps it (the clock's microseconds) when it starts, and the row becomes visible only
    when that indexing commits."""

    def __init__(self, now):
        FakeSite.__init__(self, now)
        self.clock_us = 0
        self.queue = []  # documents changed, not yet being indexed
        self.in_flight = []  # (stamp, doc_id) being indexed
        self.visible = {}  # doc_id -> (stamp, uid): committed rows

    def _reindex(self, doc_id):
        if doc_id not in self.queue:
            self.queue.append(doc_id)

    def start_indexing(self, rnd):
        doc_id = self.queue.pop(rnd.randrange(len(self.queue)))
        self.in_flight.append((self.clock_us, doc_id))

    def commit_indexing(self, index):
        stamp, doc_id = self.in_flight.pop(index)
        old = self.visible.get(doc_id)
        if old is None or old[0] <= stamp:
            self.visible[doc_id] = (stamp, DOCS.index(doc_id) if doc_id in DOCS else 99)

    def advance(self, us):
        """Moves the clock; indexings that would pass MAX_DELAY_US commit first."""
        self.clock_us += us
        self.now = parse_version("2026-03-01T10:00:00.000000Z") + datetime.timedelta(microseconds=self.clock_us)
        for i in reversed(range(len(self.in_flight))):
            if self.in_flight[i][0] + MAX_DELAY_US < self.clock_us:
                self.commit_indexing(i)

    def overlapStart(self, key, seconds):
        return [key[0] - int(seconds * 1000000), -1]

    def searchChanges(self, portal_type, query, after, limit):
        rows = sorted([list(k), doc_id] for doc_id, k in self.visible.items())
        out = [{"id": doc_id, "key": k} for k, doc_id in rows if after is None or k > after]
        return out[:limit]


def interleaving(seed, overlap_seconds):
    """Runs one randomized interleaving; returns the documents whose last version the
    gateway did not get."""
    rnd = random.Random(seed)
    site = LateCatalogSite(parse_version("2026-03-01T10:00:00.000000Z"))
    for doc_id in DOCS:
        site.load(doc_id, "Person", "2026-02-01T00:00:00.000000Z", {"title": doc_id})
    while site.queue:
        site.start_indexing(rnd)
    while site.in_flight:
        site.commit_indexing(0)
    receiver = core.Receiver(site, core.MemoryStorage(), overlap_seconds=overlap_seconds)
    cursor, have = None, {}

    def poll():
        answer = receiver.changes({"gateway": "g", "limit": rnd.randint(1, 3),
                                   "scopes": [{"name": "s", "cursor": cursor}]})["scopes"][0]
        for row in answer["rows"]:
            have[row["id"]] = row["version"]
        return answer["cursor"], answer["more"]

    for _ in range(rnd.randint(4, 16)):
        site.advance(rnd.randint(0, 200000))
        event = rnd.random()
        if event < 0.3:
            site.edit(rnd.choice(DOCS), {"title": "t%d" % rnd.randint(0, 10 ** 6)})
        elif event < 0.5 and site.queue:
            site.start_indexing(rnd)
        elif event < 0.7 and site.in_flight:
            site.commit_indexing(rnd.randrange(len(site.in_flight)))
        else:
            cursor, _ = poll()
    while site.queue or site.in_flight:  # everything gets indexed in the end
        if site.queue:
            site.start_indexing(rnd)
        site.advance(MAX_DELAY_US + 1)
    more = True
    while more:
        cursor, more = poll()
    return [d for d in DOCS if have.get(d) != site.getState(d)["version"]]


class TestLateIndexing(unittest.TestCase):
    def test_without_overlap_window_documents_are_skipped(self):
        missed = [seed for seed in range(500) if interleaving(seed, 0)]
        self.assertGreater(len(missed), 0, "the model shows the skip")

    def test_overlap_window_never_misses(self):
        for seed in range(10000):
            missed = interleaving(seed, WINDOW_SECONDS)
            self.assertEqual(missed, [], "seed %d" % seed)

    def test_cursor_keeps_only_the_window(self):
        site = LateCatalogSite(parse_version("2026-03-01T10:00:00.000000Z"))
        for i, doc_id in enumerate(DOCS):
            site.load(doc_id, "Person", "2026-02-01T00:00:00.000000Z", {"title": doc_id})
            site.start_indexing(random.Random(0))
            site.commit_indexing(0)
            site.advance(WINDOW_SECONDS * 1000000 // 2)
        receiver = core.Receiver(site, core.MemoryStorage(), overlap_seconds=WINDOW_SECONDS)
        answer = receiver.changes({"gateway": "g", "scopes": [{"name": "s", "cursor": None}]})["scopes"][0]
        self.assertEqual(len(answer["rows"]), 4)
        position, sent = core.decode_cursor(answer["cursor"])
        # Only the rows within the window behind the position are remembered.
        self.assertEqual(sorted(k[0] for k in sent), [position[0] - 1000000, position[0] - 500000, position[0]])
        again = receiver.changes({"gateway": "g", "scopes": [{"name": "s", "cursor": answer["cursor"]}]})["scopes"][0]
        self.assertEqual((again["rows"], again["cursor"], again["more"]), ([], answer["cursor"], False))


if __name__ == "__main__":
    unittest.main()
