#include "agent/identity.h"

#include <gtest/gtest.h>

#include "tests/assert_ok.h"

namespace wb::agent {
namespace {

TEST(IdentityTest, RoundTrips) {
  Identity id{"abc123", "abc123", std::string(32, '\x7f') + std::string(8, '\0'),
              1700000000123456789};
  auto back = ParseIdentity(IdentityToJson(id));
  ASSERT_OK(back);
  EXPECT_EQ(back->sandbox_id, "abc123");
  EXPECT_EQ(back->hostname, "abc123");
  EXPECT_EQ(back->entropy, id.entropy);
  EXPECT_EQ(back->realtime_ns, id.realtime_ns);
}

TEST(IdentityTest, RejectsBadInput) {
  const std::string hex64(64, 'a');
  auto bad = [](const std::string& j) { return !ParseIdentity(j).ok(); };
  EXPECT_TRUE(bad("not json"));
  EXPECT_TRUE(bad(R"({"id":"a","hostname":"a","realtime_ns":1})"));                   // no entropy
  EXPECT_TRUE(bad(R"({"id":"a","hostname":"a","entropy":"abcd","realtime_ns":1})"));  // too little
  EXPECT_TRUE(bad(R"({"id":"a","hostname":"a b","entropy":")" + hex64 + R"(","realtime_ns":1})"));
  EXPECT_TRUE(bad(R"({"id":"a","hostname":"a","entropy":")" + std::string(64, 'g') +
                  R"(","realtime_ns":1})"));
  EXPECT_TRUE(bad(R"({"id":"a","hostname":"a","entropy":")" + hex64 + R"(","realtime_ns":-5})"));
  EXPECT_TRUE(bad(R"({"id":"a","hostname":"","entropy":")" + hex64 + R"(","realtime_ns":1})"));
  EXPECT_FALSE(bad(R"({"id":"a","hostname":"a","entropy":")" + hex64 + R"(","realtime_ns":1})"));
}

}  // namespace
}  // namespace wb::agent
