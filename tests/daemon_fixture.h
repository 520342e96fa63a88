// A fixture for the tests that run a real warmbox pool daemon: a fresh state
// dir per test, the daemon started with the test binary's own uid range
// (tests/uid_ranges.h), its stderr kept in <state>/daemon.log, and helpers to
// wait on its status, run commands and count its sandboxes' processes.
// TearDown stops the daemon (SIGTERM) and removes the state dir.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/child.h"
#include "base/fd.h"
#include "proto/pool_proto.h"

namespace wb::testing {

class DaemonFixture : public ::testing::Test {
 protected:
  // temp_prefix names the state dir (/tmp/<prefix>.XXXXXX); uid_base is the
  // binary's range.
  DaemonFixture(std::string temp_prefix, uint32_t uid_base)
      : prefix_(std::move(temp_prefix)), base_(uid_base) {}

  // Skips without root or kernel features; makes the state dir.
  void SetUp() override;
  void TearDown() override;

  // The warmbox command line for args, on state (default: this test's).
  std::vector<std::string> Cli(std::vector<std::string> args, const std::string& state = "") const;
  // Starts `pool start --socket sock_ extra...` (on state, default this
  // test's) and waits until it answers status. The log is appended to, so a
  // restarted daemon's log follows the first one's.
  void StartDaemon(std::vector<std::string> extra, std::string state = "");
  // SIGTERM and wait, if running.
  void StopDaemon();
  std::string Log() const;

  // The status line of image, if the daemon answers and has it.
  std::optional<proto::ImageStat> Stat(const std::string& image = "busybox") const;
  // Within ms: image has n idle sandboxes and is creating none.
  bool IdleIs(const std::string& image, uint64_t n, int ms = 10000) const;
  // Within ms: image has idle idle sandboxes, creating none and running none.
  bool Settled(uint64_t idle, const std::string& image = "busybox", int ms = 10000) const;
  // Runs cmd through the socket; a client failure fails the test (non-fatal)
  // and is returned as an error response.
  proto::RunResponse Run(std::vector<std::string> cmd,
                         std::optional<std::string> image = std::nullopt,
                         uint64_t timeout_ms = 0) const;

  // Sandbox agents (they run as the base uid) and all sandbox processes.
  std::set<pid_t> Agents() const;
  size_t SandboxProcesses() const;
  uint32_t uid_base() const { return base_; }

  std::string state_, sock_;
  // The daemon's environment ("K=V"; empty by default, as systemd gives it).
  std::vector<std::string> daemon_env_;
  UniqueFd log_;
  ChildProcess daemon_;

 private:
  const std::string prefix_;
  const uint32_t base_;
};

}  // namespace wb::testing
