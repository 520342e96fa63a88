// systemd integration, end to end with Debian's systemd-socket-activate: the
// daemon takes its sockets from LISTEN_FDS, says READY=1 on $NOTIFY_SOCKET
// once it serves and STOPPING=1 when it drains, and logs JSON lines.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using wb::testing::Eventually;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kActivationTest);
constexpr const char* kActivate = "/usr/bin/systemd-socket-activate";

// A free TCP port on 127.0.0.1 (bound then released; the activator binds it next).
uint16_t FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  socklen_t len = sizeof a;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// One datagram from the notify socket, or "" after timeout_ms.
std::string RecvNotify(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return "";
  char buf[512];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Reads notify datagrams until one contains want (bounded).
bool WaitNotify(int fd, const std::string& want, std::string& seen) {
  for (int i = 0; i < 20; ++i) {
    std::string d = RecvNotify(fd, 30000);
    if (d.empty()) return false;
    seen += d + "|";
    if (d.find(want) != std::string::npos) return true;
  }
  return false;
}

std::string HttpGet(uint16_t port, const std::string& path, const std::string& token) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  std::string req = "GET " + path + " HTTP/1.0\r\nAuthorization: Bearer " + token + "\r\n\r\n";
  if (!WriteAll(fd.get(), req).ok()) return "";
  auto resp = ReadAll(fd.get());
  return resp.ok() ? *resp : "";
}

TEST(ActivationTest, SocketActivatedDaemonNotifiesServesOverBothSocketsAndDrains) {
  std::string why = wb::testing::SandboxProbe();
  if (!why.empty()) GTEST_SKIP() << why;
  if (::access(kActivate, X_OK) != 0)
    GTEST_SKIP() << kActivate << " missing (Debian package systemd)";
  std::string state = wb::testing::MakeTempDir("wb-activation-test");
  ASSERT_FALSE(state.empty());
  const std::string sock = state + "/pool.sock", notify = state + "/notify.sock";
  const std::string token_file = state + "/token";
  const std::string token = "t0ken-for-the-activation-test";
  ASSERT_TRUE(WriteFileAtomic(token_file, token + "\n", 0600).ok());
  ASSERT_EQ(::chmod(token_file.c_str(), 0600), 0);

  UniqueFd nfd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, notify.data(), notify.size());
  ASSERT_EQ(::bind(nfd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  const uint16_t port = FreePort();
  ASSERT_NE(port, 0);
  SpawnOptions o;
  o.path = kActivate;
  // The activator binds both sockets, execs warmbox in its place (same pid)
  // with LISTEN_FDS=2 and LISTEN_FDNAMES=pool:http.
  o.argv = {kActivate,
            "-l",
            sock,
            "-l",
            "127.0.0.1:" + std::to_string(port),
            "--fdname=pool:http",
            "-E",
            "NOTIFY_SOCKET=" + notify,
            "-E",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            wb::testing::BuildDir() + "/warmbox",
            "--state-dir",
            state,
            "--userns-base",
            std::to_string(kBase),
            "--log-format",
            "json",
            "--log-level",
            "info",
            "pool",
            "start",
            "--size",
            "1",
            "--http-token-file",
            token_file};
  UniqueFd log(::open((state + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  o.fds = {{log.get(), 2}};
  auto daemon = ChildProcess::Spawn(o);
  ASSERT_OK(daemon);
  auto log_text = [&] {
    return ReadFile(state + "/daemon.log").ok() ? *ReadFile(state + "/daemon.log") : "";
  };

  // As under systemd, the first client's connection starts the daemon: the
  // activator holds the bound sockets and execs warmbox when one is used.
  // The connection waits in the backlog and is served by the new daemon.
  ASSERT_TRUE(Eventually([&] { return PathExists(sock); }, 10000));
  daemon::PoolClient client(sock);
  auto st = client.Status();
  ASSERT_OK(st) << log_text();
  std::string seen;
  ASSERT_TRUE(WaitNotify(nfd.get(), "READY=1", seen)) << seen << "\n" << log_text();
  proto::RunRequest r;
  r.cmd = {"echo", "activated"};
  auto resp = client.Run(r);
  ASSERT_OK(resp);
  EXPECT_EQ(resp->stdout_data, "activated\n");
  EXPECT_EQ(resp->exit_code, 0);

  // The inherited TCP socket serves the HTTP API, with the token.
  std::string health = HttpGet(port, "/healthz", "");
  EXPECT_NE(health.find("200 OK"), std::string::npos) << health;
  std::string metrics = HttpGet(port, "/metrics", token);
  EXPECT_NE(metrics.find("warmbox_runs_total{image=\"busybox\",driver=\"ns\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(HttpGet(port, "/metrics", "wrong-token").find("401 Unauthorized"), std::string::npos);

  ASSERT_TRUE(client.Stop().ok());
  EXPECT_TRUE(WaitNotify(nfd.get(), "STOPPING=1", seen)) << seen;
  auto exit = daemon->Wait();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->ShellCode(), 0) << log_text();
  // The socket file belongs to the activator (systemd): left in place.
  EXPECT_TRUE(PathExists(sock));

  // --log-format json: every line is an object; the run is one line with
  // its fields, and never the command's output.
  bool run_line = false;
  for (const auto& line : Split(log_text(), '\n')) {
    // The activator's own lines ("Listening on ...", "Execing ...") share stderr.
    if (Trim(line).empty()) continue;
    if (line.front() != '{') {
      EXPECT_TRUE(StartsWith(line, "Listening on ") || StartsWith(line, "Communication attempt") ||
                  StartsWith(line, "Execing "))
          << "not JSON: " << line;
      continue;
    }
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg")) << line;
    if (j["msg"] == "run") {
      run_line = true;
      EXPECT_EQ(j["image"], "busybox");
      EXPECT_EQ(j["exit"], 0);
      EXPECT_TRUE(j["exec_ms"].is_number()) << line;
      EXPECT_EQ(j["sandbox"], resp->sandbox);
      EXPECT_TRUE(j.contains("exec_ms") && j.contains("acquire_ms")) << line;
    }
    EXPECT_EQ(line.find("activated"), std::string::npos) << "command output in the log: " << line;
  }
  EXPECT_TRUE(run_line) << log_text();
  (void)RemoveTree(state);
}

}  // namespace
}  // namespace wb
