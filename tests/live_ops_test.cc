// End-to-end tests of a live sandbox's processes, terminal and files through
// the CLI (warmbox exec, attach, ps, signal, cp) against a real daemon: the
// socket ops of proto/live_ops.h relayed to the agent.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "base/child.h"
#include "base/fs.h"
#include "base/strings.h"
#include "tests/daemon_fixture.h"
#include "tests/port_proxy_harness.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"
#include "tests/vm_fixture.h"

namespace wb {
namespace {

using wb::testing::Eventually;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kLiveOpsTest);

class LiveOpsTest : public wb::testing::DaemonFixture {
 public:
  LiveOpsTest() : DaemonFixture("wb-live-ops-test", kBase) {}

  void SetUp() override {
    DaemonFixture::SetUp();
    if (IsSkipped()) return;
    StartDaemon({"--size", "1"});
    auto r = RunProcess(Cli({"sandbox", "create", "--socket", sock_, "--no-main"}));
    ASSERT_EQ(r.code, 0) << r.err << Log();
    id_ = std::string(Trim(r.out));
    ASSERT_EQ(id_.size(), 32u) << r.out;
  }

  wb::testing::ProcResult W(std::vector<std::string> args, const std::string* in = nullptr) {
    // After the verb ("sandbox inspect" is a verb of two words).
    args.insert(args.begin() + (args[0] == "sandbox" ? 2 : 1), {"--socket", sock_});
    return RunProcess(Cli(std::move(args)), {}, in);
  }

  nlohmann::json Ps() {
    auto r = W({"ps", "--json", id_});
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  std::optional<nlohmann::json> Process(long long pid) {
    for (const auto& p : Ps()) {
      if (p.value("pid", 0LL) == pid) return p;
    }
    return std::nullopt;
  }

  std::string id_;
};

TEST_F(LiveOpsTest, ForegroundExecStreamsAndPassesTheExitCodeThrough) {
  auto r = W({"exec", id_, "--", "sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  r = W({"exec", id_, "--", "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(r.code, 137);
  r = W({"exec", "-e", "GREETING=hi", "-w", "/tmp", id_, "--", "sh", "-c", "echo $GREETING $PWD"});
  EXPECT_EQ(r.out, "hi /tmp\n");
  // Files and processes persist between commands: it is one sandbox.
  ASSERT_EQ(W({"exec", id_, "--", "sh", "-c", "echo kept > /tmp/state"}).code, 0);
  EXPECT_EQ(W({"exec", id_, "--", "cat", "/tmp/state"}).out, "kept\n");
  std::string in = "through stdin\n";
  r = W({"exec", "-i", id_, "--", "cat"}, &in);
  EXPECT_EQ(r.out, in);
}

TEST_F(LiveOpsTest, BackgroundProcessIsListedSignalledAndItsStatusKept) {
  auto r = W({"exec", "-d", id_, "--", "sleep", "1000"});
  ASSERT_EQ(r.code, 0) << r.err;
  long long pid = std::stoll(r.out);
  auto p = Process(pid);
  ASSERT_TRUE(p) << Ps().dump();
  EXPECT_TRUE(p->value("running", false));
  EXPECT_EQ((*p)["argv"], (nlohmann::json{"sleep", "1000"}));
  r = W({"signal", id_, std::to_string(pid), "TERM"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] {
    auto q = Process(pid);
    return q && !q->value("running", true);
  }));
  // An exited process: attach gives its retained status at once.
  r = W({"attach", id_, std::to_string(pid)});
  EXPECT_EQ(r.code, 128 + SIGTERM);
}

TEST_F(LiveOpsTest, BadInputGivesOneClearErrorAndTheSandboxStaysUsable) {
  auto r = W({"exec", "0123456789abcdef0123456789abcdef", "--", "true"});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("0123456789abcdef0123456789abcdef"), std::string::npos) << r.err;
  r = W({"signal", id_, "999999", "TERM"});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("999999"), std::string::npos) << r.err;
  r = W({"signal", id_, "1", "NOSUCHSIG"});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("NOSUCHSIG"), std::string::npos) << r.err;
  r = W({"cp", id_ + ":/no/such/file", state_ + "/x"});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("/no/such/file"), std::string::npos) << r.err;
  EXPECT_EQ(W({"exec", id_, "--", "echo", "fine"}).out, "fine\n");
}

// A background process survives its client's SIGKILL and is re-attached:
// later output, then its exit status.
TEST_F(LiveOpsTest, ProcessSurvivesItsClientAndIsReattached) {
  SpawnOptions o;
  auto argv = Cli({"exec", "--socket", sock_, id_, "--", "sh", "-c",
                   "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"});
  o.path = argv[0];
  o.argv = argv;
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe.ok());
  o.fds = {{pipe->write.get(), 1}};
  auto client = ChildProcess::Spawn(o);
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  pipe->write.reset();
  char buf[64];
  ASSERT_GT(::read(pipe->read.get(), buf, sizeof buf), 0);  // it runs
  ASSERT_EQ(::kill(client->pid(), SIGKILL), 0);
  ASSERT_TRUE(client->Wait().ok());
  long long pid = 0;
  for (const auto& p : Ps()) {
    if (p.value("running", false) && p["argv"].size() == 3) pid = p.value("pid", 0LL);
  }
  ASSERT_NE(pid, 0) << Ps().dump();
  // Re-attach in the background, read two increasing counters, then kill it.
  SpawnOptions a;
  auto aargv = Cli({"attach", "--socket", sock_, id_, std::to_string(pid)});
  a.path = aargv[0];
  a.argv = aargv;
  auto apipe = MakePipe();
  ASSERT_TRUE(apipe.ok());
  a.fds = {{apipe->write.get(), 1}};
  auto attach = ChildProcess::Spawn(a);
  ASSERT_TRUE(attach.ok());
  apipe->write.reset();
  std::string seen;
  ASSERT_TRUE(Eventually(
      [&] {
        pollfd p{apipe->read.get(), POLLIN, 0};
        if (::poll(&p, 1, 100) == 1) {
          ssize_t n = ::read(apipe->read.get(), buf, sizeof buf);
          if (n > 0) seen.append(buf, static_cast<size_t>(n));
        }
        return std::count(seen.begin(), seen.end(), '\n') >= 3;
      },
      10000))
      << seen;
  auto lines = Split(seen, '\n');
  EXPECT_LT(std::stoll(lines[0]), std::stoll(lines[1]));
  ASSERT_EQ(W({"signal", id_, std::to_string(pid), "KILL"}).code, 0);
  auto st = attach->Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->ShellCode(), 137);
}

TEST_F(LiveOpsTest, FiftyConcurrentExecsInOneSandbox) {
  std::vector<std::thread> ts;
  std::vector<wb::testing::ProcResult> rs(50);
  for (int i = 0; i < 50; ++i) {
    ts.emplace_back([&, i] {
      rs[i] = W({"exec", id_, "--", "sh", "-c", "echo $0; exit $(( $0 % 7 ))", std::to_string(i)});
    });
  }
  for (auto& t : ts) t.join();
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(rs[i].out, std::to_string(i) + "\n") << rs[i].err;
    EXPECT_EQ(rs[i].code, i % 7);
  }
}

// Creates (or truncates) path with data.
bool Put(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(out);
}

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

TEST_F(LiveOpsTest, HundredMebibyteFileRoundTripIsByteExact) {
  const std::string data = RandomBytes(100u << 20);
  ASSERT_TRUE(Put(state_ + "/big", data));
  auto r = W({"cp", state_ + "/big", id_ + ":/tmp/big"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(W({"exec", id_, "--", "stat", "-c", "%s", "/tmp/big"}).out,
            std::to_string(data.size()) + "\n");
  r = W({"cp", id_ + ":/tmp/big", state_ + "/back"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto back = ReadFile(state_ + "/back");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == data) << "round trip differs (" << back->size() << " bytes back)";
}

TEST_F(LiveOpsTest, DirectoryTreesKeepTheirModes) {
  const std::string src = state_ + "/tree";
  ASSERT_TRUE(MkdirAll(src + "/a/b").ok());
  ASSERT_TRUE(Put(src + "/a/b/run.sh", "#!/bin/sh\necho ran\n"));
  ASSERT_EQ(::chmod((src + "/a/b/run.sh").c_str(), 0750), 0);
  ASSERT_TRUE(Put(src + "/top.txt", "top\n"));
  ASSERT_EQ(::chmod((src + "/top.txt").c_str(), 0604), 0);
  ASSERT_EQ(W({"exec", id_, "--", "mkdir", "/work"}).code, 0);
  auto r = W({"cp", src, id_ + ":/work"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(W({"exec", id_, "--", "/work/tree/a/b/run.sh"}).out, "ran\n");
  EXPECT_EQ(W({"exec", id_, "--", "stat", "-c", "%a", "/work/tree/top.txt"}).out, "604\n");
  r = W({"cp", id_ + ":/work/tree", state_ + "/out"});
  ASSERT_EQ(r.code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(::stat((state_ + "/out/a/b/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(*ReadFile(state_ + "/out/top.txt"), "top\n");
}

// Paths are resolved by the agent inside the sandbox's root: no symlink,
// `..` or /proc/self/root reaches a host file, for reading or writing.
TEST_F(LiveOpsTest, HostilePathsStayInsideTheSandbox) {
  const std::string secret = state_ + "/host-secret";
  ASSERT_TRUE(Put(secret, "host\n"));
  ASSERT_EQ(W({"exec", id_, "--", "ln", "-s", "/", "/tmp/root"}).code, 0);
  ASSERT_EQ(W({"exec", id_, "--", "ln", "-s", "/etc", "/tmp/etc"}).code, 0);
  for (const std::string& p : {secret, "/tmp/root" + secret, "/../../.." + secret,
                               "/proc/self/root" + secret, "/proc/1/root" + secret}) {
    auto r = W({"cp", id_ + ":" + p, state_ + "/got"});
    EXPECT_EQ(r.code, 125) << p;
    EXPECT_FALSE(ReadFile(state_ + "/got").ok()) << p;
  }
  // A write through a symlink lands in the sandbox's /etc, not the host's.
  const std::string name = "wb-live-ops-" + std::to_string(::getpid());
  ASSERT_TRUE(Put(state_ + "/f", "inside\n"));
  auto r = W({"cp", state_ + "/f", id_ + ":/tmp/etc/" + name});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(W({"exec", id_, "--", "cat", "/etc/" + name}).out, "inside\n");
  EXPECT_NE(::access(("/etc/" + name).c_str(), F_OK), 0);
}

// exec -it through a pseudo-terminal driven by the test: the size is seen,
// a resize is seen, Ctrl-C interrupts, and exit passes the code through.
TEST_F(LiveOpsTest, TerminalSizeResizeAndCtrlC) {
  auto argv = Cli({"exec", "--socket", sock_, "-it", id_, "--", "sh", "-i"});
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  winsize ws{};
  ws.ws_row = 33;
  ws.ws_col = 101;
  int master = -1;
  // forkpty: the test's own child (not warmbox's spawn path) with the pty's
  // slave as its controlling terminal, as a user's shell would have.
  pid_t child = ::forkpty(&master, nullptr, nullptr, &ws);
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  UniqueFd m(master);
  ASSERT_EQ(::fcntl(m.get(), F_SETFL, O_NONBLOCK), 0);
  std::string screen;
  auto read_until = [&](const std::string& want) {
    return Eventually(
        [&] {
          pollfd p{m.get(), POLLIN, 0};
          if (::poll(&p, 1, 50) == 1) {
            char b[4096];
            ssize_t n = ::read(m.get(), b, sizeof b);
            if (n > 0) screen.append(b, static_cast<size_t>(n));
          }
          return screen.find(want) != std::string::npos;
        },
        15000);
  };
  auto type = [&](const std::string& s) {
    ASSERT_EQ(::write(m.get(), s.data(), s.size()), (ssize_t)s.size());
  };
  type("stty size; echo size-done\r");
  ASSERT_TRUE(read_until("33 101")) << screen;
  ws.ws_row = 40;
  ws.ws_col = 120;
  ASSERT_EQ(::ioctl(m.get(), TIOCSWINSZ, &ws), 0);  // SIGWINCH to the CLI
  // The resize travels asynchronously: ask until the sandbox's terminal has it.
  ASSERT_TRUE(Eventually(
      [&] {
        type("stty size\r");
        return read_until("40 120");
      },
      15000))
      << screen;
  type("sleep 1000\r");
  // Ctrl-C once sleep runs (before, the shell itself would take it).
  ASSERT_TRUE(Eventually(
      [&] {
        return W({"exec", id_, "--", "sh", "-c", "ps -o args | grep -c '^sleep 1000'"}).out ==
               "1\n";
      },
      15000));
  type("\x03");  // SIGINT to the sandbox terminal's foreground group
  type("echo after-$((40+2))\r");
  ASSERT_TRUE(read_until("after-42")) << screen;
  type("exit 7\r");
  int status = 0;
  ASSERT_TRUE(Eventually([&] {
    char b[4096];
    (void)::read(m.get(), b, sizeof b);
    return ::waitpid(child, &status, WNOHANG) == child;
  }));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

// A sandbox that dies on its own (here its agent is SIGKILLed from the host,
// as the OOM killer would) is released and shown as dead with the reason;
// operations on it fail with failed_precondition, and kill removes it.
TEST_F(LiveOpsTest, SandboxThatDiesOnItsOwnShowsAsDeadAndIsReleased) {
  pid_t host_pid = 0;
  std::string dir;
  for (const auto& name : wb::testing::Entries(state_ + "/sandboxes")) {
    auto rec = ReadFile(state_ + "/sandboxes/" + name + "/live.json");
    if (!rec.ok()) continue;
    auto j = nlohmann::json::parse(*rec, nullptr, false);
    if (j.value("id", "") == id_) {
      host_pid = j.value("host_pid", 0);
      dir = state_ + "/sandboxes/" + name;
    }
  }
  ASSERT_GT(host_pid, 1) << "no live.json names " << id_;
  ASSERT_EQ(::kill(host_pid, SIGKILL), 0);
  nlohmann::json info;
  ASSERT_TRUE(Eventually(
      [&] {
        auto r = W({"sandbox", "inspect", "--json", id_});
        info = nlohmann::json::parse(r.out, nullptr, false);
        return info.is_object() && info.value("state", "") == "dead";
      },
      10000))
      << info.dump();
  EXPECT_NE(info.value("dead_reason", ""), "");
  EXPECT_TRUE(Eventually([&] { return ::access(dir.c_str(), F_OK) != 0; }));  // released
  auto r = W({"exec", id_, "--", "true"});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("dead"), std::string::npos) << r.err;
  ASSERT_EQ(W({"sandbox", "kill", id_}).code, 0);
  EXPECT_EQ(W({"sandbox", "inspect", id_}).code, 125);
}

// A symlink swapped in while files are written (a loop in the sandbox turns
// /tmp/sw into a symlink to / and back): every write lands in the sandbox.
TEST_F(LiveOpsTest, SymlinkSwappedInDuringWritesStaysInside) {
  auto r = W({"exec", "-d", id_, "--", "sh", "-c",
              "while :; do rm -rf /tmp/sw; mkdir /tmp/sw; rm -rf /tmp/sw; ln -s / /tmp/sw; done"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string name = "wb-race-" + std::to_string(::getpid());
  ASSERT_TRUE(Put(state_ + "/f", "raced\n"));
  int landed = 0;
  for (int i = 0; i < 30; ++i) {
    // Either it fails (the dir vanished), or it lands in /tmp/sw or in the
    // sandbox's own / through the symlink: never on the host.
    if (W({"cp", state_ + "/f", id_ + ":/tmp/sw/" + name}).code == 0) ++landed;
  }
  ASSERT_EQ(W({"signal", id_, r.out.substr(0, r.out.size() - 1), "KILL"}).code, 0);
  EXPECT_NE(::access(("/" + name).c_str(), F_OK), 0) << "a write reached the host's /";
  EXPECT_NE(::access(("/tmp/" + name).c_str(), F_OK), 0);
  if (landed) {
    auto found =
        W({"exec", id_, "--", "sh", "-c", "ls /" + name + " /tmp/sw/" + name + " 2>/dev/null"});
    EXPECT_NE(found.out, "") << landed << " writes succeeded but none is in the sandbox";
  }
}

// One request through the port proxy; the whole answer (status 0 when
// the exchange failed).
struct ProxyAnswer {
  unsigned status = 0;
  std::string body;
  std::string connection;
};
ProxyAnswer ProxyGet(uint16_t proxy_port, uint16_t port, const std::string& path) {
  namespace asio = boost::asio;
  namespace http = boost::beast::http;
  ProxyAnswer a;
  asio::io_context io;
  boost::beast::tcp_stream s(io);
  boost::system::error_code ec;
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), proxy_port), ec);
  if (ec) return a;
  s.expires_after(std::chrono::seconds(20));
  http::request<http::empty_body> req{http::verb::get, path, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set("X-Port", std::to_string(port));
  http::write(s, req, ec);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  if (!ec) http::read(s, buf, res, ec);
  if (ec) return a;
  a.status = res.result_int();
  a.body = res.body();
  a.connection = std::string(res[http::field::connection]);
  return a;
}

// busybox httpd inside sandbox id, on its own 127.0.0.1: no network device
// leads there from the host; the agent's T does. sock: the sandbox's agent
// socket (an ns sandbox's agent.sock, a vm sandbox's live.sock).
void ExpectProxyReachesHttpd(LiveOpsTest& t, const std::string& state, const std::string& id,
                             const std::string& sock_name) {
  auto bg = t.W({"exec", "-d", id, "--", "sh", "-c",
                 "mkdir -p /tmp/www && printf 'hello from the sandbox' > /tmp/www/index.html && "
                 "exec httpd -f -p 127.0.0.1:8000 -h /tmp/www"});
  ASSERT_EQ(bg.code, 0) << bg.err;
  std::string dir;
  for (const auto& n : wb::testing::Entries(state + "/sandboxes")) {
    auto text = ReadFile(state + "/sandboxes/" + n + "/live.json");
    if (text.ok() && text->find(id) != std::string::npos) dir = state + "/sandboxes/" + n;
  }
  ASSERT_FALSE(dir.empty()) << "no sandbox dir records " << id;
  wb::testing::SocketLive live(id, dir + "/" + sock_name);
  wb::testing::ProxyServer proxy(live, id);
  // httpd was started in the background: 502 until it listens.
  ProxyAnswer a;
  ASSERT_TRUE(Eventually(
      [&] {
        a = ProxyGet(proxy.port(), 8000, "/index.html");
        return a.status == 200;
      },
      10000))
      << a.status << " " << a.body;
  EXPECT_EQ(a.body, "hello from the sandbox");
  // busybox httpd closes after its answer (Content-Length): the client's
  // connection is kept, the tunnel is not.
  EXPECT_EQ(a.connection, "keep-alive");
  EXPECT_EQ(ProxyGet(proxy.port(), 8000, "/missing").status, 404u);
  auto none = ProxyGet(proxy.port(), 8001, "/");
  EXPECT_EQ(none.status, 502u);
  EXPECT_NE(none.body.find("no service running on port 8001"), std::string::npos) << none.body;
  EXPECT_TRUE(Eventually([&] { return proxy.idle() == 0; }, 10000));
}

TEST_F(LiveOpsTest, PortProxyReachesAServiceOnTheSandboxsLoopback) {
  ExpectProxyReachesHttpd(*this, state_, id_, "agent.sock");
}

TEST_F(LiveOpsTest, PortProxyReachesAServiceInAVmSandbox) {
  // The same through a VM's channels (docs/protocol.md, "Channels"), on the
  // same daemon (it serves both drivers).
  if (auto why = wb::testing::VmProbe(); !why.empty()) GTEST_SKIP() << why;
  auto r = RunProcess(Cli({"sandbox", "create", "--socket", sock_, "--driver", "vm", "--no-main"}));
  ASSERT_EQ(r.code, 0) << r.err << Log();
  const std::string vm_id(Trim(r.out));
  ASSERT_EQ(vm_id.size(), 32u) << r.out;
  ExpectProxyReachesHttpd(*this, state_, vm_id, "live.sock");
}

}  // namespace
}  // namespace wb
