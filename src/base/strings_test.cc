#include "base/strings.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/assert_ok.h"

namespace wb {
namespace {

using Strings = std::vector<std::string>;

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// --- ParseSize ---------------------------------------------------------------

TEST(StringsTest, AsciiLower) {
  EXPECT_EQ(AsciiLower("Content-Type: Application/JSON"), "content-type: application/json");
  EXPECT_EQ(AsciiLower(""), "");
  EXPECT_EQ(AsciiLower("\xC3\x89t\xE9"), "\xC3\x89t\xE9");  // only ASCII letters change
}

TEST(ParseSizeTest, PlainNumberIsBytes) {
  auto r = ParseSize("512", "--memory");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 512u);
}

TEST(ParseSizeTest, KilobyteSuffix) {
  auto r = ParseSize("512k", "--memory");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 512 * kKiB);
}

TEST(ParseSizeTest, MegabyteSuffix) {
  auto r = ParseSize("64m", "--memory");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 64 * kMiB);
}

TEST(ParseSizeTest, GigabyteSuffix) {
  auto r = ParseSize("2g", "--memory");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 2 * kGiB);
}

TEST(ParseSizeTest, FractionalGigabytes) {
  auto r = ParseSize("1.5g", "--memory");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 3 * kGiB / 2);
}

TEST(ParseSizeTest, MiBSuffixIsCaseInsensitive) {
  auto r = ParseSize("100MiB", "--memory");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 100 * kMiB);
}

TEST(ParseSizeTest, SurroundingWhitespaceAndUpperCaseUnit) {
  auto r = ParseSize(" 2G ", "--memory");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 2 * kGiB);
}

TEST(ParseSizeTest, AllUnitSpellingsAgree) {
  for (const char* text : {"3m", "3M", "3mb", "3MB", "3mib", "3MiB"}) {
    auto r = ParseSize(text, "--memory");
    ASSERT_OK(r) << text;
    EXPECT_EQ(*r, 3 * kMiB) << text;
  }
  auto b = ParseSize("7b", "--memory");
  ASSERT_OK(b);
  EXPECT_EQ(*b, 7u);
  auto t = ParseSize("1t", "--disk");
  ASSERT_OK(t);
  EXPECT_EQ(*t, 1024 * kGiB);
}

TEST(ParseSizeTest, RejectsEmpty) {
  EXPECT_FALSE(ParseSize("", "--memory").ok());
  EXPECT_FALSE(ParseSize("   ", "--memory").ok());
}

TEST(ParseSizeTest, RejectsLetters) { EXPECT_FALSE(ParseSize("abc", "--memory").ok()); }

TEST(ParseSizeTest, RejectsUnknownUnit) { EXPECT_FALSE(ParseSize("12q", "--memory").ok()); }

TEST(ParseSizeTest, RejectsTwoDots) { EXPECT_FALSE(ParseSize("1..2", "--memory").ok()); }

TEST(ParseSizeTest, RejectsLoneDot) { EXPECT_FALSE(ParseSize(".", "--memory").ok()); }

TEST(ParseSizeTest, RejectsNegative) { EXPECT_FALSE(ParseSize("-1", "--memory").ok()); }

TEST(ParseSizeTest, RejectsUnitOnly) { EXPECT_FALSE(ParseSize("m", "--memory").ok()); }

TEST(ParseSizeTest, RejectsSpaceBetweenNumberAndUnit) {
  EXPECT_FALSE(ParseSize("2 g", "--memory").ok());
}

TEST(ParseSizeTest, RejectsExponentNotation) { EXPECT_FALSE(ParseSize("1e3", "--memory").ok()); }

TEST(ParseSizeTest, RejectsOverflow) {
  auto r = ParseSize("99999999999t", "--memory");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "--memory"));
}

TEST(ParseSizeTest, ErrorNamesOptionAndInput) {
  auto r = ParseSize("12q", "--memory");
  ASSERT_FALSE(r.ok());
  std::string msg = r.error().ToString();
  EXPECT_TRUE(Contains(msg, "--memory"));
  EXPECT_TRUE(Contains(msg, "12q"));
  EXPECT_EQ(r.error().call, "--memory");
  EXPECT_EQ(r.error().arg, "12q");
  EXPECT_EQ(r.error().err, 0);
  EXPECT_FALSE(r.error().detail.empty());
}

TEST(ParseSizeTest, ErrorUsesTheGivenOptionName) {
  auto r = ParseSize("abc", "--disk");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "--disk"));
  EXPECT_TRUE(Contains(r.error().ToString(), "abc"));
  EXPECT_FALSE(Contains(r.error().ToString(), "--memory"));
}

// --- ParseSeconds ------------------------------------------------------------

TEST(ParseSecondsTest, AcceptsInteger) {
  auto r = ParseSeconds("2", "--timeout");
  ASSERT_OK(r);
  EXPECT_DOUBLE_EQ(*r, 2.0);
}

TEST(ParseSecondsTest, AcceptsFraction) {
  auto r = ParseSeconds("0.5", "--timeout");
  ASSERT_OK(r);
  EXPECT_DOUBLE_EQ(*r, 0.5);
}

TEST(ParseSecondsTest, TrimsWhitespace) {
  auto r = ParseSeconds(" 1.25\n", "--timeout");
  ASSERT_OK(r);
  EXPECT_DOUBLE_EQ(*r, 1.25);
}

TEST(ParseSecondsTest, RejectsZero) { EXPECT_FALSE(ParseSeconds("0", "--timeout").ok()); }

TEST(ParseSecondsTest, RejectsNegative) { EXPECT_FALSE(ParseSeconds("-1", "--timeout").ok()); }

TEST(ParseSecondsTest, RejectsGarbage) {
  EXPECT_FALSE(ParseSeconds("x", "--timeout").ok());
  EXPECT_FALSE(ParseSeconds("1x", "--timeout").ok());
  EXPECT_FALSE(ParseSeconds("", "--timeout").ok());
}

TEST(ParseSecondsTest, RejectsInfinity) {
  EXPECT_FALSE(ParseSeconds("inf", "--timeout").ok());
  EXPECT_FALSE(ParseSeconds("infinity", "--timeout").ok());
}

TEST(ParseSecondsTest, RejectsNan) { EXPECT_FALSE(ParseSeconds("nan", "--timeout").ok()); }

TEST(ParseSecondsTest, ErrorNamesOptionAndInput) {
  auto r = ParseSeconds("soon", "--timeout");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "--timeout"));
  EXPECT_TRUE(Contains(r.error().ToString(), "soon"));
}

// --- ParseUint ---------------------------------------------------------------

TEST(ParseUintTest, AcceptsDigits) {
  auto r = ParseUint("1234", "--pids");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 1234u);
}

TEST(ParseUintTest, AcceptsZero) {
  auto r = ParseUint("0", "--pids");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 0u);
}

TEST(ParseUintTest, TrimsWhitespace) {
  auto r = ParseUint(" 42\n", "--pids");
  ASSERT_OK(r);
  EXPECT_EQ(*r, 42u);
}

TEST(ParseUintTest, AcceptsMaxUint64) {
  auto r = ParseUint("18446744073709551615", "--pids");
  ASSERT_OK(r);
  EXPECT_EQ(*r, UINT64_MAX);
}

TEST(ParseUintTest, RejectsOverflow) {
  EXPECT_FALSE(ParseUint("18446744073709551616", "--pids").ok());
}

TEST(ParseUintTest, RejectsNegativeAndSigns) {
  EXPECT_FALSE(ParseUint("-1", "--pids").ok());
  EXPECT_FALSE(ParseUint("+1", "--pids").ok());
}

TEST(ParseUintTest, RejectsTrailingGarbage) {
  EXPECT_FALSE(ParseUint("12a", "--pids").ok());
  EXPECT_FALSE(ParseUint("1.0", "--pids").ok());
  EXPECT_FALSE(ParseUint("1 2", "--pids").ok());
}

TEST(ParseUintTest, RejectsEmpty) {
  EXPECT_FALSE(ParseUint("", "--pids").ok());
  EXPECT_FALSE(ParseUint("  ", "--pids").ok());
}

TEST(ParseUintTest, ErrorNamesOptionAndInput) {
  auto r = ParseUint("many", "--pids");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.error().ToString(), "--pids"));
  EXPECT_TRUE(Contains(r.error().ToString(), "many"));
}

// --- Split / Trim / StartsWith ------------------------------------------------

TEST(SplitTest, SplitsOnSeparator) { EXPECT_EQ(Split("a:b:c", ':'), (Strings{"a", "b", "c"})); }

TEST(SplitTest, KeepsEmptyFields) {
  EXPECT_EQ(Split("a::b", ':'), (Strings{"a", "", "b"}));
  EXPECT_EQ(Split(":a:", ':'), (Strings{"", "a", ""}));
}

TEST(SplitTest, NoSeparatorGivesWholeString) { EXPECT_EQ(Split("abc", ','), (Strings{"abc"})); }

TEST(SplitTest, EmptyInputGivesOneEmptyField) { EXPECT_EQ(Split("", ','), (Strings{""})); }

TEST(SplitTest, FieldCountIsSeparatorsPlusOne) {
  // The passwd parser relies on this: 6 colons give 7 fields.
  EXPECT_EQ(Split("root:x:0:0:root:/root:/bin/sh", ':').size(), 7u);
  EXPECT_EQ(Split("::::::", ':').size(), 7u);
}

TEST(TrimTest, RemovesLeadingAndTrailingWhitespace) {
  EXPECT_EQ(Trim("  a b \t\n"), "a b");
  EXPECT_EQ(Trim("\r\nx\r\n"), "x");
}

TEST(TrimTest, LeavesCleanStringAlone) { EXPECT_EQ(Trim("abc"), "abc"); }

TEST(TrimTest, AllWhitespaceBecomesEmpty) {
  EXPECT_EQ(Trim(" \t\n "), "");
  EXPECT_EQ(Trim(""), "");
}

TEST(StartsWithTest, MatchesPrefix) {
  EXPECT_TRUE(StartsWith("/sys/fs/cgroup", "/sys"));
  EXPECT_TRUE(StartsWith("abc", "abc"));
  EXPECT_TRUE(StartsWith("abc", ""));
}

TEST(StartsWithTest, RejectsNonPrefix) {
  EXPECT_FALSE(StartsWith("abc", "b"));
  EXPECT_FALSE(StartsWith("ab", "abc"));
  EXPECT_FALSE(StartsWith("", "a"));
}

}  // namespace
}  // namespace wb

namespace wb {
namespace {

TEST(ParseSecondsLimitTest, FoundByTheFuzzerTooLargeForMilliseconds) {
  auto r = ParseSeconds("18446744073709551616", "--timeout");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("too large"), std::string::npos);
  EXPECT_TRUE(ParseSeconds("1000000000", "--timeout").ok());
}

}  // namespace
}  // namespace wb

namespace wb {
namespace {

TEST(ParseCpusTest, AcceptsPositiveDecimalsUpTo1024) {
  EXPECT_DOUBLE_EQ(*ParseCpus("0.5", "--cpus"), 0.5);
  EXPECT_DOUBLE_EQ(*ParseCpus(" 2 ", "--cpus"), 2.0);
  EXPECT_DOUBLE_EQ(*ParseCpus("1024", "--cpus"), 1024.0);
  for (const char* bad : {"", "0", "-1", "1025", "1e3", "0x10", "inf", "nan", "two"}) {
    auto r = ParseCpus(bad, "--cpus");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().ToString().find("--cpus"), std::string::npos);
  }
}

}  // namespace
}  // namespace wb
