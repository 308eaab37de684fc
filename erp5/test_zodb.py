# -*- coding: utf-8 -*-
"""The receiver core on persistent documents and records under real transactions.

The test vectors of testdata/ replayed on ``zodb_site`` (documents and records in OOBTrees,
savepoints through ``transaction``, each request a committed transaction); then the
concurrency property: several request threads, each with its own transaction manager and
connection, committing concurrently, with Zope's retry on ConflictError. Needs Debian's
python3-btrees, python3-persistent and python3-transaction (run with /usr/bin/python3)."""

import datetime
import os
import random
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sync_gateway_receiver as core  # noqa: E402
import zodb_site  # noqa: E402
from fake_site import parse_version  # noqa: E402
from test_receiver import VectorRunner, vector_files  # noqa: E402
from zodb_standin import VersionedStore  # noqa: E402

import json  # noqa: E402


class Clock(object):
    """A settable clock shared by the threads of one test."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class _Documents(object):
    """What VectorRunner.run reads as its site: the clock, and states read in a fresh
    transaction."""

    def __init__(self, runner):
        self.runner = runner

    @property
    def now(self):
        return self.runner.clock.now

    @now.setter
    def now(self, value):
        self.runner.clock.now = value

    def getState(self, doc_id):
        return self.runner.publisher.publish(lambda r, site: site.getState(doc_id))


class _Endpoints(object):
    """The receiver's HTTP entry points, each call one published request."""

    def __init__(self, publisher):
        self.publisher = publisher

    def __getattr__(self, name):
        def call(*args):
            return self.publisher.publish(lambda r, site: getattr(r, name)(*args))
        return call


class ZODBVectorRunner(VectorRunner):
    """Replays a vector with each request, head-office change and check its own
    transaction on a fresh database."""

    def __init__(self, vector):
        self.vector = vector
        self.clock = Clock(parse_version(vector["now"]))
        self.store = VersionedStore()
        self.catalog = zodb_site.Catalog()
        cfg = vector.get("config", {})
        options = dict(max_entries=cfg.get("max_entries", core.DEFAULT_MAX_ENTRIES),
                       max_batch_bytes=cfg.get("max_batch_bytes", core.DEFAULT_MAX_BATCH_BYTES),
                       retention_days=cfg.get("retention_days", core.DEFAULT_RETENTION_DAYS),
                       encodings=cfg.get("encodings", ["gzip"]))
        self.publisher = zodb_site.Publisher(self.store, self.catalog, self.clock, retries=0,
                                             receiver_options=options)
        self.publisher.run(zodb_site.install)

        def load(r, site):
            for d in vector.get("documents", []):
                site.load(d["id"], d["portal_type"], d["version"], d.get("properties", {}))
        self.publisher.publish(load)
        self.site = _Documents(self)
        self.receiver = _Endpoints(self.publisher)
        self.captures = {}

    def head_office(self, op):
        def change(r, site):
            if op["op"] == "edit":
                site.edit(op["id"], op["properties"])
            elif op["op"] == "create":
                doc_id = site.newContent(op["portal_type"], op["parent_relative_url"], op.get("properties", {}))
                if "capture" in op:
                    self.captures[op["capture"]] = doc_id
            elif op["op"] == "transition":
                site.transition(op["id"], op["transition"], "")
            else:
                raise AssertionError("unknown head_office op %r" % op["op"])
        self.publisher.publish(change)


class TestVectorsOnZODB(unittest.TestCase):
    def test_vectors(self):
        for path in vector_files():
            with open(path) as f:
                vector = json.load(f)
            with self.subTest(vector=os.path.basename(path)):
                ZODBVectorRunner(vector).run(self)


def entry_hash(entry):
    import hashlib
    body = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(body).hexdigest()


class RoundGate(object):
    """Orders one round's first attempts: every actor runs its request, waits until all
    have (so all read the same snapshot), then commits in the round's seeded order.
    Retries are not gated: they run as they come."""

    def __init__(self, order):
        self.barrier = threading.Barrier(len(order), timeout=120)
        self.cond = threading.Condition()
        self.order = order
        self.turn = 0

    def actor(self, index):
        gate = self

        class ActorGate(object):
            barrier = gate.barrier

            def before_commit(self, attempt):
                if attempt == 0:
                    gate.barrier.wait()
                    with gate.cond:
                        if not gate.cond.wait_for(lambda: gate.order[gate.turn] == index, timeout=120):
                            raise AssertionError("commit turn never came")

            def after_commit(self, attempt):
                if attempt == 0:
                    with gate.cond:
                        gate.turn += 1
                        gate.cond.notify_all()
        return ActorGate()


DOCS = ["person_module/%d" % i for i in range(1, 5)]
T0 = "2026-03-01T10:00:00.000000Z"


class Scenario(object):
    """One seed: two gateways (the first with two batches in flight, the second racing a
    resend of the first's), a head-office user, several rounds of concurrent requests."""

    def __init__(self, seed, retries=zodb_site.RETRIES, storage=None, rounds=3):
        self.rnd = random.Random(seed)
        self.seed = seed
        self.rounds = rounds
        self.clock = Clock(parse_version(T0))
        self.clock_lock = threading.Lock()
        self.store = VersionedStore()
        self.catalog = zodb_site.Catalog()
        self.retries = retries
        self.shared_storage = storage
        self.publishers = [self.publisher() for _ in range(4)]
        self.publishers[0].run(zodb_site.install)

        def load(r, site):
            for i, doc_id in enumerate(DOCS):
                site.load(doc_id, "Person", T0, {"title": "T%d" % i})
        self.publishers[0].publish(load)
        self.seq = {"g1": 0, "g2": 0}
        self.sent = {}  # (gateway, seq) -> entry
        self.answers = {}  # (gateway, seq) -> [results received in 200 answers]
        self.pending = []  # batches to resend: (gateway, entries)
        self.statuses = []  # every HTTP status answered
        self.hq_tokens = []
        self.hq_failed = set()
        self.errors = []

    def tick(self):
        with self.clock_lock:
            self.clock.now = self.clock.now + datetime.timedelta(milliseconds=1)
            return self.clock.now

    def publisher(self):
        p = zodb_site.Publisher(self.store, self.catalog, self.tick, retries=self.retries)
        if self.shared_storage is not None:  # a mutation: records outside the transaction
            base = p.receiver

            def receiver():
                r, site = base()
                r.storage = self.shared_storage
                return r, site
            p.receiver = receiver
        return p

    def new_entries(self, gateway, count):
        docs = self.rnd.sample(DOCS, count)
        out = []
        for doc_id in docs:
            self.seq[gateway] += 1
            seq = self.seq[gateway]
            token = "%s-%d" % (gateway, seq)
            kind = self.rnd.choice(["mark", "title", "bad", "post"])
            mark = "mark_" + token.replace("-", "_")
            if kind == "mark":
                e = {"seq": seq, "op": "put", "id": doc_id, "fields": {mark: token}}
            elif kind == "title":
                e = {"seq": seq, "op": "put", "id": doc_id, "fields": {"title": token, mark: token},
                     "base": {"title": "T%d" % DOCS.index(doc_id)}}
            elif kind == "bad":  # the mark is set, then start_date fails: rolled back
                e = {"seq": seq, "op": "put", "id": doc_id,
                     "fields": {mark: token, "start_date": "not a date"}}
            else:
                e = {"seq": seq, "op": "post", "portal_type": "Person",
                     "parent_relative_url": "person_module", "fields": {mark: token}}
            if self.rnd.random() < 0.3:
                e["peer"], e["key"] = "tablet-%d" % self.rnd.randint(1, 2), "k-%s" % token
            e["hash"] = entry_hash(e)
            self.sent[(gateway, seq)] = e
            out.append(e)
        return out

    def batch_handler(self, gateway, entries):
        body = json.dumps({"gateway": gateway, "epoch": "e-" + gateway, "entries": entries}).encode()
        return lambda r, site: r.http_batch(body, None)

    def hq_handler(self, n):
        token = "hq-%d" % n
        doc_id = self.rnd.choice(DOCS)
        self.hq_tokens.append(token)

        def change(r, site):
            site.edit(doc_id, {"title": token, "mark_" + token.replace("-", "_"): token})
            return core.Response(200, {}, b"")
        return change

    def run(self):
        for n in range(self.rounds):
            a = self.new_entries("g1", self.rnd.randint(1, 3))
            b_new = self.new_entries("g1", self.rnd.randint(1, 2))
            b_docs = set(e.get("id") for e in b_new)
            racing = [e for e in a if e.get("id") not in b_docs or e["op"] == "post"][:self.rnd.randint(0, 2)]
            b = sorted(b_new + racing, key=lambda e: e["seq"])
            c = self.new_entries("g2", self.rnd.randint(1, 3))
            actors = [(self.publishers[0], "g1", a), (self.publishers[1], "g1", b),
                      (self.publishers[2], "g2", c), (self.publishers[3], None, n)]
            resend, self.pending = self.pending, []
            order = list(range(len(actors)))
            self.rnd.shuffle(order)
            gate = RoundGate(order)
            threads = [threading.Thread(target=self.act, args=(gate.actor(i),) + actor)
                       for i, actor in enumerate(actors)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for gateway, entries in resend:
                self.send(self.publishers[0], gateway, entries, None)
        while self.pending:  # the gateways resend what got no answer, one at a time
            pending, self.pending = self.pending, []
            for gateway, entries in pending:
                self.send(self.publishers[0], gateway, entries, None)
        if self.errors:
            raise self.errors[0]

    def act(self, gate, publisher, gateway, what):
        try:
            if gateway is None:
                handler = self.hq_handler(what)
                resp = publisher.publish(handler, gate)
                self.statuses.append(resp.status)
                if resp.status != 200:  # the user sees an error and gives up
                    self.hq_failed.add("hq-%d" % what)
            else:
                self.send(publisher, gateway, what, gate)
        except BaseException as e:  # reported by run()
            self.errors.append(e)
            gate_barrier = getattr(gate, "barrier", None)
            if gate_barrier is not None:
                gate_barrier.abort()

    def send(self, publisher, gateway, entries, gate):
        resp = publisher.publish(self.batch_handler(gateway, entries), gate)
        self.statuses.append(resp.status)
        if resp.status != 200:
            self.pending.append((gateway, entries))
            return
        for result in zodb_site.json_body(resp)["results"]:
            self.answers.setdefault((gateway, result["seq"]), []).append(result)

    def check(self, test):
        """Every entry applied exactly once; results, records and documents agree."""
        def read(r, site):
            docs = dict((k, v) for k, v in site.documents.items())
            tokens = {}
            for doc_id, doc in docs.items():
                for what in doc.history:
                    if what[0] != "edit":
                        continue
                    for k, v in what[1]:
                        if k.startswith("mark_"):
                            tokens.setdefault(v, []).append(doc_id)
            results = {}
            for gateway in ("g1", "g2"):
                if self.seq[gateway]:
                    got = r.results(gateway, "e-" + gateway, "1-%d" % self.seq[gateway])["results"]
                    for res in got:
                        results[(gateway, res["seq"])] = res
            return tokens, results
        tokens, results = self.publishers[0].publish(read)
        where = "seed %d" % self.seed
        applied = set()
        for (gateway, seq), entry in sorted(self.sent.items()):
            res = results[(gateway, seq)]
            token = "%s-%d" % (gateway, seq)
            test.assertNotEqual(res["status"], "unknown", "%s: %s never recorded" % (where, token))
            test.assertEqual(res.get("hash"), entry["hash"], where)
            for answer in self.answers.get((gateway, seq), []):
                stored = dict(res)
                stored.pop("hash")
                test.assertEqual(answer, stored, "%s: %s answered %r, stored %r" % (where, token, answer, stored))
            want = 1 if res["status"] == "ok" else 0
            test.assertEqual(len(tokens.get(token, [])), want,
                             "%s: %s is %s, applied %d times" % (where, token, res["status"], len(tokens.get(token, []))))
            if want:
                applied.add(token)
                test.assertEqual(tokens[token], [res["id"]], where)
        for token in self.hq_tokens:
            want = 0 if token in self.hq_failed else 1
            test.assertEqual(len(tokens.get(token, [])), want, "%s: head office %s" % (where, token))
        stray = set(tokens) - applied - set(self.hq_tokens)
        test.assertEqual(stray, set(), "%s: changes without a record" % where)


class TestConcurrency(unittest.TestCase):
    SEEDS = 200

    def test_exactly_once_under_concurrent_requests(self):
        conflicts = 0
        for seed in range(self.SEEDS):
            sc = Scenario(seed)
            sc.run()
            sc.check(self)
            self.assertEqual([s for s in sc.statuses if s != 200], [],
                             "seed %d: Zope's retries absorb every conflict" % seed)
            conflicts += sum(p.conflicts for p in sc.publishers)
        self.assertGreater(conflicts, self.SEEDS, "the scenarios collide")

    def test_without_retries_requests_fail(self):
        # The same scenarios without the publisher's retries: conflicts reach the gateway as
        # 503 (the gateway resends; nothing is applied twice, but the property above fails).
        failed = 0
        for seed in range(20):
            sc = Scenario(seed, retries=0)
            sc.run()
            sc.check(self)
            failed += len([s for s in sc.statuses if s == 503])
        self.assertGreater(failed, 0)

    def test_records_outside_the_transaction_break_exactly_once(self):
        # Records kept outside the transaction (a plain dict shared by the threads) survive
        # an aborted attempt: the retry then answers from a record whose change was rolled
        # back. The property catches it.
        broken = 0
        for seed in range(20):
            sc = Scenario(seed, storage=core.MemoryStorage())
            sc.run()
            try:
                sc.check(self)
            except AssertionError:
                broken += 1
        self.assertGreater(broken, 0)


class TestRetention(unittest.TestCase):
    def test_purge_in_committed_chunks(self):
        clock = Clock(parse_version(T0))
        store = VersionedStore()
        pub = zodb_site.Publisher(store, zodb_site.Catalog(), clock,
                                  receiver_options={"retention_days": 1})
        pub.run(zodb_site.install)
        for day in range(3):  # 50 records a day for three days
            clock.now = parse_version(T0) + datetime.timedelta(days=day)
            pub.publish(lambda r, site, day=day: [r.storage.set(("seq", "g", "e", day * 100 + i),
                                                                {"hash": "h", "result": {"seq": day * 100 + i, "status": "ok"}})
                                                  for i in range(50)])
        clock.now = parse_version(T0) + datetime.timedelta(days=2, hours=1)
        chunks = []
        while True:  # the alarm: one transaction per chunk
            n, more = pub.publish(lambda r, site: r.purge(limit=30))
            chunks.append(n)
            if not more:
                break
        self.assertEqual(chunks, [30, 30, 30, 10])
        results = pub.publish(lambda r, site: r.results("g", "e", "0-299")["results"])
        kept = [x["seq"] for x in results if x["status"] != "unknown"]
        self.assertEqual(kept, list(range(200, 250)))
        self.assertEqual(pub.publish(lambda r, site: r.purge(limit=30)), (0, False))

    def test_rewritten_record_keeps_one_time_entry(self):
        clock = Clock(parse_version(T0))
        pub = zodb_site.Publisher(VersionedStore(), zodb_site.Catalog(), clock)
        pub.run(zodb_site.install)
        for minute in range(3):
            clock.now = parse_version(T0) + datetime.timedelta(minutes=minute)
            pub.publish(lambda r, site: r.storage.set(("own", "g", "person_module/1"), {"version": "v"}))
        self.assertEqual(pub.run(lambda root: len(root["records_by_time"])), 1)


if __name__ == "__main__":
    unittest.main()
