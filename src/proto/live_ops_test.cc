#include "proto/live_ops.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

namespace wb::proto {
namespace {

TEST(LiveOpsTest, ExecIsKeptAndCarriesItsTerminal) {
  auto r = ParseLiveOpRequest(
      R"({"op":"exec","id":"ab12","cmd":["sh","-i"],"env":{"A":"1"},"tty":true,"rows":40,"cols":100,"user":"app"})");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->op, LiveOp::kExec);
  EXPECT_EQ(r->sandbox, "ab12");
  EXPECT_EQ(r->first, FrameType::kExec);
  EXPECT_TRUE(r->exec.stdin);  // a terminal implies stdin
  auto j = nlohmann::json::parse(LiveExecJson(*r));
  EXPECT_EQ(j["keep"], true);
  EXPECT_EQ(j["tty"], true);
  EXPECT_EQ(j["rows"], 40);
  EXPECT_EQ(j["cols"], 100);
  EXPECT_EQ(j["argv"], (nlohmann::json{"sh", "-i"}));
  EXPECT_EQ(j["env"], (nlohmann::json{"A=1"}));
  EXPECT_EQ(j["user"], "app");
  ASSERT_EQ(r->client_frames.size(), 3u);
}

TEST(LiveOpsTest, PlainExecHasNoTerminalFields) {
  auto r = ParseLiveOpRequest(R"({"op":"exec","id":"x","cmd":["true"]})");
  ASSERT_TRUE(r.ok());
  auto j = nlohmann::json::parse(LiveExecJson(*r));
  EXPECT_EQ(j["keep"], true);
  EXPECT_FALSE(j.contains("tty"));
  EXPECT_EQ(j["stdin"], false);
}

TEST(LiveOpsTest, BadRequestsNameTheirField) {
  struct Case {
    const char* json;
    const char* field;
  } cases[] = {
      {R"({"op":"exec","cmd":["true"]})", "id"},
      {R"({"op":"exec","id":"x"})", "cmd"},
      {R"({"op":"exec","id":"x","cmd":[]})", "cmd"},
      {R"({"op":"exec","id":"x","cmd":["a"],"env":["NOEQ"]})", "env NOEQ"},
      {R"({"op":"exec","id":"x","cmd":["a"],"tty":true,"rows":70000})", "rows"},
      {R"({"op":"attach","id":"x"})", "pid"},
      {R"({"op":"attach","id":"x","pid":0})", "pid"},
      {R"({"op":"attach","id":"x","pid":5,"from":-2})", "from"},
      {R"({"op":"signal","id":"x","pid":5,"signal":"NOPE"})", "signal"},
      {R"({"op":"signal","id":"x","pid":5,"signal":99})", "signal"},
      {R"({"op":"fs","id":"x","request":{"op":"chown","path":"/a"}})", "request.op"},
      {R"({"op":"fs","id":"x","request":{"op":"stat"}})", "path"},
      {R"({"op":"fs","id":"x"})", "request"},
      {R"({"op":"fly","id":"x"})", "op"},
  };
  for (const auto& c : cases) {
    auto r = ParseLiveOpRequest(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << c.json;
    EXPECT_EQ(r.error().arg, c.field) << c.json << ": " << r.error().ToString();
  }
}

TEST(LiveOpsTest, SignalsByNameOrNumber) {
  for (const char* s : {"TERM", "SIGTERM", "term", "15"}) {
    auto n = ParseSignal(s);
    ASSERT_TRUE(n.ok()) << s;
    EXPECT_EQ(*n, SIGTERM);
  }
  EXPECT_EQ(*ParseSignal("KILL"), SIGKILL);
  EXPECT_EQ(*ParseSignal("int"), SIGINT);
  EXPECT_FALSE(ParseSignal("").ok());
  EXPECT_FALSE(ParseSignal("0").ok());
  auto r = ParseLiveOpRequest(R"({"op":"signal","id":"x","pid":7,"signal":"HUP"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(nlohmann::json::parse(r->payload), (nlohmann::json{{"pid", 7}, {"signal", SIGHUP}}));
  EXPECT_TRUE(r->client_frames.empty());
}

TEST(LiveOpsTest, FileWritesTakeDataFramesOthersNone) {
  auto w =
      ParseLiveOpRequest(R"({"op":"fs","id":"x","request":{"op":"write","path":"/a","mode":420}})");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->first, FrameType::kFile);
  EXPECT_EQ(w->client_frames, (std::vector<FrameType>{FrameType::kStdin, FrameType::kStdinClose}));
  auto s = ParseLiveOpRequest(R"({"op":"fs","id":"x","request":{"op":"stat","path":"/a"}})");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->client_frames.empty());
  EXPECT_EQ(nlohmann::json::parse(s->payload)["path"], "/a");
}

TEST(LiveOpsTest, KnowsItsOps) {
  for (const char* op : {"exec", "attach", "ps", "signal", "fs"}) EXPECT_TRUE(IsLiveOp(op));
  EXPECT_FALSE(IsLiveOp("run"));
  EXPECT_FALSE(IsLiveOp("sandbox_create"));
}

}  // namespace
}  // namespace wb::proto
