#include "tests/daemon_fixture.h"

#include <fcntl.h>
#include <signal.h>

#include "base/fs.h"
#include "daemon/client.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"

namespace wb::testing {

using daemon::PoolClient;

void DaemonFixture::SetUp() {
  std::string why = SandboxProbe();
  if (!why.empty()) GTEST_SKIP() << why;
  state_ = MakeTempDir(prefix_);
  ASSERT_FALSE(state_.empty());
  sock_ = state_ + "/pool.sock";
}

void DaemonFixture::TearDown() {
  StopDaemon();
  if (!state_.empty()) (void)RemoveTree(state_);
}

void DaemonFixture::StopDaemon() {
  if (daemon_.running()) {
    (void)daemon_.Signal(SIGTERM);
    (void)daemon_.Wait();
  }
}

std::vector<std::string> DaemonFixture::Cli(std::vector<std::string> args,
                                            const std::string& state) const {
  std::vector<std::string> full = {BuildDir() + "/warmbox", "--state-dir",
                                   state.empty() ? state_ : state, "--userns-base",
                                   std::to_string(base_)};
  full.insert(full.end(), args.begin(), args.end());
  return full;
}

void DaemonFixture::StartDaemon(std::vector<std::string> extra, std::string state) {
  std::vector<std::string> args = {"pool", "start", "--socket", sock_};
  args.insert(args.end(), extra.begin(), extra.end());
  SpawnOptions o;
  auto argv = Cli(args, state);
  o.path = argv[0];
  o.argv = argv;
  o.env = daemon_env_;
  log_ = UniqueFd(
      ::open((state_ + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  o.fds = {{log_.get(), 2}};
  ASSERT_OK_AND_ASSIGN(daemon_, ChildProcess::Spawn(o));
  ASSERT_TRUE(Eventually([&] { return PoolClient(sock_).Status().ok(); }, 10000)) << Log();
}

std::string DaemonFixture::Log() const {
  auto text = ReadFile(state_ + "/daemon.log");
  return text.ok() ? *text : "";
}

std::optional<proto::ImageStat> DaemonFixture::Stat(const std::string& image) const {
  auto st = PoolClient(sock_).Status();
  if (!st.ok()) return std::nullopt;
  for (const auto& s : *st) {
    if (s.image == image) return s;
  }
  return std::nullopt;
}

bool DaemonFixture::IdleIs(const std::string& image, uint64_t n, int ms) const {
  return Eventually(
      [&] {
        auto s = Stat(image);
        return s && s->idle == n && s->creating == 0;
      },
      ms);
}

bool DaemonFixture::Settled(uint64_t idle, const std::string& image, int ms) const {
  return Eventually(
      [&] {
        auto s = Stat(image);
        return s && s->idle == idle && s->creating == 0 && s->active == 0;
      },
      ms);
}

proto::RunResponse DaemonFixture::Run(std::vector<std::string> cmd,
                                      std::optional<std::string> image, uint64_t timeout_ms) const {
  proto::RunRequest r;
  r.cmd = std::move(cmd);
  r.image = std::move(image);
  r.timeout_ms = timeout_ms;
  auto resp = PoolClient(sock_).Run(r);
  EXPECT_OK(resp);
  return resp.ok() ? *resp : proto::ErrorResponse("client failed");
}

std::set<pid_t> DaemonFixture::Agents() const { return SandboxRootPids(base_); }

size_t DaemonFixture::SandboxProcesses() const {
  return PidsWithUidIn(base_, base_ + UidSpan(kDefaultUidSlots)).size();
}

}  // namespace wb::testing
