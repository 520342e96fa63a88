#include "tests/net_internet.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "tests/test_internet.h"
#include "tests/test_util.h"

namespace wb::testing {

namespace {

// The servers of I. Started with "go" on stdin once I's addresses exist;
// says "ready" once both listen.
const char* kServer = R"PY(
import socket, sys, threading
sys.stdin.readline()
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(128)
    return s
hello, bulk = listen(80), listen(8080)
print("ready", flush=True)
def serve(c):
    try:
        c.settimeout(5); c.recv(4096)
        body = "hello from %s\n" % c.getsockname()[0]
        c.sendall(("HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    finally:
        c.close()
chunk = memoryview(b"x" * (1 << 20))
def serve_bulk(c):
    try:
        c.settimeout(30)
        head = c.recv(4096).decode("latin-1").split(" ")
        n = int(head[1].rsplit("/", 1)[1]) if len(head) > 1 else 0
        c.sendall(("HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % n).encode())
        while n > 0:
            k = min(n, len(chunk)); c.sendall(chunk[:k]); n -= k
    except Exception:
        pass
    finally:
        c.close()
def loop(s, fn):
    while True:
        c, _ = s.accept()
        threading.Thread(target=fn, args=(c,), daemon=True).start()
threading.Thread(target=loop, args=(bulk, serve_bulk), daemon=True).start()
loop(hello, serve)
)PY";

Result<void> RunOk(const std::vector<std::string>& argv) {
  auto r = RunProcess(argv);
  if (r.code == 0) return Ok();
  std::string cmd;
  for (const auto& a : argv) cmd += a + " ";
  return Fail(argv[0], cmd, r.err);
}

}  // namespace

Result<std::unique_ptr<TestInternet>> TestInternet::Start(const std::string& dir) {
  // D: this process's own network namespace from here on (everything is
  // spawned from this thread).
  if (::unshare(CLONE_NEWNET) != 0) return Errno("unshare", "CLONE_NEWNET");
  auto net = std::unique_ptr<TestInternet>(new TestInternet());
  WB_RETURN_IF_ERROR(WriteFileAtomic(dir + "/server.py", kServer));
  Pipe in = WB_TRY(MakePipe());
  Pipe out = WB_TRY(MakePipe());
  SpawnOptions so;
  so.path = "/usr/bin/python3";
  so.argv = {"python3", dir + "/server.py"};
  so.clone_flags = CLONE_NEWNET;  // I
  so.fds = {{in.read.get(), 0}, {out.write.get(), 1}};
  so.pdeath_signal = SIGKILL;
  net->server_ = WB_TRY(ChildProcess::Spawn(so));
  in.read.reset();
  out.write.reset();
  const std::string pid = std::to_string(net->server_.pid());
  auto ip_i = [&](std::vector<std::string> a) {
    std::vector<std::string> argv = {"/usr/bin/nsenter", "-t", pid, "-n", "/sbin/ip"};
    argv.insert(argv.end(), a.begin(), a.end());
    return RunOk(argv);
  };
  WB_RETURN_IF_ERROR(RunOk({"/sbin/ip", "link", "set", "lo", "up"}));
  WB_RETURN_IF_ERROR(RunOk(
      {"/sbin/ip", "link", "add", "wbn0", "type", "veth", "peer", "name", "wbn1", "netns", pid}));
  WB_RETURN_IF_ERROR(RunOk({"/sbin/ip", "addr", "add", "192.0.2.2/24", "dev", "wbn0"}));
  WB_RETURN_IF_ERROR(RunOk({"/sbin/ip", "addr", "add", "192.0.2.3/32", "dev", "wbn0"}));
  WB_RETURN_IF_ERROR(RunOk({"/sbin/ip", "link", "set", "wbn0", "up"}));
  WB_RETURN_IF_ERROR(RunOk({"/sbin/ip", "route", "add", "default", "via", "192.0.2.1"}));
  WB_RETURN_IF_ERROR(ip_i({"link", "set", "lo", "up"}));
  WB_RETURN_IF_ERROR(ip_i({"addr", "add", "192.0.2.1/24", "dev", "wbn1"}));
  WB_RETURN_IF_ERROR(ip_i({"link", "set", "wbn1", "up"}));
  for (const char* a :
       {"198.51.100.10", "198.51.100.11", "198.51.100.53", "203.0.113.10", "203.0.113.66",
        "169.254.169.254", "10.1.2.3", "172.16.5.5", "192.168.7.7", "100.64.1.1"}) {
    WB_RETURN_IF_ERROR(ip_i({"addr", "add", std::string(a) + "/32", "dev", "lo"}));
  }
  WB_RETURN_IF_ERROR(WriteAll(in.write.get(), "go\n"));
  char buf[16] = {};
  if (::read(out.read.get(), buf, sizeof buf) <= 0 || std::string(buf, 6) != "ready\n") {
    return Fail("test internet", dir + "/server.py", "the servers did not start");
  }
  net->server_in_ = std::move(in.write);
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
  net->dns_ = WB_TRY(ChildProcess::Spawn(d));
  if (!Eventually([] { return Connects("198.51.100.53", 53); }, 10000) ||
      !Eventually([] { return Connects("198.51.100.10", 80); }, 10000)) {
    return Fail("test internet", "198.51.100.53", "DNS or HTTP not reachable after 10 s");
  }
  return net;
}

TestInternet::~TestInternet() {
  dns_.KillAndReap();
  server_.KillAndReap();
}

std::string* SuiteInternet::dir_ = nullptr;
TestInternet* SuiteInternet::net_ = nullptr;

Result<void> SuiteInternet::Start(const std::string& prefix) {
  dir_ = new std::string(MakeTempDir(prefix));
  auto net = TestInternet::Start(*dir_);
  if (!net.ok()) return net.error();
  net_ = net->release();
  return Ok();
}

void SuiteInternet::Stop() {
  delete net_;
  net_ = nullptr;
  if (dir_) (void)RemoveTree(*dir_);
  delete dir_;
  dir_ = nullptr;
}

}  // namespace wb::testing
