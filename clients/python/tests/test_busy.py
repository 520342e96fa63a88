"""Busy: a daemon with one run slot and no queue wait refuses a second run
while the first holds the slot (needs root)."""

from __future__ import annotations

import unittest

from _support import DaemonTestCase, daemon_has_http, daemon_skip_reason, eventually

import warmbox


class BusyTest(DaemonTestCase):
    # One slot, and a run that finds it taken gives up after 1 ms.
    DAEMON_ARGS = ["--size", "1", "--max", "1", "--queue-timeout", "0.001"]

    @classmethod
    def setUpClass(cls) -> None:
        # The HTTP API, when this build has it, must refuse the same way.
        cls.HTTP = daemon_skip_reason() is None and daemon_has_http()
        super().setUpClass()

    def setUp(self) -> None:
        # A run's slot is returned once its sandbox is torn down, a little
        # after the run's answer: start each test with the slot free.
        self.wait_slot_free()

    def hold_the_slot(self) -> warmbox.RunStream:
        s = self.daemon.client().stream(["sh", "-c", "echo holding; sleep 60"])
        # The first output proves the command runs, so the slot is taken.
        self.assertEqual(next(s), warmbox.Output("stdout", b"holding\n"))
        return s

    def wait_slot_free(self) -> None:
        self.assertTrue(eventually(lambda: self.daemon.pool().active == 0, 20), self.daemon.pool())

    def test_socket_busy(self) -> None:
        c = self.daemon.client()
        before = self.daemon.pool().rejected_busy
        with self.hold_the_slot():
            with self.assertRaises(warmbox.Busy) as cm:
                c.run(["true"])
            self.assertTrue(cm.exception.message.startswith("busy("), cm.exception.message)
            self.assertEqual(cm.exception.kind, "busy")
            self.assertIsNone(cm.exception.retry_after)
            # A streamed run meets the same refusal on its first event.
            with self.assertRaises(warmbox.Busy):
                next(c.stream(["true"]))
        self.assertEqual(self.daemon.pool().rejected_busy, before + 2)
        # Once the holder hung up, its slot serves again.
        self.wait_slot_free()
        self.assertEqual(c.run(["echo", "free"]).stdout, b"free\n")

    def test_http_busy_is_429_with_retry_after(self) -> None:
        if not self.HTTP:
            self.skipTest("the daemon in this build has no --http")
        h = self.daemon.http_client()
        with self.hold_the_slot():
            with self.assertRaises(warmbox.Busy) as cm:
                h.run(["true"])
            self.assertEqual(cm.exception.status, 429)
            self.assertIsNotNone(cm.exception.retry_after)
            self.assertGreaterEqual(cm.exception.retry_after or -1, 0)
            with self.assertRaises(warmbox.Busy) as cm:
                h.stream(["true"])
            self.assertEqual(cm.exception.status, 429)
        self.wait_slot_free()
        self.assertEqual(h.run(["echo", "free"]).stdout, b"free\n")


if __name__ == "__main__":
    unittest.main()
