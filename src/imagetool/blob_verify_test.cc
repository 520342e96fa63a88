#include "imagetool/blob_verify.h"

#include <gtest/gtest.h>

#include "tests/assert_ok.h"

namespace wb::imagetool {
namespace {

// sha256("hello\n"), as `sha256sum` prints it.
constexpr const char* kHelloDigest =
    "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

oci::Descriptor Hello() {
  oci::Descriptor d;
  d.digest = kHelloDigest;
  d.size = 6;
  return d;
}

bool Contains(const Result<void>& r, const std::string& text) {
  return !r.ok() && r.error().ToString().find(text) != std::string::npos;
}

TEST(BlobVerifyTest, TheRightBytesPassInOneGoOrInChunks) {
  EXPECT_OK(VerifyBlob(Hello(), "hello\n"));
  BlobVerifier v(Hello());
  for (std::string_view chunk : {"he", "", "llo", "\n"}) ASSERT_OK(v.Update(chunk));
  EXPECT_EQ(v.received(), 6u);
  EXPECT_OK(v.Finish());
}

TEST(BlobVerifyTest, OtherContentOfTheSameSizeIsADigestMismatch) {
  auto r = VerifyBlob(Hello(), "hellO\n");
  EXPECT_TRUE(Contains(r, "digest mismatch: the content hashes to sha256:"))
      << r.error().ToString();
  EXPECT_TRUE(Contains(r, kHelloDigest)) << "the error names the blob";
}

TEST(BlobVerifyTest, ShortContentIsTruncated) {
  auto r = VerifyBlob(Hello(), "hello");
  EXPECT_TRUE(Contains(r, "truncated: 5 bytes where 6 were announced")) << r.error().ToString();
  EXPECT_TRUE(Contains(VerifyBlob(Hello(), ""), "truncated: 0 bytes"));
}

TEST(BlobVerifyTest, LongContentFailsAsSoonAsItPassesTheSize) {
  BlobVerifier v(Hello());
  ASSERT_OK(v.Update("hello\n"));
  auto r = v.Update("x");
  EXPECT_TRUE(Contains(r, "too long: 7 bytes or more where 6 were announced"))
      << (r.ok() ? "accepted" : r.error().ToString());
  EXPECT_FALSE(VerifyBlob(Hello(), "hello\nx").ok());
  // The right bytes followed by more are not the blob, even hashed whole.
  EXPECT_FALSE(v.Finish().ok());
}

TEST(BlobVerifyTest, ResetStartsAFreshAttempt) {
  BlobVerifier v(Hello());
  ASSERT_OK(v.Update("garb"));
  v.Reset();
  EXPECT_EQ(v.received(), 0u);
  ASSERT_OK(v.Update("hello\n"));
  EXPECT_OK(v.Finish());
}

}  // namespace
}  // namespace wb::imagetool
