// gtest assertions on wb::Result that print the error (its ToString()) when
// they fail:
//   ASSERT_OK(expr);                      fatal unless expr is ok
//   EXPECT_OK(expr);                      non-fatal
//   ASSERT_OK_AND_ASSIGN(auto v, expr);   fatal unless ok, then v = the value
// Like any gtest assertion, ASSERT_OK and EXPECT_OK take more context with <<.
// ASSERT_OK_AND_ASSIGN, like ASSERT_*, only in functions returning void.
#pragma once

#include <gtest/gtest.h>

#include <utility>

#include "base/error.h"

namespace wb::testing {

template <typename T>
::testing::AssertionResult ResultIsOk(const char* text, const Result<T>& r) {
  if (r.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << text << " failed: " << r.error().ToString();
}

}  // namespace wb::testing

#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::wb::testing::ResultIsOk, expr)
#define EXPECT_OK(expr) EXPECT_PRED_FORMAT1(::wb::testing::ResultIsOk, expr)

#define WB_TEST_CONCAT_INNER_(a, b) a##b
#define WB_TEST_CONCAT_(a, b) WB_TEST_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  WB_ASSERT_OK_AND_ASSIGN_IMPL_(WB_TEST_CONCAT_(wb_assert_result_, __LINE__), lhs, expr)
// The failure names expr, not the temporary.
#define WB_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)                         \
  auto tmp = (expr);                                                          \
  GTEST_ASSERT_(::wb::testing::ResultIsOk(#expr, tmp), GTEST_FATAL_FAILURE_); \
  lhs = std::move(tmp).value()
