#include "base/error.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <set>
#include <string>

#include "tests/assert_ok.h"

namespace wb {
namespace {

// --- Error::ToString / Wrap ----------------------------------------------------

TEST(ErrorTest, ToStringWithErrno) {
  Error e{"mount", "/x", EACCES, ""};
  EXPECT_EQ(e.ToString(), "mount(/x): Permission denied");
}

TEST(ErrorTest, ToStringWithDetailOnly) {
  Error e = Fail("parse size", "abc", "expected a size like 512m");
  EXPECT_EQ(e.ToString(), "parse size(abc): expected a size like 512m");
}

TEST(ErrorTest, ToStringAppendsDetailAfterErrno) {
  Error e{"open", "/etc/passwd", ENOENT, "image has no passwd"};
  EXPECT_EQ(e.ToString(), "open(/etc/passwd): No such file or directory: image has no passwd");
}

TEST(ErrorTest, ToStringWithoutArgOmitsParentheses) {
  Error e{"pipe2", "", EMFILE, ""};
  EXPECT_EQ(e.ToString(), "pipe2: Too many open files");
  Error bare{"sync", "", 0, ""};
  EXPECT_EQ(bare.ToString(), "sync");
}

TEST(ErrorTest, WrapPrefixesContext) {
  Error e{"mount", "/x", EPERM, ""};
  Error w = e.Wrap("create sandbox");
  EXPECT_EQ(w.ToString(), "create sandbox: mount(/x): Operation not permitted");
  EXPECT_EQ(w.err, EPERM);
  EXPECT_EQ(w.arg, "/x");
}

TEST(ErrorTest, WrapLeavesOriginalUnchanged) {
  Error e{"mount", "/x", EPERM, ""};
  (void)e.Wrap("create sandbox");
  EXPECT_EQ(e.ToString(), "mount(/x): Operation not permitted");
}

TEST(ErrorTest, WrapNests) {
  Error e = Fail("parse", "x", "bad").Wrap("inner").Wrap("outer");
  EXPECT_EQ(e.ToString(), "outer: inner: parse(x): bad");
}

TEST(ErrorTest, ErrnoCapturesCurrentErrno) {
  errno = ENOENT;
  Error e = Errno("open", "/nope");
  EXPECT_EQ(e.err, ENOENT);
  EXPECT_EQ(e.call, "open");
  EXPECT_EQ(e.arg, "/nope");
  EXPECT_TRUE(e.detail.empty());
}

TEST(ErrorTest, ErrnoValueUsesGivenValue) {
  errno = 0;
  Error e = ErrnoValue(EBUSY, "rmdir", "/sys/fs/cgroup/x");
  EXPECT_EQ(e.err, EBUSY);
  EXPECT_EQ(e.ToString(), "rmdir(/sys/fs/cgroup/x): Device or resource busy");
}

TEST(ErrorTest, FailHasNoErrno) {
  errno = EIO;
  Error e = Fail("spawn", "/bin/x", "empty argv");
  EXPECT_EQ(e.err, 0);
  EXPECT_EQ(e.detail, "empty argv");
}

// --- Result<T> / Result<void> -------------------------------------------------

TEST(ResultTest, HoldsValue) {
  Result<int> r = 42;
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
}

TEST(ResultTest, HoldsError) {
  Result<int> r = Fail("op", "arg", "broken");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().call, "op");
  EXPECT_EQ(r.error().detail, "broken");
}

TEST(ResultTest, ArrowReachesMembers) {
  Result<std::string> r = std::string("hello");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 5u);
}

TEST(ResultTest, ValueCanBeMovedOut) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

TEST(ResultTest, ErrorCanBeMovedOut) {
  Result<int> r = Fail("op", "arg", "broken");
  Error e = std::move(r).error();
  EXPECT_EQ(e.ToString(), "op(arg): broken");
}

TEST(ResultVoidTest, DefaultIsOk) {
  Result<void> r;
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(Ok().ok());
}

TEST(ResultVoidTest, HoldsError) {
  Result<void> r = ErrnoValue(EINVAL, "write", "/sys/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().err, EINVAL);
  EXPECT_EQ(r.error().arg, "/sys/x");
}

// --- WB_TRY / WB_RETURN_IF_ERROR ----------------------------------------------

Result<int> Half(int x) {
  if (x % 2 != 0) return Fail("half", std::to_string(x), "odd");
  return x / 2;
}

int g_after_try = 0;

Result<int> Quarter(int x) {
  int h = WB_TRY(Half(x));
  ++g_after_try;
  return WB_TRY(Half(h));
}

TEST(WbTryTest, YieldsValueOnSuccess) {
  auto r = Quarter(12);
  ASSERT_OK(r);
  EXPECT_EQ(*r, 3);
}

TEST(WbTryTest, PropagatesFirstError) {
  g_after_try = 0;
  auto r = Quarter(7);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().arg, "7");
  EXPECT_EQ(g_after_try, 0) << "code after a failed WB_TRY must not run";
}

TEST(WbTryTest, PropagatesSecondError) {
  g_after_try = 0;
  auto r = Quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().arg, "3");
  EXPECT_EQ(g_after_try, 1);
}

int g_evaluations = 0;

Result<int> CountedHalf(int x) {
  ++g_evaluations;
  return Half(x);
}

Result<int> TryOnce(int x) { return WB_TRY(CountedHalf(x)) + 1; }

TEST(WbTryTest, EvaluatesExpressionOnce) {
  g_evaluations = 0;
  auto r = TryOnce(4);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 3);
  EXPECT_EQ(g_evaluations, 1);
}

Result<std::unique_ptr<int>> MakeBox(bool ok) {
  if (!ok) return Fail("box", "", "no box");
  return std::make_unique<int>(5);
}

Result<int> Unbox(bool ok) {
  std::unique_ptr<int> p = WB_TRY(MakeBox(ok));
  return *p * 2;
}

TEST(WbTryTest, WorksWithMoveOnlyValues) {
  auto good = Unbox(true);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 10);
  auto bad = Unbox(false);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().call, "box");
}

int g_stored = 0;

Result<void> StoreHalf(int x) {
  g_stored = WB_TRY(Half(x));
  return Ok();
}

TEST(WbTryTest, WorksInResultVoidFunction) {
  g_stored = -1;
  ASSERT_TRUE(StoreHalf(10).ok());
  EXPECT_EQ(g_stored, 5);
  g_stored = -1;
  auto r = StoreHalf(5);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().detail, "odd");
  EXPECT_EQ(g_stored, -1);
}

Result<void> CheckEven(int x) {
  if (x % 2 != 0) return ErrnoValue(EDOM, "check even", std::to_string(x));
  return Ok();
}

int g_after_check = 0;

Result<int> DoubleIfEven(int x) {
  WB_RETURN_IF_ERROR(CheckEven(x));
  ++g_after_check;
  return x * 2;
}

TEST(WbCheckTest, ContinuesOnSuccess) {
  g_after_check = 0;
  auto r = DoubleIfEven(4);
  ASSERT_OK(r);
  EXPECT_EQ(*r, 8);
  EXPECT_EQ(g_after_check, 1);
}

TEST(WbCheckTest, ReturnsErrorOnFailure) {
  g_after_check = 0;
  auto r = DoubleIfEven(3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().err, EDOM);
  EXPECT_EQ(r.error().arg, "3");
  EXPECT_EQ(g_after_check, 0);
}

Result<void> CheckBoth(int a, int b) {
  WB_RETURN_IF_ERROR(CheckEven(a));
  WB_RETURN_IF_ERROR(CheckEven(b));
  return Ok();
}

TEST(WbCheckTest, WorksInResultVoidFunction) {
  EXPECT_TRUE(CheckBoth(2, 4).ok());
  auto r = CheckBoth(2, 5);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().arg, "5");
}

// --- ErrorCode ------------------------------------------------------------------

TEST(ErrorCodeTest, FailIsInternalUnlessGivenACode) {
  EXPECT_EQ(Fail("x", "y", "z").code, ErrorCode::kInternal);
  EXPECT_EQ(Fail(ErrorCode::kBusy, "pool", "busybox", "queue full").code, ErrorCode::kBusy);
}

TEST(ErrorCodeTest, ErrnoDerivesTheCode) {
  EXPECT_EQ(ErrnoValue(ENOENT, "open", "/x").code, ErrorCode::kNotFound);
  EXPECT_EQ(ErrnoValue(EACCES, "open", "/x").code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(ErrnoValue(ENOSPC, "write", "/x").code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(ErrnoValue(ETIMEDOUT, "connect", "/x").code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(ErrnoValue(EINVAL, "mount", "/x").code, ErrorCode::kInternal);
  errno = EEXIST;
  EXPECT_EQ(Errno("mkdir", "/x").code, ErrorCode::kAlreadyExists);
}

TEST(ErrorCodeTest, WrapKeepsTheCodeWhateverTheText) {
  // The kind must never depend on the message: a wrap that adds words such as
  // "busy" or "shutting down" changes nothing.
  Error e = Fail(ErrorCode::kDraining, "pool", "busybox", "stopping");
  EXPECT_EQ(e.Wrap("busy").Wrap("run").code, ErrorCode::kDraining);
  Error internal = Fail("mount", "/x", "the daemon is shutting down");
  EXPECT_EQ(internal.Wrap("busy").code, ErrorCode::kInternal);
}

TEST(ErrorCodeTest, WithCodeChangesOnlyTheCode) {
  Error e = ErrnoValue(ENOENT, "stat", "/images/x");
  Error f = e.WithCode(ErrorCode::kInvalidArgument);
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(f.ToString(), e.ToString());
}

TEST(ErrorCodeTest, WireNamesAreDistinct) {
  std::set<std::string> names;
  for (int c = 0; c <= static_cast<int>(ErrorCode::kUnavailable); ++c) {
    names.insert(ErrorCodeName(static_cast<ErrorCode>(c)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(ErrorCode::kUnavailable) + 1);
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kBusy), "busy");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kInvalidArgument), "bad_request");
}

TEST(ErrorCodeTest, NamesMapBackToTheirCodes) {
  for (int c = 0; c <= static_cast<int>(ErrorCode::kUnavailable); ++c) {
    auto code = static_cast<ErrorCode>(c);
    EXPECT_EQ(ErrorCodeFromName(ErrorCodeName(code)), code);
  }
  EXPECT_EQ(ErrorCodeFromName("no_such_kind"), ErrorCode::kInternal);
}

}  // namespace
}  // namespace wb
