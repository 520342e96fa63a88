#include "tests/test_internet.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"

namespace wb::testing {
namespace {

// The servers of I: HTTP on port 80 of every address, answering with the
// address that was reached. Started with "go" on stdin once I's addresses
// exist; says "ready" once it listens.
const char* kServer = R"PY(
import socket, sys, threading
sys.stdin.readline()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(64)
print("ready", flush=True)
def serve(c):
    try:
        c.settimeout(5); c.recv(4096)
        body = "hello from %s\n" % c.getsockname()[0]
        c.sendall(("HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)PY";

void RunOk(const std::vector<std::string>& argv) {
  auto r = RunProcess(argv);
  std::string cmd;
  for (const auto& a : argv) cmd += a + " ";
  ASSERT_EQ(r.code, 0) << cmd << ": " << r.err;
}

}  // namespace

void StartInternet(Internet& net) {
  // D: this process's own network namespace from here on (this thread is
  // the only one, and everything is spawned from it).
  ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << strerror(errno);
  net.dir = MakeTempDir("wb-net-test");
  ASSERT_OK(WriteFileAtomic(net.dir + "/server.py", kServer));
  auto pin = MakePipe();
  auto pout = MakePipe();
  ASSERT_OK(pin);
  ASSERT_OK(pout);
  Pipe in = std::move(*pin), out = std::move(*pout);
  SpawnOptions so;
  so.path = "/usr/bin/python3";
  so.argv = {"python3", net.dir + "/server.py"};
  so.clone_flags = CLONE_NEWNET;  // I
  so.fds = {{in.read.get(), 0}, {out.write.get(), 1}};
  so.pdeath_signal = SIGKILL;
  auto c = ChildProcess::Spawn(so);
  ASSERT_OK(c);
  net.server = std::move(*c);
  in.read.reset();
  out.write.reset();
  const std::string pid = std::to_string(net.server.pid());
  const std::vector<std::string> in_i = {"/usr/bin/nsenter", "-t", pid, "-n", "/sbin/ip"};
  auto ip_i = [&](std::vector<std::string> a) {
    std::vector<std::string> argv = in_i;
    argv.insert(argv.end(), a.begin(), a.end());
    RunOk(argv);
  };
  RunOk({"/sbin/ip", "link", "set", "lo", "up"});
  RunOk({"/sbin/ip", "link", "add", "wbn0", "type", "veth", "peer", "name", "wbn1", "netns", pid});
  RunOk({"/sbin/ip", "addr", "add", "192.0.2.2/24", "dev", "wbn0"});
  RunOk({"/sbin/ip", "addr", "add", "192.0.2.3/32", "dev", "wbn0"});
  RunOk({"/sbin/ip", "link", "set", "wbn0", "up"});
  RunOk({"/sbin/ip", "route", "add", "default", "via", "192.0.2.1"});
  ip_i({"link", "set", "lo", "up"});
  ip_i({"addr", "add", "192.0.2.1/24", "dev", "wbn1"});
  ip_i({"link", "set", "wbn1", "up"});
  for (const char* a :
       {"198.51.100.10", "198.51.100.11", "198.51.100.53", "203.0.113.10", "203.0.113.66",
        "169.254.169.254", "10.1.2.3", "172.16.5.5", "192.168.7.7", "100.64.1.1"}) {
    ip_i({"addr", "add", std::string(a) + "/32", "dev", "lo"});
  }
  ASSERT_OK(WriteAll(in.write.get(), "go\n"));
  char buf[16] = {};
  ASSERT_GT(::read(out.read.get(), buf, sizeof buf), 0);
  ASSERT_EQ(std::string(buf, 6), "ready\n");
  net.server_in = std::move(in.write);
  // The internet's DNS: test names only.
  SpawnOptions d;
  d.path = "/usr/bin/nsenter";
  d.argv = {"nsenter",
            "-t",
            pid,
            "-n",
            "/usr/sbin/dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=198.51.100.53",
            "--address=/allowed.test/198.51.100.10",
            "--address=/neighbour.test/198.51.100.11",
            "--address=/denied.test/203.0.113.10",
            "--address=/www.wild.test/203.0.113.10",
            "--address=/private.test/10.1.2.3",
            "--pid-file"};
  d.pdeath_signal = SIGKILL;
  auto dc = ChildProcess::Spawn(d);
  ASSERT_OK(dc);
  net.dns = std::move(*dc);
  ASSERT_TRUE(Eventually([] { return Connects("198.51.100.53", 53); }, 10000));
  ASSERT_TRUE(Eventually([] { return Connects("198.51.100.10", 80); }, 10000));
}

void StopInternet(Internet& net) {
  net.dns.KillAndReap();
  net.server.KillAndReap();
  net.server_in.reset();
  if (!net.dir.empty()) (void)RemoveTree(net.dir);
  net.dir.clear();
}

bool Connects(const char* ip, int port) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip, &a.sin_addr);
  return ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

ExecOutcome InternetSh(Sandbox& sb, const std::string& script) {
  proto::ExecRequest req;
  req.argv = {"sh", "-c", script};
  req.timeout_ms = 20000;
  ExecIo io;
  auto r = sb.Exec(req, io);
  EXPECT_OK(r);
  return r.ok() ? std::move(*r) : ExecOutcome{};
}

std::string InternetGet(Sandbox& sb, const std::string& url) {
  std::string hp = url.substr(7, url.size() - 8), host = hp, port = "80";
  if (auto c = hp.find(':'); c != std::string::npos) {
    host = hp.substr(0, c);
    port = hp.substr(c + 1);
  }
  auto o = InternetSh(sb, "h=" + host +
                              "; case $h in *[a-z]*) h=$(nslookup $h 2>/dev/null | sed -n "
                              "'s/^Address:[ \t]*\\([0-9.]*\\)$/\\1/p' | tail -1);; esac; "
                              "[ -n \"$h\" ] || exit 1; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
                              "timeout 4 nc $h " +
                              port + " | grep -m1 '^hello'");
  fprintf(stderr, "GET %s: %s%s\n", url.c_str(), o.stdout_data.c_str(), o.stderr_data.c_str());
  return o.stdout_data;
}

bool InternetResolves(Sandbox& sb, const std::string& name) {
  // An address line of the answer (the server's own line ends in :53).
  auto o = InternetSh(
      sb, "nslookup " + name + " 2>/dev/null | sed -n 's/^Address:[ \t]*\\([0-9.]*\\)$/\\1/p'");
  return !o.stdout_data.empty();
}

}  // namespace wb::testing
