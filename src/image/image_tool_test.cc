// Issue 19, finding 13: an image named "--help" reached the image helper as
// an option (it printed its help, "succeeded", and the daemon was left with
// an empty pool). Names are validated, and operands always follow "--".
#include "image/image_tool.h"

#include <gtest/gtest.h>

#include "base/fs.h"
#include "image/store.h"
#include "tests/test_util.h"

namespace wb {
namespace {

TEST(ImageNameTest, OptionLikeNamesAreRefused) {
  for (const char* bad : {"--help", "-h", "--state-dir=/etc", "-"}) {
    auto v = ImageStore::ValidateName(bad);
    ASSERT_FALSE(v.ok()) << bad;
    EXPECT_NE(v.error().ToString().find("must not start with '-'"), std::string::npos)
        << v.error().ToString();
  }
  // Controls: dashes inside a name are fine.
  EXPECT_TRUE(ImageStore::ValidateName("my-image").ok());
  EXPECT_TRUE(ImageStore::ValidateName("reg.io/a-b/c-d:1-2").ok());
}

TEST(ImageToolTest, OperandsAreNeverReadAsOptions) {
  std::string state = wb::testing::MakeTempDir("wb-image-tool-test");
  ASSERT_FALSE(state.empty());
  ImageToolCall call{
      wb::testing::BuildDir() + "/warmbox-image", state, 1000000000, {"pull"}, {"--help"}};
  auto r = RunImageTool(call);
  // The helper reads "--help" as a reference and refuses it (before any
  // network access); read as an option, it printed its help and succeeded.
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("--help"), std::string::npos) << r.error().ToString();
  call.operands = {"--state-dir=/nonexistent"};
  auto s = RunImageTool(call);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().ToString().find("--state-dir=/nonexistent"), std::string::npos)
      << s.error().ToString();
  (void)RemoveTree(state);
}

}  // namespace
}  // namespace wb
