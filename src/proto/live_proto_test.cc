// The live sandboxes' frames (docs/protocol.md, "Live sandboxes"): JSON round
// trips, defaults, and errors that name the bad member.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proto/agent_proto.h"
#include "tests/assert_ok.h"

namespace wb::proto {
namespace {

// The parse error of text names member `key` and is a bad_request.
template <typename Parse>
::testing::AssertionResult FailsNaming(Parse parse, const std::string& text,
                                       const std::string& key) {
  auto r = parse(text);
  if (r.ok()) return ::testing::AssertionFailure() << text << " was accepted";
  std::string msg = r.error().ToString();
  if (r.error().code != ErrorCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << msg << ": not bad_request";
  }
  if (msg.find("(" + key) == std::string::npos) {
    return ::testing::AssertionFailure() << "\"" << msg << "\" does not name " << key;
  }
  return ::testing::AssertionSuccess();
}

std::string Deep() { return std::string(1000, '[') + std::string(1000, ']'); }

TEST(LiveExecRequestTest, PoolRunEncodesAsBefore) {
  ExecRequest r;
  r.argv = {"ls"};
  EXPECT_EQ(ToJson(r),
            R"({"argv":["ls"],"cwd":"","env":[],"nofile":0,"output_cap":16777216,"stdin":false,)"
            R"("timeout_ms":0,"user":""})");
}

TEST(LiveExecRequestTest, LiveMembersRoundTrip) {
  ExecRequest r;
  r.argv = {"sh"};
  r.keep = true;
  r.tty = true;
  r.rows = 50;
  r.cols = 132;
  r.tag = "main";
  r.ring_bytes = 4096;
  auto p = ParseExecRequest(ToJson(r));
  ASSERT_OK(p);
  EXPECT_TRUE(p->keep);
  EXPECT_TRUE(p->tty);
  EXPECT_EQ(p->rows, 50u);
  EXPECT_EQ(p->cols, 132u);
  EXPECT_EQ(p->tag, "main");
  EXPECT_EQ(p->ring_bytes, 4096u);

  auto d = ParseExecRequest(R"({"argv":["ls"]})");
  ASSERT_OK(d);
  EXPECT_FALSE(d->keep);
  EXPECT_FALSE(d->tty);
  EXPECT_EQ(d->ring_bytes, 0u);
}

TEST(LiveExecRequestTest, BadLiveMembersAreNamed) {
  EXPECT_TRUE(FailsNaming(ParseExecRequest, R"({"argv":["ls"],"keep":1})", "keep"));
  EXPECT_TRUE(FailsNaming(ParseExecRequest, R"({"argv":["ls"],"keep":true,"rows":70000})", "rows"));
  EXPECT_TRUE(FailsNaming(ParseExecRequest, R"({"argv":["ls"],"keep":true,"cols":-1})", "cols"));
  EXPECT_TRUE(FailsNaming(ParseExecRequest, R"({"argv":["ls"],"keep":true,"tag":5})", "tag"));
  EXPECT_TRUE(FailsNaming(ParseExecRequest, R"({"argv":["ls"],"keep":true,"ring_bytes":10})",
                          "ring_bytes"));
  EXPECT_TRUE(FailsNaming(ParseExecRequest, R"({"argv":["ls"],"tty":true})", "tty"));
}

TEST(StartedTest, RoundTripAndErrors) {
  auto s = ParseStarted(ToJson(Started{42, 1234567890123}));
  ASSERT_OK(s);
  EXPECT_EQ(s->pid, 42);
  EXPECT_EQ(s->offset, 1234567890123u);
  EXPECT_TRUE(FailsNaming(ParseStarted, R"({"offset":1})", "pid"));
  EXPECT_TRUE(FailsNaming(ParseStarted, R"({"pid":1,"offset":-1})", "offset"));
}

TEST(AttachRequestTest, RoundTripDefaultsAndErrors) {
  auto a = ParseAttachRequest(ToJson(AttachRequest{7, 100}));
  ASSERT_OK(a);
  EXPECT_EQ(a->pid, 7);
  EXPECT_EQ(a->from, 100);
  auto d = ParseAttachRequest(R"({"pid":7})");
  ASSERT_OK(d);
  EXPECT_EQ(d->from, -1);
  EXPECT_TRUE(FailsNaming(ParseAttachRequest, R"({})", "pid"));
  EXPECT_TRUE(FailsNaming(ParseAttachRequest, R"({"pid":0})", "pid"));
  EXPECT_TRUE(FailsNaming(ParseAttachRequest, R"({"pid":"7"})", "pid"));
  EXPECT_TRUE(FailsNaming(ParseAttachRequest, R"({"pid":7,"from":-2})", "from"));
  EXPECT_TRUE(FailsNaming(ParseAttachRequest, R"({"pid":7,"from":1.5})", "from"));
  EXPECT_FALSE(ParseAttachRequest(R"({"pid":7,"x":)" + Deep() + "}").ok());
  EXPECT_FALSE(ParseAttachRequest("[1]").ok());
}

TEST(ResizeRequestTest, RoundTripAndErrors) {
  auto r = ParseResizeRequest(ToJson(ResizeRequest{40, 100}));
  ASSERT_OK(r);
  EXPECT_EQ(r->rows, 40u);
  EXPECT_EQ(r->cols, 100u);
  EXPECT_TRUE(FailsNaming(ParseResizeRequest, R"({"cols":80})", "rows"));
  EXPECT_TRUE(FailsNaming(ParseResizeRequest, R"({"rows":24,"cols":0})", "cols"));
  EXPECT_TRUE(FailsNaming(ParseResizeRequest, R"({"rows":24,"cols":65536})", "cols"));
}

TEST(SignalRequestTest, RoundTripAndErrors) {
  auto s = ParseSignalRequest(ToJson(SignalRequest{12, 15}));
  ASSERT_OK(s);
  EXPECT_EQ(s->pid, 12);
  EXPECT_EQ(s->signal, 15);
  EXPECT_TRUE(FailsNaming(ParseSignalRequest, R"({"pid":12})", "signal"));
  EXPECT_TRUE(FailsNaming(ParseSignalRequest, R"({"pid":12,"signal":65})", "signal"));
  EXPECT_TRUE(FailsNaming(ParseSignalRequest, R"({"pid":12,"signal":"TERM"})", "signal"));
  EXPECT_TRUE(FailsNaming(ParseSignalRequest, R"({"pid":-3,"signal":9})", "pid"));
}

TEST(TunnelRequestTest, RoundTripAndErrors) {
  auto t = ParseTunnelRequest(ToJson(TunnelRequest{8000}));
  ASSERT_OK(t);
  EXPECT_EQ(t->port, 8000u);
  EXPECT_EQ(ParseTunnelRequest(R"({"port":65535})")->port, 65535u);
  EXPECT_TRUE(FailsNaming(ParseTunnelRequest, R"({})", "port"));
  EXPECT_TRUE(FailsNaming(ParseTunnelRequest, R"({"port":0})", "port"));
  EXPECT_TRUE(FailsNaming(ParseTunnelRequest, R"({"port":65536})", "port"));
  EXPECT_TRUE(FailsNaming(ParseTunnelRequest, R"({"port":"80"})", "port"));
  EXPECT_TRUE(FailsNaming(ParseTunnelRequest, R"({"port":-1})", "port"));
}

TEST(ProcessListTest, RoundTrip) {
  ProcessInfo running{12,   {"sh", "-c", "x"}, "/tmp",       "1000", "main", true,
                      true, std::nullopt,      1796050000123};
  ProcessInfo done;
  done.pid = 13;
  done.argv = {"true"};
  done.exit = ExecExit{};
  done.exit->exit_code = 3;
  std::string text = ToJson(std::vector<ProcessInfo>{running, done});
  EXPECT_NE(text.find(R"("exit":null)"), std::string::npos) << text;
  auto l = ParseProcessList(text);
  ASSERT_OK(l);
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[0].pid, 12);
  EXPECT_EQ((*l)[0].argv, running.argv);
  EXPECT_EQ((*l)[0].cwd, "/tmp");
  EXPECT_EQ((*l)[0].user, "1000");
  EXPECT_EQ((*l)[0].tag, "main");
  EXPECT_TRUE((*l)[0].tty);
  EXPECT_TRUE((*l)[0].running);
  EXPECT_FALSE((*l)[0].exit.has_value());
  EXPECT_EQ((*l)[0].started_ms, 1796050000123);
  ASSERT_TRUE((*l)[1].exit.has_value());
  EXPECT_EQ((*l)[1].exit->exit_code, 3);
  EXPECT_FALSE((*l)[1].running);

  auto empty = ParseProcessList(R"({"processes":[]})");
  ASSERT_OK(empty);
  EXPECT_TRUE(empty->empty());
  EXPECT_TRUE(FailsNaming(ParseProcessList, R"({"processes":{}})", "processes"));
  EXPECT_TRUE(FailsNaming(ParseProcessList, R"({"processes":[{"pid":1,"exit":5}]})", "exit"));
  EXPECT_TRUE(FailsNaming(ParseProcessList, R"({"processes":[{"pid":1,"argv":[1]}]})", "argv"));
}

TEST(ClaimRequestTest, RoundTripAndErrors) {
  auto c = ParseClaimRequest(ToJson(ClaimRequest{{"A=1", "B="}, true}));
  ASSERT_OK(c);
  EXPECT_EQ(c->env, (std::vector<std::string>{"A=1", "B="}));
  EXPECT_TRUE(c->persist);
  auto d = ParseClaimRequest("{}");
  ASSERT_OK(d);
  EXPECT_FALSE(d->persist);
  EXPECT_TRUE(FailsNaming(ParseClaimRequest, R"({"env":["NOEQ"]})", "env"));
  EXPECT_TRUE(FailsNaming(ParseClaimRequest, R"({"persist":"yes"})", "persist"));
  EXPECT_FALSE(ParseClaimRequest(R"({"env":)" + Deep() + "}").ok());
}

TEST(FileRequestTest, RoundTripAndDefaults) {
  FileRequest r;
  r.op = "write";
  r.path = "/a/b";
  r.user = "1000";
  r.mode = 0600;
  r.append = true;
  r.max_bytes = 99;
  auto p = ParseFileRequest(ToJson(r));
  ASSERT_OK(p);
  EXPECT_EQ(p->op, "write");
  EXPECT_EQ(p->path, "/a/b");
  EXPECT_EQ(p->user, "1000");
  EXPECT_EQ(p->mode, std::optional<uint32_t>(0600));
  EXPECT_TRUE(p->append);
  EXPECT_EQ(p->max_bytes, 99u);

  auto l = ParseFileRequest(R"({"op":"list","path":"/"})");
  ASSERT_OK(l);
  EXPECT_EQ(l->depth, 1u);
  EXPECT_FALSE(l->mode.has_value());
  auto m = ParseFileRequest(R"({"op":"rename","path":"/a","to":"/b"})");
  ASSERT_OK(m);
  EXPECT_EQ(m->to, "/b");
}

TEST(FileRequestTest, ErrorsNameTheMember) {
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"path":"/"})", "op"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"fly","path":"/"})", "op"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"stat"})", "path"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"stat","path":"rel"})", "path"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"list","path":"/","depth":0})", "depth"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"mkdir","path":"/a","mode":70000})", "mode"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"rename","path":"/a"})", "to"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"rename","path":"/a","to":"b"})", "to"));
  EXPECT_TRUE(
      FailsNaming(ParseFileRequest, R"({"op":"remove","path":"/a","recursive":1})", "recursive"));
  EXPECT_TRUE(
      FailsNaming(ParseFileRequest, R"({"op":"write","path":"/a","max_bytes":-5})", "max_bytes"));
  EXPECT_TRUE(FailsNaming(ParseFileRequest, R"({"op":"stat","path":"/","user":7})", "user"));
  EXPECT_FALSE(ParseFileRequest(R"({"op":"stat","path":"/","x":)" + Deep() + "}").ok());
}

TEST(FileStatTest, RoundTripAndList) {
  FileStat s{
      "a", "/d/a",      "file", 12, 0644, "-rw-r--r--", "root", "root", 0, 0, 1796050000123456789,
      "",  std::nullopt};
  auto p = ParseFileStat(ToJson(s));
  ASSERT_OK(p);
  EXPECT_EQ(p->name, "a");
  EXPECT_EQ(p->path, "/d/a");
  EXPECT_EQ(p->type, "file");
  EXPECT_EQ(p->size, 12u);
  EXPECT_EQ(p->mode, 0644u);
  EXPECT_EQ(p->permissions, "-rw-r--r--");
  EXPECT_EQ(p->mtime_ns, 1796050000123456789);
  EXPECT_FALSE(p->created.has_value());
  EXPECT_EQ(ToJson(s).find("created"), std::string::npos);
  s.created = false;
  EXPECT_EQ(ParseFileStat(ToJson(s))->created, std::optional<bool>(false));

  auto l = ParseFileEntries(ToJson(std::vector<FileStat>{s, s}));
  ASSERT_OK(l);
  EXPECT_EQ(l->size(), 2u);
  EXPECT_TRUE(FailsNaming(ParseFileStat, R"({"size":"1"})", "size"));
  EXPECT_TRUE(FailsNaming(ParseFileEntries, R"({"entries":[1]})", "entries"));
}

TEST(FileEndTest, RoundTrip) {
  EXPECT_EQ(ParseFileEnd(ToJson(FileEnd{104857600}))->size, 104857600u);
  EXPECT_TRUE(FailsNaming(ParseFileEnd, R"({"size":true})", "size"));
}

TEST(WatchEventsTest, RoundTripAndErrors) {
  std::vector<WatchEvent> ev = {{"create", "/w/a", false}, {"remove", "/w/d", true}};
  auto p = ParseWatchEvents(ToJson(ev));
  ASSERT_OK(p);
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[1].type, "remove");
  EXPECT_EQ((*p)[1].path, "/w/d");
  EXPECT_TRUE((*p)[1].is_dir);
  EXPECT_TRUE(FailsNaming(ParseWatchEvents, R"({"events":[{"path":"/a"}]})", "type"));
  EXPECT_TRUE(
      FailsNaming(ParseWatchEvents, R"({"events":[{"type":"create","is_dir":"no"}]})", "is_dir"));
}

TEST(OpErrorTest, RoundTripAndFromError) {
  auto e = ParseOpError(ToJson(OpError{"not_found", 2, "stat(/x): No such file"}));
  ASSERT_OK(e);
  EXPECT_EQ(e->code, "not_found");
  EXPECT_EQ(e->err, 2);
  EXPECT_EQ(e->message, "stat(/x): No such file");
  EXPECT_NE(ToJson(*e).find(R"("errno":2)"), std::string::npos);
  EXPECT_TRUE(FailsNaming(ParseOpError, R"({"errno":2})", "code"));

  OpError o = ToOpError(Errno("open", "/x").WithCode(ErrorCode::kPermissionDenied));
  EXPECT_EQ(o.code, "permission_denied");
  OpError f = ToOpError(Fail(ErrorCode::kFailedPrecondition, "remove", "/d", "not empty"));
  EXPECT_EQ(f.code, "failed_precondition");
  EXPECT_EQ(f.message, "remove(/d): not empty");
  for (ErrorCode c : {ErrorCode::kNotFound, ErrorCode::kResourceExhausted, ErrorCode::kInternal,
                      ErrorCode::kUnavailable, ErrorCode::kInvalidArgument}) {
    EXPECT_EQ(ErrorCodeFromName(ErrorCodeName(c)), c);
  }
  EXPECT_EQ(ErrorCodeFromName("nonsense"), ErrorCode::kInternal);
}

}  // namespace
}  // namespace wb::proto
