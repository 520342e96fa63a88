#include "oci/layer_plan.h"

#include <gtest/gtest.h>

namespace wb::oci {
namespace {

TEST(LayerPlanTest, CleansPaths) {
  EXPECT_EQ(CleanMemberPath("./a//b/./c/").value(), "a/b/c");
  EXPECT_EQ(CleanMemberPath("./").value(), "");
  EXPECT_EQ(CleanMemberPath("a..b/..c").value(), "a..b/..c");
  for (const char* bad : {"/etc/passwd", "../../etc/passwd", "a/../../b", "a/..", "..", ""}) {
    auto r = CleanMemberPath(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_NE(CleanMemberPath("/etc/passwd").error().ToString().find("absolute"), std::string::npos);
  EXPECT_NE(CleanMemberPath("../x").error().ToString().find(".."), std::string::npos);
}

TEST(LayerPlanTest, Whiteouts) {
  auto w = PlanEntry("./etc/.wh.motd");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->action, EntryAction::kWhiteout);
  EXPECT_EQ(w->path, "etc/motd");
  auto top = PlanEntry(".wh.file");
  EXPECT_EQ(top->action, EntryAction::kWhiteout);
  EXPECT_EQ(top->path, "file");
  auto o = PlanEntry("opt/app/.wh..wh..opq");
  EXPECT_EQ(o->action, EntryAction::kOpaque);
  EXPECT_EQ(o->path, "opt/app");
  auto root_opq = PlanEntry(".wh..wh..opq");
  EXPECT_EQ(root_opq->action, EntryAction::kOpaque);
  EXPECT_EQ(root_opq->path, "");
  EXPECT_EQ(PlanEntry("a/.wh..wh.plnk").value().action, EntryAction::kSkip);
  EXPECT_FALSE(PlanEntry("a/.wh.").ok());
  EXPECT_FALSE(PlanEntry("a/.wh...").ok());
  EXPECT_FALSE(PlanEntry("../.wh.x").ok());
  auto f = PlanEntry("usr/bin/python3");
  EXPECT_EQ(f->action, EntryAction::kWrite);
  EXPECT_EQ(f->path, "usr/bin/python3");
  EXPECT_EQ(PlanEntry("./").value().action, EntryAction::kSkip);
}

TEST(LayerPlanTest, Xattrs) {
  EXPECT_TRUE(KeepXattr("user.mime_type"));
  EXPECT_FALSE(KeepXattr("user.overlay.opaque"));
  EXPECT_FALSE(KeepXattr("security.capability"));
  EXPECT_FALSE(KeepXattr("trusted.overlay.opaque"));
  EXPECT_FALSE(KeepXattr("system.posix_acl_access"));
}

TEST(LayerPlanTest, ShiftIds) {
  EXPECT_EQ(ShiftId(0, 1000000000, "x").value(), 1000000000u);
  EXPECT_EQ(ShiftId(65535, 1000000000, "x").value(), 1000065535u);
  EXPECT_FALSE(ShiftId(65536, 1000000000, "x").ok());
  EXPECT_FALSE(ShiftId(-1, 1000000000, "x").ok());
}

}  // namespace
}  // namespace wb::oci
