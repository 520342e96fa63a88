#include "base/json.h"

#include <gtest/gtest.h>

#include <string>

namespace wb {
namespace {

std::string Nested(int depth, std::string_view inner = "1") {
  return std::string(static_cast<size_t>(depth), '[') + std::string(inner) +
         std::string(static_cast<size_t>(depth), ']');
}

TEST(JsonBoundedTest, AcceptsUpToTheLimit) {
  auto j = ParseJsonBounded(Nested(kMaxJsonDepth), "x");
  ASSERT_TRUE(j.ok()) << j.error().ToString();
  EXPECT_EQ(j->dump().size(), Nested(kMaxJsonDepth).size());
  auto obj = ParseJsonBounded(R"({"a":{"b":[{"c":[]}]}})", "x", 5);  // five containers
  EXPECT_TRUE(obj.ok());
}

TEST(JsonBoundedTest, RefusesOneLevelMoreArraysOrObjects) {
  auto j = ParseJsonBounded(Nested(kMaxJsonDepth + 1), "request");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(j.error().ToString(), "parse(request): JSON nested deeper than 64 levels");
  EXPECT_FALSE(ParseJsonBounded(R"({"a":{"b":[{"c":[]}]}})", "x", 4).ok());
  // Brackets inside strings are text, not nesting.
  EXPECT_TRUE(ParseJsonBounded(R"(["[[[[[[[[[[[[[[[[[["])", "x", 1).ok());
}

// The attack of issue 19 (finding 4): 200 KB of '[' took the daemon down.
TEST(JsonBoundedTest, A200KbNestingIsRefusedNotBuilt) {
  std::string deep(200 * 1024, '[');
  auto open = ParseJsonBounded(deep, "body");
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.error().detail.find("nested deeper"), std::string::npos);
  auto closed = ParseJsonBounded(Nested(100 * 1024), "body");
  ASSERT_FALSE(closed.ok());
  EXPECT_NE(closed.error().detail.find("nested deeper"), std::string::npos);
}

TEST(JsonBoundedTest, SyntaxErrorsAreInvalidJson) {
  for (const char* bad : {"", "{", "[1,]", "nope", R"({"a":1)"}) {
    auto j = ParseJsonBounded(bad, "x");
    ASSERT_FALSE(j.ok()) << bad;
    EXPECT_EQ(j.error().detail, "invalid JSON") << bad;
    EXPECT_EQ(j.error().code, ErrorCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace wb
