#include "daemon/run_ceilings.h"

#include <gtest/gtest.h>

#include "tests/assert_ok.h"

namespace wb::daemon {
namespace {

TEST(RunCeilingsTest, UpToTheCeilingIsFineAboveIsABadRequestNamingBoth) {
  RunCeilings c;
  c.memory_bytes = 1 << 30;
  c.pids = 100;
  c.cpus = 2;
  c.nofile = 1000;
  c.output_cap = 1 << 20;
  c.timeout_ms = 60000;
  proto::RunRequest at;
  EXPECT_OK(CheckRunCeilings(at, c));  // nothing asked: the daemon's defaults
  at.memory_bytes = 1 << 30;
  at.pids = 100;
  at.cpus = 2;
  at.nofile = 1000;
  at.output_cap = 1 << 20;
  at.timeout_ms = 60000;
  EXPECT_OK(CheckRunCeilings(at, c));
  struct Case {
    void (*over)(proto::RunRequest&);
    const char* needle;
  };
  for (const Case& k : std::vector<Case>{
           {[](proto::RunRequest& r) { r.memory_bytes = (1 << 30) + 1; },
            "bad request(memory): 1073741825 is above the daemon's ceiling of 1073741824 "
            "(--max-run-memory)"},
           {[](proto::RunRequest& r) { r.pids = 101; }, "(--max-run-pids)"},
           {[](proto::RunRequest& r) { r.cpus = 2.5; }, "bad request(cpus): 2.5 is above"},
           {[](proto::RunRequest& r) { r.nofile = 1001; }, "(--max-run-nofile)"},
           {[](proto::RunRequest& r) { r.output_cap = (1 << 20) + 1; }, "(--max-run-output)"},
           {[](proto::RunRequest& r) { r.timeout_ms = 60001; }, "(--max-run-timeout)"}}) {
    proto::RunRequest r = at;
    k.over(r);
    auto res = CheckRunCeilings(r, c);
    ASSERT_FALSE(res.ok()) << k.needle;
    EXPECT_EQ(res.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(res.error().ToString().find(k.needle), std::string::npos) << res.error().ToString();
  }
  // A cpus ceiling of 0 means the host's CPUs, set by the caller: no check here.
  c.cpus = 0;
  at.cpus = 64;
  EXPECT_OK(CheckRunCeilings(at, c));
}

}  // namespace
}  // namespace wb::daemon
