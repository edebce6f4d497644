"""The registration DB: registrations, producers, wildcards, activity and tombstones."""
from __future__ import annotations

import threading
import time

from nsqlookupd_sync.registration_db import (ZERO_TIME_UNIX_NANO, PeerInfo, Producer, Registration,
                                             RegistrationDB, filter_by_active,
                                             filter_registrations, keys, subkeys)


def peer(pid: str, address: str = "node", http_port: int = 4151) -> PeerInfo:
    p = PeerInfo(id=pid, remote_address=pid, hostname="h-" + pid, broadcast_address=address,
                 tcp_port=4150, http_port=http_port, version="1.3.0")
    p.touch()
    return p


def test_registration_matching():
    r = Registration("channel", "t", "c")
    assert r.is_match("channel", "t", "c")
    assert r.is_match("channel", "*", "c")
    assert r.is_match("channel", "t", "*")
    assert r.is_match("channel", "*", "*")
    assert not r.is_match("topic", "t", "c")
    assert not r.is_match("channel", "u", "*")
    assert not r.is_match("channel", "t", "d")


def test_add_and_remove_producers():
    db = RegistrationDB()
    a, b = peer("a"), peer("b")
    k = Registration("topic", "t", "")
    assert db.add_producer(k, Producer(a)) is True
    assert db.add_producer(k, Producer(a)) is False  # already there
    assert db.add_producer(k, Producer(b)) is True
    assert [p.peer_info for p in db.find_producers("topic", "t", "")] == [a, b]
    assert db.remove_producer(k, "a") == (True, 1)
    assert db.remove_producer(k, "a") == (False, 1)
    assert db.remove_producer(k, "b") == (True, 0)
    # the registration outlives its producers
    assert db.find_registrations("topic", "t", "") == [k]
    assert db.remove_producer(Registration("topic", "nope", ""), "a") == (False, 0)
    db.remove_registration(k)
    assert db.find_registrations("topic", "t", "") == []
    db.remove_registration(k)  # absent: no error


def test_add_registration_is_idempotent():
    db = RegistrationDB()
    k = Registration("topic", "t", "")
    db.add_producer(k, Producer(peer("a")))
    db.add_registration(k)
    assert len(db.find_producers("topic", "t", "")) == 1


def test_wildcard_finds():
    db = RegistrationDB()
    a, b = peer("a"), peer("b")
    for topic, channel, p in (("t1", "c1", a), ("t1", "c2", b), ("t2", "c1", a)):
        db.add_producer(Registration("channel", topic, channel), Producer(p))
        db.add_producer(Registration("topic", topic, ""), Producer(p))
    assert keys(db.find_registrations("topic", "*", "")) == ["t1", "t2"]
    assert subkeys(db.find_registrations("channel", "t1", "*")) == ["c1", "c2"]
    assert len(db.find_registrations("channel", "*", "*")) == 3
    assert db.find_registrations("channel", "t9", "*") == []
    # each peer once, even when it matches several registrations
    assert [p.peer_info.id for p in db.find_producers("channel", "*", "*")] == ["a", "b"]
    assert [p.peer_info.id for p in db.find_producers("channel", "*", "c1")] == ["a"]
    assert db.find_producers("topic", "none", "") == []


def test_lookup_registrations_of_a_peer():
    db = RegistrationDB()
    a = peer("a")
    db.add_producer(Registration("client", "", ""), Producer(a))
    db.add_producer(Registration("topic", "t", ""), Producer(a))
    db.add_producer(Registration("channel", "t", "c"), Producer(a))
    db.add_producer(Registration("topic", "u", ""), Producer(peer("b")))
    regs = db.lookup_registrations("a")
    assert len(regs) == 3
    assert keys(filter_registrations(regs, "topic", "*", "")) == ["t"]
    assert db.lookup_registrations("zz") == []


def test_filter_by_active_drops_silent_producers():
    fresh, stale = peer("fresh"), peer("stale")
    stale.last_update = time.time_ns() - 10 * 10**9
    producers = [Producer(fresh), Producer(stale)]
    assert [p.peer_info.id for p in filter_by_active(producers, 5.0, 45.0)] == ["fresh"]
    assert len(filter_by_active(producers, 60.0, 45.0)) == 2
    stale.touch()
    assert len(filter_by_active(producers, 5.0, 45.0)) == 2


def test_tombstones_are_per_registration_and_expire():
    db = RegistrationDB()
    a, b = peer("a", "node-a", 1), peer("b", "node-b", 2)
    for p in (a, b):
        db.add_producer(Registration("topic", "t", ""), Producer(p))
        db.add_producer(Registration("topic", "u", ""), Producer(p))
    assert db.tombstone("t", "node-a:1") == 1
    assert db.tombstone("t", "node-a:2") == 0  # wrong port
    assert db.tombstone("none", "node-a:1") == 0
    t_producers = db.find_producers("topic", "t", "")
    assert [p.peer_info.id for p in filter_by_active(t_producers, 60, 45)] == ["b"]
    assert len(filter_by_active(db.find_producers("topic", "u", ""), 60, 45)) == 2
    # lifetime 0 (what /nodes uses) ignores tombstones; a short lifetime expires
    assert len(filter_by_active(t_producers, 60, 0)) == 2
    tombstoned = t_producers[0]
    assert tombstoned.is_tombstoned(45) and not tombstoned.is_tombstoned(0)
    deadline = time.monotonic() + 2
    while tombstoned.is_tombstoned(0.05):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert str(tombstoned) == "node-a [4150, 1]"


def test_debug_view():
    db = RegistrationDB()
    a = peer("a")
    db.add_producer(Registration("channel", "t", "c"), Producer(a))
    db.add_registration(Registration("topic", "empty", ""))
    data = db.debug()
    assert list(data) == ["channel:t:c"]  # registrations without producers are not listed
    (rec,) = data["channel:t:c"]
    assert list(rec) == sorted(rec)
    assert rec["id"] == "a" and rec["last_update"] == a.last_update
    assert rec["tombstoned"] is False and rec["tombstoned_at"] == ZERO_TIME_UNIX_NANO
    db.tombstone("t", "x")  # no topic registration for t: nothing changes
    db.add_producer(Registration("topic", "t", ""), Producer(a))
    db.tombstone("t", "node:4151")
    (rec,) = db.debug()["topic:t:"]
    assert rec["tombstoned"] is True and rec["tombstoned_at"] > 0


def test_peer_info_json_shape():
    assert list(peer("a").to_json()) == ["remote_address", "hostname", "broadcast_address",
                                         "tcp_port", "http_port", "version"]


def test_concurrent_use():
    db = RegistrationDB()
    errors = []

    def worker(i: int) -> None:
        try:
            p = peer("p%d" % i)
            for n in range(200):
                k = Registration("topic", "t%d" % (n % 5), "")
                db.add_producer(k, Producer(p))
                db.find_producers("topic", "*", "")
                db.lookup_registrations(p.id)
                db.remove_producer(k, p.id)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), name="db-test-%d" % i) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert db.find_producers("topic", "*", "") == []
