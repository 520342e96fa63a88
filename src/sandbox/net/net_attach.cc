#include "sandbox/net/net_attach.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <set>

#include "base/fd.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "sandbox/agent_client.h"

namespace wb {

namespace {

// The process's sandboxes with rules in each table: the table goes with the
// last one, so a daemon leaves no table behind.
std::mutex g_tables_mu;
std::map<std::string, int>& TableUsers() {
  static std::map<std::string, int> m;
  return m;
}
// The tables this process has made once (a dead daemon's is removed first).
std::set<std::string>& TablesChecked() {
  static std::set<std::string> s;
  return s;
}
// The tables that exist now (made by this process, not released), and the
// helper group ranges each refuses unless mapped.
std::set<std::string>& TablesMade() {
  static std::set<std::string> s;
  return s;
}
std::map<std::string, std::set<std::pair<uint32_t, uint32_t>>>& TableRanges() {
  static std::map<std::string, std::set<std::pair<uint32_t, uint32_t>>> m;
  return m;
}

void SleepMs(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  ::nanosleep(&ts, nullptr);
}

// A port free for both TCP and UDP on 127.0.0.1, for the sandbox's dnsmasq.
Result<uint16_t> FreeLoopbackPort() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    UniqueFd t(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!t) return Errno("socket", "tcp");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(t.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      return Errno("bind", "127.0.0.1:0");
    }
    socklen_t len = sizeof a;
    if (::getsockname(t.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return Errno("getsockname", "127.0.0.1");
    }
    UniqueFd u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!u) return Errno("socket", "udp");
    if (::bind(u.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return ntohs(a.sin_port);
  }
  return Fail(ErrorCode::kResourceExhausted, "free port", "127.0.0.1",
              "no port free for both TCP and UDP");
}

bool TcpListening(uint16_t port) {
  UniqueFd t(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!t) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return ::connect(t.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// Writes etc/resolv.conf inside the sandbox's root. The path is resolved
// with RESOLVE_IN_ROOT from the agent's root: a symlink in the image (to
// /etc/shadow, say) is followed inside that root, never the host's. A
// symlink at etc/resolv.conf itself is replaced, not followed.
Result<void> WriteResolvConf(pid_t pid, uint32_t owner, const std::string& text) {
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  UniqueFd rootfd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!rootfd) return Errno("open", root);
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int etc = static_cast<int>(::syscall(SYS_openat2, rootfd.get(), "etc", &how, sizeof how));
  if (etc < 0) {
    if (errno != ENOENT) return Errno("openat2", root + "/etc");
    if (::mkdirat(rootfd.get(), "etc", 0755) != 0 && errno != EEXIST) {
      return Errno("mkdirat", root + "/etc");
    }
    etc = static_cast<int>(::syscall(SYS_openat2, rootfd.get(), "etc", &how, sizeof how));
    if (etc < 0) return Errno("openat2", root + "/etc");
  }
  UniqueFd etcfd(etc);
  // As the sandbox's root (this thread's fs ids only: the raw syscalls are
  // per thread): the sandbox's tmpfs cannot store host root's id
  // (EOVERFLOW), and the file is then the sandbox's own.
  const uint32_t old_uid = static_cast<uint32_t>(::syscall(SYS_setfsuid, -1));
  const uint32_t old_gid = static_cast<uint32_t>(::syscall(SYS_setfsgid, -1));
  ::syscall(SYS_setfsgid, owner);
  ::syscall(SYS_setfsuid, owner);
  struct Restore {
    uint32_t u, g;
    ~Restore() {
      ::syscall(SYS_setfsuid, u);
      ::syscall(SYS_setfsgid, g);
    }
  } restore{old_uid, old_gid};
  // A fresh file: whatever was there (a file, a symlink) is replaced.
  const std::string tmp = ".resolv.conf.warmbox";
  (void)::unlinkat(etcfd.get(), tmp.c_str(), 0);
  UniqueFd f(::openat(etcfd.get(), tmp.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!f) return Errno("openat", root + "/etc/" + tmp);
  WB_RETURN_IF_ERROR(WriteAll(f.get(), text));
  if (::renameat(etcfd.get(), tmp.c_str(), etcfd.get(), "resolv.conf") != 0) {
    return Errno("renameat", root + "/etc/resolv.conf");
  }
  return Ok();
}

}  // namespace

Result<RunningTool> SpawnTool(const std::vector<std::string>& argv, int input_fd) {
  Pipe out = WB_TRY(MakePipe());
  Pipe err = WB_TRY(MakePipe());
  SpawnOptions o;
  o.path = argv.at(0);
  o.argv = argv;
  o.fds = {{out.write.get(), 1}, {err.write.get(), 2}};
  if (input_fd >= 0) o.fds.emplace_back(input_fd, 3);
  o.pdeath_signal = SIGKILL;
  // Its exec happens while the caller goes on (FinishTool confirms it).
  o.await_exec = false;
  RunningTool t;
  t.process = WB_TRY(ChildProcess::Spawn(o));
  t.out = std::move(out.read);
  t.err = std::move(err.read);
  t.what = argv[0];
  t.arg = argv.size() > 1 ? argv[1] : "";
  return t;
}

Result<std::string> FinishTool(RunningTool& t) {
  WB_RETURN_IF_ERROR(t.process.ConfirmExec());
  // stdout to its end first: nft's stderr is a few lines at most.
  std::string stdout_data = WB_TRY(ReadAll(t.out.get()));
  std::string stderr_data = WB_TRY(ReadAll(t.err.get()));
  ExitStatus st = WB_TRY(t.process.Wait());
  if (st.code != 0 || st.signal != 0) {
    while (!stderr_data.empty() && stderr_data.back() == '\n') stderr_data.pop_back();
    return Fail(t.what, t.arg, st.Describe() + ": " + stderr_data);
  }
  return stdout_data;
}

Result<std::string> RunTool(const std::vector<std::string>& argv) {
  RunningTool t = WB_TRY(SpawnTool(argv));
  return FinishTool(t);
}

Result<RunningTool> SandboxNetwork::StartNft(const std::string& what,
                                             const std::string& text) const {
  // The script in a memfd, read by nft as its fd 3: no file to create and
  // remove in the sandbox's dir (inode allocation on a busy ext4 costs more
  // than the transaction's text).
  const std::string name = "nft-" + what;
  UniqueFd script(::memfd_create(name.c_str(), MFD_CLOEXEC));
  if (!script) return Errno("memfd_create", name);
  WB_RETURN_IF_ERROR(WriteAll(script.get(), text));
  if (::lseek(script.get(), 0, SEEK_SET) != 0) return Errno("lseek", name);
  return SpawnTool({opts_.host.nft_path, "-f", "/dev/fd/3"}, script.get());
}

Result<void> SandboxNetwork::FinishNft(const std::string& what, RunningTool& t) const {
  auto r = FinishTool(t);
  if (!r.ok()) return r.error().Wrap("nft " + what + " of sandbox " + opts_.tag);
  return Ok();
}

Result<void> SandboxNetwork::Nft(const std::string& what, const std::string& text) const {
  RunningTool t = WB_TRY(StartNft(what, text));
  return FinishNft(what, t);
}

namespace {

// A helper that exited or is not ready in time: kUnavailable naming call and
// arg, with its exit (or not_ready) and what it wrote on stderr (err_fd, the
// read end).
Error HelperFailed(ChildProcess& helper, int err_fd, const std::string& call,
                   const std::string& arg, const std::string& not_ready) {
  auto done = helper.TryWait();
  (void)SetNonBlocking(err_fd);
  char buf[2048];
  ssize_t len = ::read(err_fd, buf, sizeof buf);
  std::string words = len > 0 ? std::string(buf, static_cast<size_t>(len)) : "";
  while (!words.empty() && words.back() == '\n') words.pop_back();
  return Fail(ErrorCode::kUnavailable, call, arg,
              (done.ok() && done->has_value() ? (*done)->Describe() : not_ready) +
                  (words.empty() ? "" : ": " + words));
}

// Polls ready() every 2 ms, for 5 s at most, while the helper runs; else
// HelperFailed.
Result<void> AwaitHelper(ChildProcess& helper, int err_fd, const std::function<bool()>& ready,
                         const std::string& call, const std::string& arg,
                         const std::string& not_ready) {
  for (int waited = 0; !ready(); waited += 2) {
    auto done = helper.TryWait();
    if ((done.ok() && done->has_value()) || waited > 5000) {
      return HelperFailed(helper, err_fd, call, arg, not_ready);
    }
    SleepMs(2);
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<SandboxNetwork>> SandboxNetwork::Begin(const NetAttachOptions& o,
                                                              const NetworkSpec& spec) {
  WB_RETURN_IF_ERROR(CheckNetworkSupported(spec));
  auto n = std::unique_ptr<SandboxNetwork>(new SandboxNetwork());
  n->opts_ = o;
  n->spec_ = spec;
  n->policy_ = WB_TRY(ParseNetPolicy(spec.allow_out, spec.deny_out));
  n->upstreams_ = o.host.dns_upstreams;
  if (n->upstreams_.empty()) {
    auto rc = ReadFile("/etc/resolv.conf");
    if (rc.ok()) n->upstreams_ = ParseResolvConf(*rc);
  }
  n->ids_.table = o.host.table;
  n->ids_.tag = o.tag;
  n->ids_.gid = o.gid;
  n->ids_.dns_ttl_s = o.host.dns_ttl_s;
  n->ids_.dns_port = WB_TRY(FreeLoopbackPort());
  KillStaleResolver(o.dir);  // a sandbox taken over: the dead daemon's

  // The rules before the helper's first socket. The table's output chain
  // refuses every socket of the driver's helper groups that its map does not
  // send to a sandbox's chain yet (NftBaseText), so once the table holds
  // that range, the sandbox's own transaction runs while its helper starts
  // (each nft run costs milliseconds) and is awaited before the attach
  // returns. Until it is done the sandbox's connections are refused, never
  // let through. A table not made yet, or a range not in it yet, is added
  // first, in the same transaction, before any helper starts.
  {
    std::lock_guard<std::mutex> lock(g_tables_mu);
    const std::string& t = o.host.table;
    const auto range = std::make_pair(o.host.helper_gid_first, o.host.helper_gid_last);
    const bool ranged = range.first != 0 && range.second >= range.first;
    const bool unchecked = !TablesChecked().count(t), unmade = !TablesMade().count(t);
    const bool new_range = ranged && (unmade || !TableRanges()[t].count(range));
    std::string first;
    if (unchecked) {
      // The process's first: a table left by a daemon that died (killed,
      // crashed) holds its sandboxes' chains, whose helpers died with it.
      // Gone, so that a sandbox taken over gets its chain afresh (add, then
      // delete: no error when there is none).
      first += "add table inet " + t + "\ndelete table inet " + t + "\n";
    }
    if (unmade) first += NftBaseText(t);
    if (new_range) {
      first += "add element inet " + t + " helper_gids { " + std::to_string(range.first) + "-" +
               std::to_string(range.second) + " }\n";
    }
    std::string mine = NftSandboxText(n->ids_, n->policy_);
    if (!first.empty() || !ranged) {
      // One transaction: all of it or nothing, so the table's state is
      // recorded only once it holds.
      WB_RETURN_IF_ERROR(n->Nft("add", first + mine));
      TablesChecked().insert(t);
      if (unmade) {
        TablesMade().insert(t);
        TableRanges()[t].clear();
      }
      if (new_range) TableRanges()[t].insert(range);
    } else {
      n->pending_nft_ = WB_TRY(n->StartNft("add", mine));
    }
    n->rules_added_ = true;  // from here on Destroy removes them (or tries)
    ++TableUsers()[t];
    n->counted_ = true;
  }
  // Its resolver starts meanwhile: the attach awaits it after its helper.
  WB_RETURN_IF_ERROR(n->SpawnDnsmasq());
  return n;
}

Result<void> SandboxNetwork::AwaitRules() {
  if (!pending_nft_) return Ok();
  RunningTool t = std::move(*pending_nft_);
  pending_nft_.reset();
  return FinishNft("add", t);
}

Result<void> SandboxNetwork::StartHelper(pid_t pid) {
  if (helper_.running() || destroyed_) {
    return Fail(ErrorCode::kFailedPrecondition, "start slirp4netns", opts_.tag,
                destroyed_ ? "network removed" : "already started");
  }
  // slirp4netns gets the daemon's fd of the sandbox's netns as its fd 3.
  // (The netns exists from the agent's clone on: the helper may configure
  // it while the agent is still setting up its root.)
  helper_ns_ = "/proc/" + std::to_string(pid) + "/ns/net";
  UniqueFd nsfd(::open(helper_ns_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsfd) return Errno("open", helper_ns_);
  SlirpPlan sp;
  sp.path = opts_.host.slirp_path;
  Pipe ready = WB_TRY(MakePipe());
  Pipe exit = WB_TRY(MakePipe());
  // Its stderr is a file (a memfd), not a pipe: it outlives the wait in
  // Finish and would block writing to a pipe nobody reads. Bounded (a few
  // lines at start; file_size_limit). Read, if it fails, through a file
  // description of our own (offset 0: the helper's moves with its writes).
  UniqueFd log_w(::memfd_create("slirp4netns-stderr", MFD_CLOEXEC));
  if (!log_w) return Errno("memfd_create", "slirp4netns-stderr");
  const std::string log = "/proc/self/fd/" + std::to_string(log_w.get());
  UniqueFd log_r(::open(log.c_str(), O_RDONLY | O_CLOEXEC));
  if (!log_r) return Errno("open", log);
  SpawnOptions so;
  so.path = sp.path;
  so.argv = SlirpArgv(sp);
  so.fds = {{nsfd.get(), sp.netns_fd},
            {ready.write.get(), sp.ready_fd},
            {exit.read.get(), sp.exit_fd},
            {log_w.get(), 2}};
  // The sandbox's group from birth, root's uid (to open /dev/net/tun and
  // enter the netns): the policy matches the group (meta skgid), and a
  // program that changed its own ids would lose the parent-death signal.
  so.gid = opts_.gid;
  so.pdeath_signal = SIGKILL;
  so.file_size_limit = 1 << 20;
  so.await_exec = false;  // Finish confirms it
  helper_ = WB_TRY(ChildProcess::Spawn(so));
  helper_exit_ = std::move(exit.write);
  helper_ready_ = std::move(ready.read);
  helper_log_ = std::move(log_r);
  return Ok();
}

Result<void> SandboxNetwork::Finish(pid_t pid) {
  if (!helper_ready_) {
    return Fail(ErrorCode::kFailedPrecondition, "finish network", opts_.tag,
                "slirp4netns not started");
  }
  WB_RETURN_IF_ERROR(helper_.ConfirmExec());
  // It configures the interface, address and route itself, then writes "1"
  // to the ready fd: woken by that, or by its exit (pidfd). Bounded: 5 s.
  {
    pollfd pf[2] = {{helper_ready_.get(), POLLIN, 0}, {helper_.pidfd(), POLLIN, 0}};
    int r;
    do {
      r = ::poll(pf, 2, 5000);
    } while (r < 0 && errno == EINTR);
    char c;
    if (r < 0) return Errno("poll", "slirp4netns ready fd");
    if (r == 0 || (pf[0].revents & POLLIN) == 0 || ::read(helper_ready_.get(), &c, 1) != 1) {
      // Not ready (timed out or exited): its words, and its exit if it exited.
      // A helper that closed its ready fd without "1" is exiting, but the
      // kernel closes a dying task's files before its exit is visible on the
      // pidfd: await that (bounded) so the error names the exit.
      if (r > 0) {
        pollfd pid_pf{helper_.pidfd(), POLLIN, 0};
        while (::poll(&pid_pf, 1, 1000) < 0 && errno == EINTR) {
        }
      }
      return HelperFailed(helper_, helper_log_.get(), "slirp4netns", helper_ns_,
                          "not configured after 5 s");
    }
  }
  helper_ready_.reset();
  helper_log_.reset();
  WB_RETURN_IF_ERROR(Settle());
  // In the root the agent has made (pid's): Finish runs once it answers.
  WB_RETURN_IF_ERROR(WriteResolvConf(
      pid, opts_.root_uid,
      std::string("# warmbox: the sandbox's resolver\nnameserver ") + kSandboxResolver + "\n"));
  spdlog::debug("{}: network egress (slirp4netns {}, dnsmasq {} on port {})", opts_.tag,
                helper_.pid(), dnsmasq_.pid(), ids_.dns_port);
  attached_ = true;
  return Ok();
}

Result<void> SandboxNetwork::Settle() {
  WB_RETURN_IF_ERROR(AwaitRules());
  return AwaitDnsmasq();
}

bool SandboxNetwork::CanServe(const NetworkSpec& spec) {
  if (destroyed_ || attached_ || helper_.running() || pending_nft_ || spec_ != spec) return false;
  // Reaps it if it died (then this network is only good for Destroy).
  auto done = dnsmasq_.TryWait();
  return done.ok() && !done->has_value() && dnsmasq_.running();
}

Result<std::unique_ptr<SandboxNetwork>> SandboxNetwork::Attach(const NetAttachOptions& o,
                                                               const NetworkSpec& spec, pid_t pid) {
  auto n = WB_TRY(Begin(o, spec));
  WB_RETURN_IF_ERROR(n->StartHelper(pid));
  WB_RETURN_IF_ERROR(n->Finish(pid));
  return n;
}

Result<VmNetwork> SandboxNetwork::AttachVm(const NetAttachOptions& o, const NetworkSpec& spec) {
  auto n = WB_TRY(Begin(o, spec));
  const std::string sock = o.dir + "/passt.sock";
  const std::string log = o.dir + "/passt.log";
  PasstPlan pp;
  pp.path = o.host.passt_path;
  pp.gid = o.gid;
  pp.socket_path = sock;
  pp.ports = spec.ports;
  // Its stderr is a file, not a pipe: passt outlives the wait below and
  // would block (or die of SIGPIPE) writing to a pipe nobody reads. --quiet
  // keeps it to a few lines.
  UniqueFd log_w(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log_w) return Errno("create", log);
  UniqueFd log_r(::open(log.c_str(), O_RDONLY | O_CLOEXEC));
  if (!log_r) return Errno("open", log);
  SpawnOptions so;
  so.path = pp.path;
  so.argv = PasstArgv(pp);
  so.fds = {{log_w.get(), 2}};
  // As slirp4netns: the group from birth, so that passt's own --runas to the
  // same ids changes nothing and the parent-death signal stays.
  so.gid = o.gid;
  so.pdeath_signal = SIGKILL;
  n->helper_ = WB_TRY(ChildProcess::Spawn(so));
  n->socket_path_ = sock;
  log_w.reset();
  // Ready once it accepts: that connection is QEMU's (passt serves one
  // client at a time, and --one-off ends it with that one). Bounded: 5 s.
  UniqueFd conn;
  WB_RETURN_IF_ERROR(AwaitHelper(
      n->helper_, log_r.get(),
      [&] {
        auto c = ConnectUnix(sock);
        if (c.ok()) conn = std::move(*c);
        return c.ok();
      },
      "passt", sock, "not accepting after 5 s"));
  WB_RETURN_IF_ERROR(n->Settle());
  spdlog::debug("{}: network egress (passt {}, dnsmasq {} on port {})", o.tag, n->helper_.pid(),
                n->dnsmasq_.pid(), n->ids_.dns_port);
  n->attached_ = true;
  return VmNetwork{std::move(n), std::move(conn)};
}

namespace {
std::string ResolverPidFile(const std::string& dir) { return dir + "/dnsmasq.pid"; }
}  // namespace

void KillStaleResolver(const std::string& dir) {
  const std::string pid_file = ResolverPidFile(dir);
  auto text = ReadFile(pid_file);
  if (!text.ok()) return;
  const long pid = std::strtol(std::string(Trim(*text)).c_str(), nullptr, 10);
  if (pid > 0) {
    // The pidfd pins the process: the command line read after it is that
    // process's, not a newer one's that got the pid.
    auto p = ChildProcess::Adopt(static_cast<pid_t>(pid));
    if (p.ok()) {
      auto cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
      if (cmdline.ok() && cmdline->find("--pid-file=" + pid_file) != std::string::npos) {
        spdlog::debug("{}: a dead daemon's resolver (pid {}), killed", dir, pid);
        p->KillAndReap();
      } else {
        p->Abandon();
      }
    }
  }
  (void)::unlink(pid_file.c_str());
}

Result<void> SandboxNetwork::SpawnDnsmasq() {
  DnsmasqPlan d;
  d.path = opts_.host.dnsmasq_path;
  // Its pid, for a next daemon if this one dies (KillStaleResolver).
  d.pid_file = ResolverPidFile(opts_.dir);
  d.port = ids_.dns_port;
  d.upstreams = upstreams_;
  SpawnOptions so;
  so.path = d.path;
  so.argv = DnsmasqArgv(d, ids_, policy_);
  Pipe err = WB_TRY(MakePipe());
  so.fds = {{err.write.get(), 2}};
  so.pdeath_signal = SIGKILL;
  so.await_exec = false;  // AwaitDnsmasq confirms it
  dnsmasq_ = WB_TRY(ChildProcess::Spawn(so));
  dnsmasq_err_ = std::move(err.read);
  dnsmasq_listening_ = false;
  return Ok();
}

Result<void> SandboxNetwork::AwaitDnsmasq() {
  WB_RETURN_IF_ERROR(dnsmasq_.ConfirmExec());
  // Settled ahead (a spare): not probed again (each probe is a TCP
  // connection, which dnsmasq serves in a process of its own); alive is
  // what CanServe checked.
  if (dnsmasq_listening_) return Ok();
  // Ready once it accepts TCP on its port (it binds UDP first). Bounded: 5 s.
  WB_RETURN_IF_ERROR(AwaitHelper(
      dnsmasq_, dnsmasq_err_.get(), [port = ids_.dns_port] { return TcpListening(port); },
      "dnsmasq", "127.0.0.1:" + std::to_string(ids_.dns_port), "not listening after 5 s"));
  dnsmasq_err_.reset();
  dnsmasq_listening_ = true;
  return Ok();
}

Result<void> SandboxNetwork::Update(const std::vector<std::string>& allow_out,
                                    const std::vector<std::string>& deny_out) {
  if (destroyed_) return Fail(ErrorCode::kFailedPrecondition, "network update", opts_.tag, "gone");
  NetPolicy p = WB_TRY(ParseNetPolicy(allow_out, deny_out));
  WB_RETURN_IF_ERROR(Nft("update", NftUpdateText(ids_, p)));
  policy_ = std::move(p);
  spec_.allow_out = allow_out;
  spec_.deny_out = deny_out;
  // The resolver's names are in its argv: a new one, on the same port.
  dnsmasq_.KillAndReap();
  WB_RETURN_IF_ERROR(SpawnDnsmasq());
  return AwaitDnsmasq();
}

Result<std::map<std::string, NetCounters>> ReadNetCounters(const std::string& nft_path,
                                                           const std::string& table) {
  std::string json = WB_TRY(RunTool({nft_path, "-j", "list", "counters", "table", "inet", table}));
  return ParseNftCountersByTag(json);
}

Result<NetCounters> SandboxNetwork::Counters() const {
  return CountersOf(WB_TRY(ReadNetCounters(opts_.host.nft_path, ids_.table)), ids_.tag);
}

Result<void> SandboxNetwork::Destroy() {
  if (destroyed_) return Ok();
  destroyed_ = true;
  helper_.KillAndReap();
  helper_exit_.reset();
  dnsmasq_.KillAndReap();
  if (!socket_path_.empty()) (void)::unlink(socket_path_.c_str());
  Result<void> r = Ok();
  // A transaction still running (a failed attach) ends first: its objects
  // are then removed with the others (or were never made).
  bool pending_failed = false;
  if (pending_nft_) pending_failed = !AwaitRules().ok();
  if (rules_added_ && !pending_failed) r = Nft("remove", NftRemoveText(ids_));
  if (counted_) {
    // The table stays for the process's next sandboxes (ReleaseNetTable).
    std::lock_guard<std::mutex> lock(g_tables_mu);
    --TableUsers()[opts_.host.table];
  }
  return r;
}

void ReleaseNetTable(const NetHostOptions& host) {
  std::lock_guard<std::mutex> lock(g_tables_mu);
  if (TableUsers()[host.table] > 0 || TablesMade().erase(host.table) == 0) return;
  TableRanges().erase(host.table);
  auto d = RunTool({host.nft_path, "delete", "table", "inet", host.table});
  if (!d.ok()) spdlog::warn("nft table inet {}: {}", host.table, d.error().ToString());
}

SandboxNetwork::~SandboxNetwork() {
  if (auto r = Destroy(); !r.ok())
    spdlog::warn("network of {}: {}", opts_.tag, r.error().ToString());
}

}  // namespace wb
