#include "sandbox/vm/vm_sandbox.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "base/log.h"
#include "sandbox/agent_client.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/vm/qmp.h"

namespace wb::vm {
namespace {

constexpr int kQuitGraceMs = 2000;

// QMP "quit": QEMU exits at once, cleanly. Best effort, bounded: the caller
// kills QEMU anyway if it is still there after the grace period. The
// connection must stay open until QEMU is gone: QEMU drops the queued
// commands of a client that hangs up.
UniqueFd QmpQuit(const std::string& socket_path) {
  auto fd = ConnectUnix(socket_path);
  if (!fd.ok()) return UniqueFd();
  (void)SetNonBlocking(fd->get());
  // Capabilities negotiation must precede any command; QEMU handles the two
  // in order, so both go in one write without waiting for the greeting.
  static const char kMsg[] = "{\"execute\":\"qmp_capabilities\"}\r\n{\"execute\":\"quit\"}\r\n";
  ssize_t n = ::send(fd->get(), kMsg, sizeof kMsg - 1, MSG_NOSIGNAL);
  (void)n;
  return std::move(*fd);
}

}  // namespace

VmSandbox::VmSandbox() {
  stop_hook_ = [](SandboxBase& sb) {
    // The bridge's connections fail first (their clients see the end at
    // once), then QEMU goes.
    static_cast<VmSandbox&>(sb).StopBridge();
    UniqueFd qmp = QmpQuit(sb.dir() + "/qmp.sock");
    pollfd p{sb.process().pidfd(), POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, kQuitGraceMs);
    } while (r < 0 && errno == EINTR);
  };
}

Result<void> VmSandbox::Pause(bool paused) {
  if (dir_.empty() || !process_.running())
    return Fail(ErrorCode::kFailedPrecondition, "pause", id_, "the VM is not running");
  Qmp q = WB_TRY(Qmp::Connect(dir_ + "/qmp.sock", 5000));
  WB_TRY(q.Execute(paused ? "stop" : "cont"));
  if (!paused && adopted_) {
    // Taken over while paused: the guest could not answer the bridge's
    // reset then (the registry left it for now); it can now.
    bool serving;
    {
      std::lock_guard<std::mutex> lock(bridge_mu_);
      serving = bridge_ && bridge_->alive();
    }
    if (!serving) return ServeLive();
  }
  return Ok();
}

Result<void> VmSandbox::AttachNetwork(const NetworkSpec& spec) {
  if (spec.mode == NetworkMode::kNone) return Ok();
  if (net_ && net_->spec() == spec) return Ok();  // booted with it
  return Fail(ErrorCode::kFailedPrecondition, "attach network", id_,
              "a vm sandbox gets its network interface at boot (microvm has no hot-plug): "
              "create it with --network egress, not from a warm pool made without");
}

AgentEndpoint VmSandbox::live_endpoint() const {
  return AgentEndpoint{dir_ + "/live.sock", process_.pidfd()};
}

Result<void> VmSandbox::ServeLive() {
  std::lock_guard<std::mutex> lock(bridge_mu_);
  if (bridge_ && bridge_->alive()) return Ok();
  bridge_.reset();
  if (dir_.empty() || !process_.running())
    return Fail(ErrorCode::kFailedPrecondition, "serve live", id_, "the VM is not running");
  // QEMU's chardev takes one connection at a time: this one, from now on
  // (the pool's exchanges with this sandbox are over once it is claimed).
  UniqueFd port = WB_TRY(ConnectUnix(dir_ + "/agent.sock"));
  bridge_ = WB_TRY(MuxBridge::Start(std::move(port), dir_ + "/live.sock", 10000, adopted_));
  return Ok();
}

void VmSandbox::StopBridge() {
  std::lock_guard<std::mutex> lock(bridge_mu_);
  bridge_.reset();
}

Result<void> VmSandbox::ApplyLimits(const Limits& limits) {
  // The VM's RAM and vCPUs are fixed at boot; a run may ask for less (the
  // guest has no more to give), not for more.
  if (limits.memory_bytes > (memory_mib_ << 20)) {
    return Fail("set limits", id_,
                "the vm driver cannot raise memory above the VM's " + std::to_string(memory_mib_) +
                    " MiB after boot (start the pool with a larger --memory)");
  }
  return Ok();
}

AgentArgs GuestAgentArgs(const SandboxSpec& spec, size_t layers, std::string hostname) {
  AgentArgs a;
  a.mode = AgentArgs::Mode::kGuest;
  a.layers = layers;
  a.tmpfs_size = spec.limits.disk_bytes;
  a.hostname = std::move(hostname);
  a.seccomp = spec.security.seccomp;
  a.nofile = spec.security.nofile;
  return a;
}

uint32_t VcpusOf(const Limits& limits) {
  long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);
  return VcpusFor(limits.cpus, ncpu > 0 ? static_cast<uint32_t>(ncpu) : 1);
}

uint64_t MemoryMibOf(const Limits& limits) {
  return std::max<uint64_t>(limits.memory_bytes >> 20, 64);
}

std::pair<uint32_t, uint32_t> JailIdsOf(const VmDriverOptions& opts, uint32_t uid_base) {
  // 65534: nobody, for a store without a uid range.
  const uint32_t top = uid_base ? uid_base + kUidCount - 1 : 65534;
  const uint32_t uid = opts.jail_uid ? opts.jail_uid : top;
  return {uid, opts.jail_gid ? opts.jail_gid : uid};
}

int64_t NowUs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

std::string VmDir(const std::string& state_dir) { return state_dir + "/vm"; }

// "6.1 ms" etc. from guest microseconds.
std::string Ms(double us) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", us / 1000.0);
  return b;
}

}  // namespace wb::vm
