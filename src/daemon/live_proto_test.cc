#include "daemon/live_proto.h"

#include <gtest/gtest.h>

// GCC 12 warns that the optional<string> members of a LiveRequest built
// field by field "may be used uninitialized" once inlined into ToJson (a
// known false positive of std::optional, GCC bug 105937).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace wb::daemon {
namespace {

TEST(LiveProtoTest, CreateRoundTrips) {
  LiveRequest r;
  r.op = LiveOp::kCreate;
  r.create.image = "busybox";
  r.create.timeout_s = 30;
  r.create.env = {"A=1"};
  r.create.metadata = {{"team", "x"}};
  r.create.memory_bytes = 64u << 20;
  r.create.main = std::vector<std::string>{"sh", "-c", "echo hi"};
  r.create.on_timeout = "pause";
  auto back = ParseLiveRequest(ToJson(r));
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(back->op, LiveOp::kCreate);
  EXPECT_EQ(back->create.image, "busybox");
  EXPECT_EQ(back->create.timeout_s, 30u);
  EXPECT_EQ(back->create.metadata.at("team"), "x");
  EXPECT_EQ(*back->create.main, r.create.main);
  EXPECT_EQ(back->create.on_timeout, "pause");
  EXPECT_EQ(ToJson(*back), ToJson(r));
  // Absent main: the image's; no_main or []: none.
  auto dflt = ParseLiveRequest(R"({"op":"sandbox_create"})");
  ASSERT_TRUE(dflt.ok());
  EXPECT_FALSE(dflt->create.main);
  auto none = ParseLiveRequest(R"({"op":"sandbox_create","no_main":true})");
  ASSERT_TRUE(none.ok());
  ASSERT_TRUE(none->create.main);
  EXPECT_TRUE(none->create.main->empty());
}

TEST(LiveProtoTest, BadRequestsAreBadRequests) {
  for (const char* body :
       {R"({"op":"sandbox_kill"})", R"({"op":"sandbox_fly","id":"x"})",
        R"({"op":"sandbox_create","timeout":0})", R"({"op":"sandbox_create","env":["X"]})",
        R"({"op":"sandbox_create","metadata":{"a":1}})",
        R"({"op":"sandbox_create","on_timeout":"stop"})",
        R"({"op":"sandbox_set_timeout","id":"x"})",
        R"({"op":"sandbox_logs","id":"x","tail":-1})"}) {
    auto r = ParseLiveRequest(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_STREQ(LiveErrorKind(r.error()), "bad_request") << body;
  }
}

TEST(LiveProtoTest, UpdateNetworkRoundTripsAndNamesBadEntries) {
  LiveRequest r;
  r.op = LiveOp::kUpdateNetwork;
  r.id = "abc";
  r.network.mode = NetworkMode::kEgress;
  r.network.allow_out = {"198.51.100.0/24", "*.example.test"};
  r.network.deny_out = {"198.51.100.7"};
  auto back = ParseLiveRequest(ToJson(r));
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(back->op, LiveOp::kUpdateNetwork);
  EXPECT_EQ(back->id, "abc");
  EXPECT_EQ(back->network, r.network);
  // mode defaults to egress in an update.
  auto dflt = ParseLiveRequest(R"({"op":"sandbox_update_network","id":"x","network":{}})");
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(dflt->network.mode, NetworkMode::kEgress);
  for (
      const char* body :
      {R"({"op":"sandbox_update_network","id":"x"})",
       R"({"op":"sandbox_update_network","id":"x","network":{"allow_out":["10.0.0.1/8"]}})",
       R"({"op":"sandbox_update_network","id":"x","network":{"ports":["1:2"]}})",
       R"({"op":"sandbox_update_network","id":"x","network":{"mode":"none","deny_out":["a.test"]}})",
       R"({"op":"sandbox_create","network":{"mode":"egress","allowOut":[]}})"}) {
    auto bad = ParseLiveRequest(body);
    ASSERT_FALSE(bad.ok()) << body;
    EXPECT_STREQ(LiveErrorKind(bad.error()), "bad_request") << body;
    EXPECT_NE(bad.error().ToString().find("network"), std::string::npos) << body;
  }
}

TEST(LiveProtoTest, KindsFollowCodes) {
  EXPECT_TRUE(IsLiveRequest(R"({"op":"sandbox_list"})"));
  EXPECT_FALSE(IsLiveRequest(R"({"op":"run","cmd":["x"]})"));
  EXPECT_STREQ(LiveErrorKind(Fail(ErrorCode::kNotFound, "sandbox", "x", "")), "not_found");
  EXPECT_STREQ(LiveErrorKind(Fail(ErrorCode::kNotFound, "no image", "x", "")), "no_image");
  EXPECT_STREQ(LiveErrorKind(Fail(ErrorCode::kBusy, "busy", "x", "")), "busy");
  EXPECT_STREQ(LiveErrorKind(Fail(ErrorCode::kFailedPrecondition, "p", "x", "")),
               "failed_precondition");
  EXPECT_STREQ(LiveErrorKind(Fail("x", "y", "z")), "internal");
  EXPECT_EQ(LiveErrorJson(Fail(ErrorCode::kBusy, "busy", "x", "full")),
            R"({"ok":false,"error":"busy(x): full","kind":"busy"})");
}

}  // namespace
}  // namespace wb::daemon
