"""Unit tests of the code interpreter server's pure parts (interp_proto):
python3 -m unittest -v interp_proto_test (ctest: interp_unit_test)."""

import json
import os
import tempfile
import unittest

import interp_proto as p


class RequestTest(unittest.TestCase):
    def test_execute(self):
        self.assertEqual(p.parse_execute(b'{"code":"1+1"}'), ("1+1", None, None, {}))
        self.assertEqual(p.parse_execute(b'{"code":"x","language":"JS","env_vars":{"A":"b"}}'),
                         ("x", None, "javascript", {"A": "b"}))
        self.assertEqual(p.parse_execute(b'{"code":"x","context_id":"c1","env_vars":null}'),
                         ("x", "c1", None, {}))

    def test_execute_errors_name_the_field(self):
        for body, what in [(b'', "code"), (b'[1]', "JSON object"), (b'{"code":1}', "code"),
                           (b'{"code":"x","language":"cobol"}', "cobol"),
                           (b'{"code":"x","context_id":"a","language":"python"}', "not both"),
                           (b'{"code":"x","env_vars":{"A-B":"1"}}', "A-B"),
                           (b'{"code":"x","env_vars":{"A":1}}', "env_vars.A"),
                           (b'{"code":"x","env_vars":[]}', "env_vars"),
                           (b'{nope', "not JSON")]:
            with self.assertRaises(p.BadRequest, msg=body) as cm:
                p.parse_execute(body)
            self.assertIn(what, str(cm.exception))

    def test_context(self):
        self.assertEqual(p.parse_context(b''), ("python", None))
        self.assertEqual(p.parse_context(b'{"language":"bash","cwd":"/tmp"}'), ("bash", "/tmp"))
        with self.assertRaises(p.BadRequest):
            p.parse_context(b'{"cwd":"relative"}')

    def test_languages(self):
        for alias, want in [(None, "python"), ("Python", "python"), ("js", "javascript"),
                            (" node ", "javascript"), ("sh", "bash")]:
            self.assertEqual(p.normalize_language(alias), want)


class EventTest(unittest.TestCase):
    def test_result_mime_keys(self):
        ev = p.result_event({"text/plain": "2", "text/html": "<b>", "image/png": "iVBO",
                             "application/json": {"a": 1}, "application/x-custom": "z",
                             "text/markdown": ["a", "b"]}, True)
        self.assertEqual(ev, {"type": "result", "is_main_result": True, "text": "2",
                              "html": "<b>", "png": "iVBO", "json": {"a": 1},
                              "application/x-custom": "z", "markdown": "ab"})
        self.assertFalse(p.result_event({}, False)["is_main_result"])

    def test_lines_are_never_blank(self):
        out = p.line(p.stream_event("stdout", "a\n\nb\n"))
        self.assertEqual(out.count(b"\n"), 1)
        self.assertTrue(out.endswith(b"\n"))
        self.assertEqual(json.loads(out)["text"], "a\n\nb\n")


class EnvTest(unittest.TestCase):
    def test_changes_and_restore(self):
        self.assertEqual(p.env_changes({"A": "1", "B": "2"}, {"A": "1", "C": "3"}),
                         {"C": "3", "B": None})
        self.assertEqual(p.env_restore(["A", "X"], {"A": "1"}), {"A": "1", "X": None})

    def test_env_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "envs.json")
            f = p.EnvFile(path)
            self.assertEqual(f.get(), {})
            with open(path, "w") as w:
                w.write('{"A":"1","B":2,"":"x","C=D":"y"}')
            self.assertEqual(f.get(), {"A": "1"})
            tmp = path + ".tmp"
            with open(tmp, "w") as w:
                w.write('{"A":"2"}')
            os.rename(tmp, path)  # as the daemon writes it: a new inode
            self.assertEqual(f.get(), {"A": "2"})
            with open(tmp, "w") as w:
                w.write('[1]')
            os.rename(tmp, path)
            self.assertEqual(f.get(), {})
            self.assertIn("JSON object", f.error)
            os.unlink(path)
            self.assertEqual(f.get(), {})


class HttpTest(unittest.TestCase):
    def test_head(self):
        h = p.parse_head(b"POST /contexts/x/restart?a=b HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Length: 3\r\nX-A: 1\r\nx-a: 2")
        self.assertEqual((h.method, h.path), ("POST", "/contexts/x/restart"))
        self.assertEqual(h.header("X-A"), "1,2")
        self.assertEqual(p.body_length(h), ("length", 3))
        h = p.parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked")
        self.assertEqual(p.body_length(h), ("chunked", None))

    def test_keep_alive(self):
        for head, keep in [(b"GET / HTTP/1.1", True), (b"GET / HTTP/1.1\r\nConnection: close", False),
                           (b"GET / HTTP/1.1\r\nConnection: TE, Close", False),
                           (b"GET / HTTP/1.0", False),
                           (b"GET / HTTP/1.0\r\nConnection: keep-alive", True)]:
            self.assertEqual(p.keep_alive(p.parse_head(head)), keep, head)

    def test_bad_heads(self):
        for head in [b"GET /", b"GET / HTTP/2", b"GET / HTTP/1.1\r\nno colon",
                     b"GET / HTTP/1.1\r\n Bad: x"]:
            with self.assertRaises(p.BadRequest, msg=head):
                p.parse_head(head)
        for hdr in [b"Content-Length: x", b"Content-Length: 99999999999",
                    b"Transfer-Encoding: gzip"]:
            with self.assertRaises(p.BadRequest, msg=hdr):
                p.body_length(p.parse_head(b"POST / HTTP/1.1\r\n" + hdr))


class MarkerTest(unittest.TestCase):
    def test_split_anywhere(self):
        stream = "out" + p.marker(3, 0) + "late" + p.marker(4, 130) + "x\x1e"
        for cut in range(len(stream) + 1):
            s = p.MarkerScanner()
            t1, m1 = s.feed(stream[:cut])
            t2, m2 = s.feed(stream[cut:])
            self.assertEqual(t1 + t2 + s.flush(), "outlatex\x1e", cut)
            self.assertEqual(m1 + m2, [(3, 0), (4, 130)], cut)

    def test_not_a_marker(self):
        s = p.MarkerScanner()
        text, marks = s.feed("\x1eWBnope\x1e and " + "\x1eWB" + "y" * 100)
        self.assertEqual(marks, [])
        self.assertEqual(text + s.flush(), "\x1eWBnope\x1e and \x1eWB" + "y" * 100)


if __name__ == "__main__":
    unittest.main()
