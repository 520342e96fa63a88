// The test harness itself: the uid-range table and the Result assertions.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cctype>

#include "base/fs.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/assert_ok.h"
#include "tests/uid_ranges.h"

namespace wb::testing {
namespace {

TEST(UidRangesTest, OneRangePerUserInEnumOrder) {
  for (size_t i = 0; i < kUidRanges.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(kUidRanges[i].user), i) << kUidRanges[i].owner;
    EXPECT_GE(kUidRanges[i].count, kUidCount) << kUidRanges[i].owner;
  }
  EXPECT_EQ(kRangeIds, kUidCount);
  EXPECT_EQ(UidBase(UidUser::kDefault), kDefaultUidBase);
}

TEST(UidRangesTest, NoTwoRangesOverlapAndAllFitBelow2To32) {
  for (const auto& a : kUidRanges) {
    EXPECT_GT(a.base, 0u) << a.owner;
    EXPECT_LE(uint64_t{a.base} + a.count, uint64_t{1} << 32) << a.owner;
    for (const auto& b : kUidRanges) {
      if (&a == &b) continue;
      const bool disjoint =
          uint64_t{a.base} + a.count <= b.base || uint64_t{b.base} + b.count <= a.base;
      EXPECT_TRUE(disjoint) << a.owner << " [" << a.base << ", +" << a.count << ") overlaps "
                            << b.owner << " [" << b.base << ", +" << b.count << ")";
    }
  }
}

// Every `NAME = <number>` of a Python file whose sandbox range [n, n + 65536)
// must lie inside the range of user.
void ExpectPythonBasesInside(const std::string& rel, const std::string& name, UidUser user) {
  SCOPED_TRACE(rel);
  auto text = ReadFile(std::string(WB_SOURCE_DIR) + "/" + rel);
  ASSERT_OK(text);
  const UidRange& r = kUidRanges[static_cast<size_t>(user)];
  // A plain scan, not std::regex: GCC 12's <regex> trips -Wmaybe-uninitialized
  // under -fsanitize=address, which -Werror turns into a build failure.
  const std::string key = name + " = ";
  int found = 0;
  for (size_t at = text->find(key); at != std::string::npos; at = text->find(key, at + 1)) {
    if (at > 0 &&
        (std::isalnum(static_cast<unsigned char>((*text)[at - 1])) || (*text)[at - 1] == '_')) {
      continue;  // a longer name that ends in `name`
    }
    size_t end = at + key.size();
    while (end < text->size() && std::isdigit(static_cast<unsigned char>((*text)[end]))) ++end;
    if (end == at + key.size()) continue;  // not a number
    ++found;
    const std::string line = text->substr(at, end - at);
    const uint64_t base = std::stoull(text->substr(at + key.size(), end - at - key.size()));
    EXPECT_GE(base, r.base) << line << " is outside " << r.owner << "'s range";
    EXPECT_LE(base + kUidCount, uint64_t{r.base} + r.count)
        << line << " is outside " << r.owner << "'s range";
  }
  EXPECT_GT(found, 0) << "no " << name << " found";
}

TEST(UidRangesTest, PythonSuitesUseTheirRegisteredRanges) {
  ExpectPythonBasesInside("tests/http/test_http_api.py", "UID_BASE", UidUser::kHttpApiTest);
  ExpectPythonBasesInside("tests/http/test_prometheus.py", "UID_BASE",
                          UidUser::kHttpPrometheusTest);
  ExpectPythonBasesInside("clients/python/tests/_support.py", "USERNS_BASE",
                          UidUser::kPythonClientTest);
  ExpectPythonBasesInside("clients/python/tests/test_sandbox.py", "LIVE_USERNS_BASE",
                          UidUser::kPythonLiveTest);
  ExpectPythonBasesInside("tests/http/test_http_live.py", "UID_BASE", UidUser::kHttpLiveTest);
  ExpectPythonBasesInside("tests/e2b/daemon.mjs", "UID_BASE", UidUser::kE2bSdkTest);
  ExpectPythonBasesInside("tests/mcp/mcp_daemon.mjs", "UID_BASE", UidUser::kMcpTest);
}

Result<int> Succeed() { return 7; }
Result<int> FailWithDetail() { return Fail(ErrorCode::kNotFound, "lookup", "thing", "the detail"); }
Result<void> FailVoid() { return Fail("do", "x", "the void detail"); }

TEST(AssertOkTest, PassesOnOkAndAssignsTheValue) {
  ASSERT_OK(Succeed());
  EXPECT_OK(Succeed());
  EXPECT_OK(Ok());
  ASSERT_OK_AND_ASSIGN(int v, Succeed());
  EXPECT_EQ(v, 7);
  ASSERT_OK_AND_ASSIGN(auto moved, Result<std::string>(std::string("text")));
  EXPECT_EQ(moved, "text");
}

TEST(AssertOkTest, FailuresPrintTheErrorAndStopWhereFatal) {
  const std::string detail = FailWithDetail().error().ToString();
  EXPECT_NONFATAL_FAILURE(EXPECT_OK(FailWithDetail()), detail);
  EXPECT_NONFATAL_FAILURE(EXPECT_OK(FailVoid()), "the void detail");
  EXPECT_FATAL_FAILURE(ASSERT_OK(FailWithDetail()) << "more context", "more context");
  EXPECT_FATAL_FAILURE(ASSERT_OK(FailWithDetail()), detail);
  // The expression is named, not the macro's temporary.
  EXPECT_FATAL_FAILURE(
      {
        ASSERT_OK_AND_ASSIGN(int v, FailWithDetail());
        (void)v;
      },
      "FailWithDetail() failed: " + detail);
}

}  // namespace
}  // namespace wb::testing
