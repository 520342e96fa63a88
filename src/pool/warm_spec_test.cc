#include "pool/warm_spec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/assert_ok.h"

namespace wb {
namespace {

using Args = std::vector<std::string>;

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

// The error text of specs that must be refused.
std::string WarmError(const Args& args) {
  auto r = ParseWarmSpecs(args, 2);
  EXPECT_FALSE(r.ok()) << "accepted: " << ::testing::PrintToString(args);
  if (r.ok()) return "";
  return r.error().ToString();
}

const WarmEntry* Find(const std::vector<WarmEntry>& entries, const std::string& image) {
  for (const auto& e : entries) {
    if (e.image == image) return &e;
  }
  return nullptr;
}

TEST(ParseWarmSpecsTest, TrimsImageAndCount) {
  auto r = ParseWarmSpecs({" python:3 = 4 "}, 2);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].image, "python:3");
  EXPECT_EQ((*r)[0].count, 4u);
}

TEST(ParseWarmSpecsTest, ImageWithoutCountGetsDefault) {
  auto r = ParseWarmSpecs({"img"}, 3);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].image, "img");
  EXPECT_EQ((*r)[0].count, 3u);
}

TEST(ParseWarmSpecsTest, ImageWithRegistryPortAndTag) {
  auto r = ParseWarmSpecs({"registry:5000/ns/app:1.2=7"}, 1);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].image, "registry:5000/ns/app:1.2");
  EXPECT_EQ((*r)[0].count, 7u);
}

TEST(ParseWarmSpecsTest, SeveralEntriesInOneArg) {
  auto r = ParseWarmSpecs({"a=1,b=2"}, 5);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].image, "a");
  EXPECT_EQ((*r)[0].count, 1u);
  EXPECT_EQ((*r)[1].image, "b");
  EXPECT_EQ((*r)[1].count, 2u);
}

TEST(ParseWarmSpecsTest, SeveralArgs) {
  auto r = ParseWarmSpecs({"a=1", "b", "c=9,d"}, 4);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].image, "a");
  EXPECT_EQ((*r)[0].count, 1u);
  EXPECT_EQ((*r)[1].image, "b");
  EXPECT_EQ((*r)[1].count, 4u);
  EXPECT_EQ((*r)[2].image, "c");
  EXPECT_EQ((*r)[2].count, 9u);
  EXPECT_EQ((*r)[3].image, "d");
  EXPECT_EQ((*r)[3].count, 4u);
}

TEST(ParseWarmSpecsTest, LaterDuplicateWins) {
  auto r = ParseWarmSpecs({"a=1,b=2", "a=5"}, 3);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 2u);
  const WarmEntry* a = Find(*r, "a");
  const WarmEntry* b = Find(*r, "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->count, 5u);
  EXPECT_EQ(b->count, 2u);
}

TEST(ParseWarmSpecsTest, LaterDuplicateWinsWithinOneArg) {
  auto r = ParseWarmSpecs({"a=4, a"}, 3);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].image, "a");
  EXPECT_EQ((*r)[0].count, 3u);
}

TEST(ParseWarmSpecsTest, EmptyEntriesAreSkipped) {
  auto r = ParseWarmSpecs({",a=1,, ,b=2,", ""}, 3);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].image, "a");
  EXPECT_EQ((*r)[1].image, "b");
}

TEST(ParseWarmSpecsTest, NoArgsGiveNoEntries) {
  auto none = ParseWarmSpecs({}, 3);
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());

  auto blanks = ParseWarmSpecs({",", " , ", ""}, 3);
  ASSERT_OK(blanks);
  EXPECT_TRUE(blanks->empty());
}

TEST(ParseWarmSpecsTest, ZeroCountIsRefused) {
  EXPECT_TRUE(Contains(WarmError({"img=0"}), "count must be > 0 (in 'img=0')"));
}

TEST(ParseWarmSpecsTest, MissingImageIsRefused) {
  EXPECT_TRUE(Contains(WarmError({"=3"}), "missing image in '=3'"));
  EXPECT_TRUE(Contains(WarmError({" = 3"}), "missing image in '= 3'"));
}

TEST(ParseWarmSpecsTest, NonNumericCountIsRefused) {
  EXPECT_TRUE(Contains(WarmError({"img=x"}), "invalid warm count in 'img=x'"));
}

TEST(ParseWarmSpecsTest, NegativeCountIsRefused) {
  EXPECT_TRUE(Contains(WarmError({"img=-1"}), "invalid warm count in 'img=-1'"));
}

TEST(ParseWarmSpecsTest, EmptyCountIsRefused) {
  EXPECT_TRUE(Contains(WarmError({"img="}), "invalid warm count in 'img='"));
}

TEST(ParseWarmSpecsTest, CountWithTrailingGarbageIsRefused) {
  EXPECT_TRUE(Contains(WarmError({"img=3x"}), "invalid warm count in 'img=3x'"));
  EXPECT_TRUE(Contains(WarmError({"img=1=2"}), "invalid warm count in 'img=1=2'"));
}

TEST(ParseWarmSpecsTest, OneBadEntryFailsTheWholeParse) {
  EXPECT_TRUE(Contains(WarmError({"a=1", "b=2,c=0"}), "count must be > 0 (in 'c=0')"));
}

TEST(ParseWarmSpecsTest, ErrorsNameTheFlag) {
  EXPECT_TRUE(Contains(WarmError({"img=x"}), "--warm"));
}

}  // namespace
}  // namespace wb
