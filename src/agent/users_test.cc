#include "agent/users.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/assert_ok.h"

namespace wb::agent {
namespace {

constexpr char kPasswd[] =
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "user:x:1000:1000:User:/home/user:/bin/sh\n"
    "nohome:x:1001:1001:No Home::/bin/sh\n";

constexpr char kGroup[] =
    "root:x:0:\n"
    "daemon:x:1:\n"
    "tty:x:5:\n"
    "wheel:x:10:root,user\n"
    "audio:x:29:other,user\n"
    "video:x:44:other\n"
    "user:x:1000:\n"
    "docker:x:999:user\n";

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

using Gids = std::vector<gid_t>;

TEST(ResolveUserTest, EmptySpecIsRoot) {
  auto c = ResolveUser("", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 0u);
  EXPECT_EQ(c->gid, 0u);
  EXPECT_EQ(c->home, "/root");
  EXPECT_EQ(c->groups, Gids{10});  // root is listed in wheel
}

TEST(ResolveUserTest, NameResolvesFromPasswd) {
  auto c = ResolveUser("user", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1000u);
  EXPECT_EQ(c->gid, 1000u);
  EXPECT_EQ(c->home, "/home/user");
}

TEST(ResolveUserTest, SupplementaryGroupsFromMemberLists) {
  auto c = ResolveUser("user", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->groups, (Gids{10, 29, 999}));
}

TEST(ResolveUserTest, NumericUidInPasswd) {
  auto c = ResolveUser("1000", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1000u);
  EXPECT_EQ(c->gid, 1000u);
  EXPECT_EQ(c->home, "/home/user");
  EXPECT_EQ(c->groups, (Gids{10, 29, 999}));
}

TEST(ResolveUserTest, NumericUidNotInPasswd) {
  auto c = ResolveUser("4242", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 4242u);
  EXPECT_EQ(c->gid, 4242u);
  EXPECT_EQ(c->home, "/");
  EXPECT_TRUE(c->groups.empty());
}

TEST(ResolveUserTest, NumericZeroIsRootFromPasswd) {
  auto c = ResolveUser("0", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 0u);
  EXPECT_EQ(c->gid, 0u);
  EXPECT_EQ(c->home, "/root");
}

TEST(ResolveUserTest, NameWithGroupName) {
  auto c = ResolveUser("user:tty", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1000u);
  EXPECT_EQ(c->gid, 5u);
  EXPECT_EQ(c->home, "/home/user");
}

TEST(ResolveUserTest, UidWithNumericGid) {
  auto c = ResolveUser("1000:5", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1000u);
  EXPECT_EQ(c->gid, 5u);
}

TEST(ResolveUserTest, NumericGidNeedNotExist) {
  auto c = ResolveUser("user:4343", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1000u);
  EXPECT_EQ(c->gid, 4343u);
}

TEST(ResolveUserTest, UnknownUidWithGroupName) {
  auto c = ResolveUser("4242:tty", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 4242u);
  EXPECT_EQ(c->gid, 5u);
}

TEST(ResolveUserTest, PrimaryGroupIsNotRepeatedAsSupplementary) {
  auto c = ResolveUser("user:wheel", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->gid, 10u);
  EXPECT_EQ(c->groups, (Gids{29, 999}));
}

TEST(ResolveUserTest, MemberNamesMatchExactly) {
  // "other" is a member of video; "user" must not pick it up by substring.
  auto c = ResolveUser("user", kPasswd, kGroup);
  ASSERT_OK(c);
  for (gid_t g : c->groups) EXPECT_NE(g, 44u);
}

TEST(ResolveUserTest, UserWithoutGroupsHasNoSupplementaryGroups) {
  auto c = ResolveUser("daemon", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1u);
  EXPECT_EQ(c->gid, 1u);
  EXPECT_EQ(c->home, "/usr/sbin");
  EXPECT_TRUE(c->groups.empty());
}

TEST(ResolveUserTest, EmptyHomeFieldBecomesSlash) {
  auto c = ResolveUser("nohome", kPasswd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1001u);
  EXPECT_EQ(c->home, "/");
}

TEST(ResolveUserTest, UnknownNameIsAnErrorNamingIt) {
  auto c = ResolveUser("nosuchuser", kPasswd, kGroup);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.error().ToString(), "nosuchuser"));
}

TEST(ResolveUserTest, UnknownGroupIsAnErrorNamingIt) {
  auto c = ResolveUser("user:nosuchgroup", kPasswd, kGroup);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.error().ToString(), "nosuchgroup"));
}

TEST(ResolveUserTest, EmptyGroupAfterColonIsAnError) {
  EXPECT_FALSE(ResolveUser("user:", kPasswd, kGroup).ok());
}

TEST(ResolveUserTest, UidOutOfRangeIsNotANumber) {
  // 4294967295 is (uid_t)-1, which setresuid treats as "unchanged".
  EXPECT_FALSE(ResolveUser("4294967295", kPasswd, kGroup).ok());
  EXPECT_FALSE(ResolveUser("99999999999", kPasswd, kGroup).ok());
}

TEST(ResolveUserTest, RootWithEmptyPasswd) {
  auto c = ResolveUser("root", "", "");
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 0u);
  EXPECT_EQ(c->gid, 0u);
  EXPECT_EQ(c->home, "/root");
  EXPECT_TRUE(c->groups.empty());
}

TEST(ResolveUserTest, EmptySpecWithEmptyPasswd) {
  auto c = ResolveUser("", "", "");
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 0u);
  EXPECT_EQ(c->gid, 0u);
  EXPECT_EQ(c->home, "/root");
}

TEST(ResolveUserTest, NamedUserWithEmptyPasswdIsAnError) {
  EXPECT_FALSE(ResolveUser("user", "", "").ok());
}

TEST(ResolveUserTest, MalformedPasswdLinesAreSkipped) {
  const std::string passwd = std::string(
                                 "garbage\n"
                                 "short:x:5\n"
                                 "badid:x:abc:1:bad:/bad:/bin/sh\n"
                                 ":x:7:7:noname:/noname:/bin/sh\n"
                                 "\n") +
                             kPasswd;
  auto c = ResolveUser("user", passwd, kGroup);
  ASSERT_OK(c);
  EXPECT_EQ(c->uid, 1000u);
  EXPECT_FALSE(ResolveUser("short", passwd, kGroup).ok());
  EXPECT_FALSE(ResolveUser("badid", passwd, kGroup).ok());
  // The nameless line does not give uid 7 a home.
  auto seven = ResolveUser("7", passwd, kGroup);
  ASSERT_OK(seven);
  EXPECT_EQ(seven->home, "/");
}

TEST(ResolveUserTest, MalformedGroupLinesAreSkipped) {
  const std::string group = std::string(
                                "junk\n"
                                "badgid:x:notanumber:user\n"
                                "short:x:77\n"
                                ":x:88:user\n") +
                            kGroup;
  auto c = ResolveUser("user", kPasswd, group);
  ASSERT_OK(c);
  EXPECT_EQ(c->groups, (Gids{10, 29, 999}));
  EXPECT_FALSE(ResolveUser("user:badgid", kPasswd, group).ok());
  EXPECT_FALSE(ResolveUser("user:short", kPasswd, group).ok());
}

}  // namespace
}  // namespace wb::agent
