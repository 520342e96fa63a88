// Published ports (`sandbox create -p`, docs/network.md) with a real daemon:
// a service in the sandbox reached on the host port, the port closed with
// the sandbox (refused, no socket left), a port in use refused by name.
//
// The test process (and so its daemon) moves into a network namespace of its
// own first: the host ports it publishes are on that namespace's loopback,
// never the machine's. That namespace is D of the network tests' private
// internet (tests/net_internet.h), for the egress sandbox taken over by a
// new daemon.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "tests/daemon_fixture.h"
#include "tests/net_internet.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using nlohmann::json;
using wb::testing::Eventually;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kPortsTest);

UniqueFd ConnectTo(uint16_t port) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
  // Bounded reads: a relay that hangs fails the test, not the suite.
  timeval tv{5, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return s;
}

// Sends data, half-closes, reads to EOF; "" when the connection failed.
std::string Exchange(uint16_t port, const std::string& data) {
  UniqueFd s = ConnectTo(port);
  if (!s) return "";
  if (!WriteAll(s.get(), data).ok()) return "";
  ::shutdown(s.get(), SHUT_WR);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(s.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Sockets of any process (inode != 0: TIME_WAIT has none) on local port.
size_t SocketsOnPort(uint16_t port) {
  char hex[8];
  std::snprintf(hex, sizeof hex, ":%04X", port);
  size_t n = 0;
  auto text = ReadFile("/proc/net/tcp");
  if (!text.ok()) return 0;
  for (const auto& line : Split(*text, '\n')) {
    auto f = Split(std::string(Trim(line)), ' ');
    std::vector<std::string> cols;
    for (auto& c : f) {
      if (!c.empty()) cols.push_back(c);
    }
    if (cols.size() > 9 && cols[1].size() > 5 && cols[1].substr(cols[1].size() - 5) == hex &&
        cols[9] != "0")
      ++n;
  }
  return n;
}

class PortsTest : public wb::testing::DaemonFixture {
 protected:
  PortsTest() : DaemonFixture("wb-ports-test", kBase) {}

  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    auto started = wb::testing::SuiteInternet::Start("wb-ports-net");
    ASSERT_TRUE(started.ok()) << started.error().ToString();
  }
  static void TearDownTestSuite() { wb::testing::SuiteInternet::Stop(); }

  wb::testing::ProcResult W(std::vector<std::string> args) {
    args.insert(args.begin() + (args[0] == "sandbox" ? 2 : 1), {"--socket", sock_});
    return RunProcess(Cli(std::move(args)));
  }
  std::string Create(std::vector<std::string> extra) {
    std::vector<std::string> args = {"sandbox", "create", "--no-main"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = W(args);
    EXPECT_EQ(r.code, 0) << r.err << Log();
    return std::string(Trim(r.out));
  }
};

TEST_F(PortsTest, PublishedPortReachesTheServiceAndClosesWithIt) {
  StartDaemon({"--size", "1"});
  const std::string id = Create({"-p", "18080:8000", "-p", "127.0.0.1:18081:8001"});
  ASSERT_EQ(id.size(), 32u);
  auto ins = W({"sandbox", "inspect", id, "--json"});
  ASSERT_EQ(ins.code, 0) << ins.err;
  json ports = json::parse(ins.out)["network"]["ports"];
  EXPECT_EQ(ports, json::parse(R"([{"host_addr":"127.0.0.1","host_port":18080,"port":8000},
                                   {"host_addr":"127.0.0.1","host_port":18081,"port":8001}])"))
      << ins.out;

  // Nothing listens inside yet: the host's connection is reset, at once.
  EXPECT_EQ(Exchange(18080, "GET / HTTP/1.0\r\n\r\n"), "");
  // An HTTP server (busybox httpd daemonizes) and a TCP echo in the sandbox.
  // (Detached: kept processes, which outlive the exec that started them.)
  ASSERT_EQ(
      W({"exec", id, "--", "sh", "-c", "mkdir -p /tmp/www && echo published > /tmp/www/index.html"})
          .code,
      0);
  auto up = W({"exec", "-d", id, "--", "httpd", "-f", "-p", "8000", "-h", "/tmp/www"});
  ASSERT_EQ(up.code, 0) << up.err;
  up = W({"exec", "-d", id, "--", "nc", "-l", "-p", "8001", "-e", "cat"});
  ASSERT_EQ(up.code, 0) << up.err;
  std::string got;
  ASSERT_TRUE(Eventually(
      [&] {
        got = Exchange(18080, "GET /index.html HTTP/1.0\r\n\r\n");
        return got.find("published") != std::string::npos;
      },
      10000))
      << got << W({"exec", id, "--", "sh", "-c", "ps; netstat -ltn"}).out << Log();
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;

  // The echo: a connection kept open across the kill ends with it.
  UniqueFd held;
  ASSERT_TRUE(Eventually(
      [&] {
        held = ConnectTo(18081);
        if (!held || !WriteAll(held.get(), "ping\n").ok()) return false;
        char buf[16] = {};
        return ::read(held.get(), buf, sizeof buf) == 5 && std::string(buf) == "ping\n";
      },
      10000));

  // Two sandboxes cannot take the same host port; the error names it.
  auto twice = W({"sandbox", "create", "--no-main", "-p", "18080:9000"});
  EXPECT_NE(twice.code, 0);
  EXPECT_NE(twice.err.find("127.0.0.1:18080 is in use"), std::string::npos) << twice.err;
  // Bad syntax and a privileged port, named.
  auto bad = W({"sandbox", "create", "--no-main", "-p", "8080"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("-p(8080)"), std::string::npos) << bad.err;
  auto low = W({"sandbox", "create", "--no-main", "-p", "80:80"});
  EXPECT_NE(low.code, 0);
  EXPECT_NE(low.err.find("privileged"), std::string::npos) << low.err;
  EXPECT_NE(low.err.find("80:80"), std::string::npos) << low.err;

  EXPECT_GT(SocketsOnPort(18080), 0u);
  auto k = W({"sandbox", "kill", id});
  ASSERT_EQ(k.code, 0) << k.err;
  // Closed with the sandbox: refused, the held connection ended, no socket
  // of the daemon left on either port.
  EXPECT_FALSE(ConnectTo(18080));
  EXPECT_FALSE(ConnectTo(18081));
  char buf[16];
  EXPECT_LE(::read(held.get(), buf, sizeof buf), 0);
  held.reset();
  EXPECT_EQ(SocketsOnPort(18080), 0u);
  EXPECT_EQ(SocketsOnPort(18081), 0u);

  // The port is free again, for another sandbox (with egress networking
  // off: published ports need none).
  const std::string again = Create({"-p", "18080:8000"});
  ASSERT_EQ(again.size(), 32u);
  EXPECT_EQ(W({"sandbox", "kill", again}).code, 0);
}

// A daemon killed outright: its network helpers die with it (the sandbox
// keeps only lo), and the next daemon attaches the recorded network again
// and publishes the ports again; the policy is the recorded one.
TEST_F(PortsTest, TakenOverSandboxGetsItsNetworkAndPortsAgain) {
  if (!PathExists("/usr/bin/slirp4netns") || !PathExists("/usr/sbin/dnsmasq"))
    GTEST_SKIP() << "needs slirp4netns and dnsmasq (scripts/setup)";
  StartDaemon({"--size", "1"});
  const std::string id = Create({"--network", "egress", "--allow-out", "198.51.100.10/32", "-p",
                                 "18090:8000", "--timeout", "600"});
  ASSERT_EQ(id.size(), 32u) << Log();
  auto get = [&](const char* ip) {
    return W({"exec", id, "--", "sh", "-c",
              std::string("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc ") + ip + " 80"})
        .out;
  };
  EXPECT_NE(get("198.51.100.10").find("hello from 198.51.100.10"), std::string::npos) << Log();
  EXPECT_EQ(get("198.51.100.11").find("hello"), std::string::npos);
  ASSERT_EQ(
      W({"exec", id, "--", "sh", "-c", "mkdir -p /tmp/www && echo kept > /tmp/www/index.html"})
          .code,
      0);
  ASSERT_EQ(W({"exec", "-d", id, "--", "httpd", "-f", "-p", "8000", "-h", "/tmp/www"}).code, 0);
  auto served = [&] {
    return Exchange(18090, "GET /index.html HTTP/1.0\r\n\r\n").find("kept") != std::string::npos;
  };
  ASSERT_TRUE(Eventually(served, 10000)) << Log();
  ASSERT_EQ(wb::testing::ProcessesMentioning("slirp4netns").size(), 1u);
  const auto resolver = wb::testing::ProcessesMentioning("--listen-address=127.0.0.1");
  ASSERT_EQ(resolver.size(), 1u);

  ASSERT_TRUE(daemon_.Signal(SIGKILL).ok());
  ASSERT_TRUE(daemon_.Wait().ok());
  // slirp4netns went with it (parent-death signal, exit fd): the sandbox is
  // left with lo only; the port is closed. (dnsmasq, which drops to nobody
  // and so loses its parent-death signal, is the next daemon's to kill.)
  EXPECT_TRUE(
      Eventually([] { return wb::testing::ProcessesMentioning("slirp4netns").empty(); }, 5000));
  EXPECT_FALSE(ConnectTo(18090));

  StartDaemon({"--size", "1"});
  auto ins = W({"sandbox", "inspect", id, "--json"});
  ASSERT_EQ(ins.code, 0) << ins.err << Log();
  json net = json::parse(ins.out)["network"];
  EXPECT_EQ(net["mode"], "egress") << ins.out;
  EXPECT_EQ(net["allow_out"], json::parse(R"(["198.51.100.10/32"])")) << ins.out;
  EXPECT_EQ(net["ports"].size(), 1u) << ins.out;
  EXPECT_NE(get("198.51.100.10").find("hello from 198.51.100.10"), std::string::npos) << Log();
  EXPECT_EQ(get("198.51.100.11").find("hello"), std::string::npos);
  EXPECT_TRUE(Eventually(served, 10000)) << Log();
  // The dead daemon's resolver is gone, the new one's serves.
  auto gone = ReadFile("/proc/" + std::to_string(resolver[0]) + "/stat");
  EXPECT_TRUE(!gone.ok() || gone->find(") Z") != std::string::npos) << "the old dnsmasq runs";
  EXPECT_EQ(wb::testing::ProcessesMentioning("--listen-address=127.0.0.1").size(), 1u);

  // And it goes as any other: nothing of its network is left. The daemon
  // keeps one network made ahead for its policy (NsDriverOptions::
  // spare_network): its own resolver and chain, not the sandbox's.
  // (Counted among the daemon's children: dnsmasq serves each TCP
  // connection, the daemon's probe included, in a child of its own.)
  const pid_t daemon = daemon_.pid();
  const auto own_resolver = wb::testing::ChildrenMentioning(daemon, "--listen-address=127.0.0.1");
  ASSERT_EQ(W({"sandbox", "kill", id}).code, 0);
  EXPECT_FALSE(ConnectTo(18090));
  EXPECT_TRUE(wb::testing::ProcessesMentioning("slirp4netns").empty());
  const auto resolvers = wb::testing::ChildrenMentioning(daemon, "--listen-address=127.0.0.1");
  EXPECT_EQ(resolvers.size(), 1u);
  for (pid_t p : own_resolver) EXPECT_EQ(std::count(resolvers.begin(), resolvers.end(), p), 0);
  auto table = RunProcess({"/usr/sbin/nft", "list", "table", "inet", "warmbox"});
  EXPECT_EQ(table.out.find("out_" + id), std::string::npos) << table.out;
  size_t chains = 0;
  for (size_t at = table.out.find("chain out_"); at != std::string::npos;
       at = table.out.find("chain out_", at + 1)) {
    ++chains;
  }
  EXPECT_EQ(chains, 1u) << table.out;
  // The daemon's table, and the network made ahead, go with it.
  StopDaemon();
  // (A child serving a probe's connection ends on its own, just after.)
  EXPECT_TRUE(Eventually(
      [] { return wb::testing::ProcessesMentioning("--listen-address=127.0.0.1").empty(); }, 5000));
  auto tables = RunProcess({"/usr/sbin/nft", "list", "tables"});
  EXPECT_EQ(tables.out.find("warmbox"), std::string::npos) << tables.out;
}

}  // namespace
}  // namespace wb
