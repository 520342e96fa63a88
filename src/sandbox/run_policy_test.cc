#include "sandbox/run_policy.h"

#include <gtest/gtest.h>

namespace wb {
namespace {

TEST(RunPolicyTest, AppliesTheImageDefaults) {
  Image img;
  img.name = "app";
  img.config.env = {"A=image", "B=image"};
  img.config.entrypoint = {"/entry"};
  img.config.cmd = {"default-arg"};
  img.config.working_dir = "/srv";
  img.config.user = "app";
  proto::ExecRequest req;
  req.env = {"B=run"};
  auto r = PrepareExec(img, req);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->argv, (std::vector<std::string>{"/entry", "default-arg"}));
  EXPECT_EQ(r->env, (std::vector<std::string>{"A=image", "B=image", "B=run"}));
  EXPECT_EQ(r->cwd, "/srv");
  EXPECT_EQ(r->user, "app");
  // The run's own command replaces Cmd, after the Entrypoint; its cwd and user win.
  req.argv = {"x"};
  req.cwd = "/tmp";
  req.user = "0";
  r = PrepareExec(img, req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->argv, (std::vector<std::string>{"/entry", "x"}));
  EXPECT_EQ(r->cwd, "/tmp");
  EXPECT_EQ(r->user, "0");
}

TEST(RunPolicyTest, NoCommandAnywhereIsRefused) {
  Image img;
  img.name = "bare";
  proto::ExecRequest req;
  auto r = PrepareExec(img, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().ToString(),
            "run(bare): missing command (the image has no Cmd or Entrypoint): give CMD [ARG...] "
            "after --");
  // Either of Cmd or Entrypoint is enough.
  img.config.cmd = {"sh"};
  EXPECT_TRUE(PrepareExec(img, req).ok());
  img.config.cmd.clear();
  img.config.entrypoint = {"sh"};
  EXPECT_TRUE(PrepareExec(img, req).ok());
  // A program that is not there is the agent's to report (exit 127), not refused here.
  img.config.entrypoint.clear();
  req.argv = {"no-such-program"};
  EXPECT_TRUE(PrepareExec(img, req).ok());
}

}  // namespace
}  // namespace wb
