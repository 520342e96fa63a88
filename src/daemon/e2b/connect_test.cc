#include "daemon/e2b/connect.h"

#include <gtest/gtest.h>

#include "daemon/e2b/envd.h"

namespace wb::daemon::e2b {
namespace {

TEST(ConnectTest, EnvelopeRoundTrip) {
  std::string env = Envelope(kEnvelopeMessage, R"({"a":1})");
  ASSERT_EQ(env.size(), 5u + 7u);
  EXPECT_EQ(env.substr(0, 5), std::string("\x00\x00\x00\x00\x07", 5));
  auto msg = ParseRequestEnvelope(env);
  ASSERT_TRUE(msg.ok()) << msg.error().ToString();
  EXPECT_EQ(*msg, R"({"a":1})");
  EXPECT_EQ(static_cast<uint8_t>(Envelope(kEnvelopeEndStream, "{}")[0]), 2u);
}

TEST(ConnectTest, BadEnvelopesNameWhatIsWrong) {
  auto short_body = ParseRequestEnvelope("ab");
  ASSERT_FALSE(short_body.ok());
  EXPECT_EQ(short_body.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(short_body.error().ToString().find("no envelope"), std::string::npos);
  auto compressed = ParseRequestEnvelope(std::string("\x01\x00\x00\x00\x00", 5));
  ASSERT_FALSE(compressed.ok());
  EXPECT_NE(compressed.error().ToString().find("uncompressed"), std::string::npos);
  auto lying = ParseRequestEnvelope(std::string("\x00\x00\x00\x00\x09{}", 7));
  ASSERT_FALSE(lying.ok());
  EXPECT_NE(lying.error().ToString().find("says 9 bytes"), std::string::npos);
}

TEST(ConnectTest, CodesAndStatuses) {
  EXPECT_STREQ(ConnectCode(ErrorCode::kNotFound), "not_found");
  EXPECT_STREQ(ConnectCode(ErrorCode::kInvalidArgument), "invalid_argument");
  EXPECT_STREQ(ConnectCode(ErrorCode::kDeadlineExceeded), "deadline_exceeded");
  EXPECT_STREQ(ConnectCode(ErrorCode::kBusy), "resource_exhausted");
  EXPECT_EQ(ConnectHttpStatus("not_found"), 404u);
  EXPECT_EQ(ConnectHttpStatus("unauthenticated"), 401u);
  EXPECT_EQ(ConnectHttpStatus("unavailable"), 503u);
  EXPECT_EQ(ConnectHttpStatus("no-such-code"), 500u);
  EXPECT_EQ(EndStreamJson(), "{}");
  EXPECT_EQ(EndStreamJson("deadline_exceeded", "late"),
            R"({"error":{"code":"deadline_exceeded","message":"late"}})");
  EXPECT_EQ(ConnectErrorJson("not_found", "no \"x\""),
            R"({"code":"not_found","message":"no \"x\""})");
}

TEST(ConnectTest, ContentTypes) {
  EXPECT_TRUE(IsConnectStreamType("application/connect+json"));
  EXPECT_TRUE(IsConnectStreamType("Application/Connect+JSON; charset=utf-8"));
  EXPECT_FALSE(IsConnectStreamType("application/json"));
  EXPECT_TRUE(IsConnectUnaryType("application/json; charset=utf-8"));
  EXPECT_FALSE(IsConnectUnaryType("text/plain"));
}

TEST(EnvdTest, BasicAuthUser) {
  auto none = BasicAuthUser(std::nullopt);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto root = BasicAuthUser("Basic cm9vdDo=");  // root:
  ASSERT_TRUE(root.ok()) << root.error().ToString();
  EXPECT_EQ(root->value_or(""), "root");
  auto bearer = BasicAuthUser("Bearer abc");
  ASSERT_FALSE(bearer.ok());
  EXPECT_EQ(bearer.error().code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(BasicAuthUser("Basic !!!").ok());
}

TEST(EnvdTest, PathsResolveAgainstTheUsersHome) {
  EXPECT_EQ(HomeOf("user"), "/home/user");
  EXPECT_EQ(HomeOf(""), "/root");
  EXPECT_EQ(HomeOf("root"), "/root");
  EXPECT_EQ(ResolvePath("/etc/passwd", "user"), "/etc/passwd");
  EXPECT_EQ(ResolvePath("a.txt", "user"), "/home/user/a.txt");
  EXPECT_EQ(ResolvePath("", "root"), "/root");
}

}  // namespace
}  // namespace wb::daemon::e2b
