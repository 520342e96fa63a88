#include "cli/options.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/driver_factory.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/ns/uid_slots.h"

namespace wb::cli {

Result<void> Finish(GlobalOptions& g) {
  if (g.state_dir.empty()) {
    const char* env = std::getenv("WARMBOX_STATE_DIR");
    g.state_dir = env && *env ? env : "/var/lib/warmbox";
  }
  if (g.state_dir.front() != '/')
    return Fail("--state-dir", g.state_dir, "must be an absolute path");
  if (g.userns_base.empty()) {
    const char* env = std::getenv("WARMBOX_USERNS_BASE");
    if (env && *env) g.userns_base = env;
  }
  g.uid_base = kDefaultUidBase;
  if (!g.userns_base.empty()) {
    uint64_t v = WB_TRY(ParseUint(g.userns_base, "--userns-base"));
    if (v == 0 || v + kUidCount > 0xffffffffULL) {
      return Fail("--userns-base", g.userns_base,
                  "must be > 0 and leave room for 65536 ids below 2^32");
    }
    g.uid_base = static_cast<uint32_t>(v);
  }
  if (g.uid_slots_text.empty()) {
    const char* env = std::getenv("WARMBOX_UID_SLOTS");
    if (env && *env) g.uid_slots_text = env;
  }
  g.uid_slots = kDefaultUidSlots;
  if (!g.uid_slots_text.empty()) {
    uint64_t v = WB_TRY(ParseUint(g.uid_slots_text, "--uid-slots"));
    if (v > 65535) return Fail("--uid-slots", g.uid_slots_text, "at most 65535");
    g.uid_slots = static_cast<uint32_t>(v);
  }
  WB_RETURN_IF_ERROR(CheckUidSlots(g.uid_base, g.uid_slots));
  if (const char* env = std::getenv("WARMBOX_AGENT"); env && *env) {
    g.agent_path = env;
  } else {
    g.agent_path = WB_TRY(SelfDir()) + "/warmbox-agent";
  }
  if (const char* env = std::getenv("WARMBOX_IMAGE_TOOL"); env && *env) {
    g.image_tool_path = env;
  } else {
    g.image_tool_path = WB_TRY(SelfDir()) + "/warmbox-image";
  }
  if (const char* env = std::getenv("WARMBOX_CGROUP_PARENT"); env && *env) g.cgroup_parent = env;
  return Ok();
}

Result<SecurityOptions> ParseSecurityOptions(const std::vector<std::string>& opts,
                                             const std::string& nofile) {
  SecurityOptions s;
  for (const auto& o : opts) {
    if (!StartsWith(o, "seccomp="))
      return Fail("--security-opt", o, "expected seccomp=default|unconfined|PATH");
    std::string v = o.substr(8);
    if (v.empty()) return Fail("--security-opt", o, "empty seccomp value");
    if (v != "default" && v != "unconfined") {
      // The agent reads the file; check it here for a clear error.
      if (v.front() != '/') return Fail("--security-opt", o, "a profile path must be absolute");
      if (!PathExists(v)) return Fail("--security-opt", v, "no such seccomp profile");
    }
    s.seccomp = v;
  }
  if (!nofile.empty()) {
    s.nofile = WB_TRY(ParseUint(nofile, "--nofile"));
    if (s.nofile == 0) return Fail("--nofile", nofile, "must be at least 1");
  }
  return s;
}

void AddNetworkOptions(CLI::App* sub, NetworkChoice& n, bool with_publish) {
  sub->add_option("--network", n.mode,
                  "none (only loopback, default) or egress (outbound by --allow-out/--deny-out)");
  sub->add_option("--allow-out", n.allow_out,
                  "egress: allow an IP, CIDR, name or *.name (repeatable; none: all public)")
      ->allow_extra_args(false);
  sub->add_option("--deny-out", n.deny_out,
                  "egress: deny an IP, CIDR, name or *.name (repeatable; beats --allow-out)")
      ->allow_extra_args(false);
  if (with_publish) {
    sub->add_option("-p,--publish", n.publish,
                    "publish [HOSTADDR:]HOSTPORT:PORT (repeatable; default HOSTADDR 127.0.0.1): "
                    "the daemon relays HOSTPORT to the sandbox's PORT, any --network")
        ->allow_extra_args(false);
  }
}

Result<NetworkSpec> ParseNetworkChoice(const NetworkChoice& n) {
  NetworkSpec s;
  s.mode = WB_TRY(ParseNetworkMode(n.mode, "--network"));
  s.allow_out = n.allow_out;
  s.deny_out = n.deny_out;
  for (const auto& p : n.publish) s.ports.push_back(WB_TRY(ParsePublishedPort(p, "-p")));
  // -p is served by the daemon through the agent, with or without a network.
  if (s.mode == NetworkMode::kNone && (!s.allow_out.empty() || !s.deny_out.empty())) {
    const std::string what = !s.allow_out.empty() ? "--allow-out" : "--deny-out";
    return Fail(ErrorCode::kInvalidArgument, what, "--network none",
                "needs --network egress (the sandbox has no network otherwise)");
  }
  // The policy's entries are checked now, with the option names.
  (void)WB_TRY(ParseNetPolicy(s.allow_out, s.deny_out));
  return s;
}

void AddDriverOptions(CLI::App* sub, DriverChoice& d, bool with_driver) {
  if (with_driver)
    sub->add_option("--driver", d.driver,
                    "ns (namespaces, default) or vm (a QEMU microVM per sandbox)");
  sub->add_option("--accel", d.accel,
                  "vm driver: auto (KVM if the CPU has vmx/svm, default), kvm or tcg");
  sub->add_option("--kernel", d.kernel,
                  "vm driver: guest vmlinux instead of the one scripts/setup installed");
  sub->add_flag("--snapshot", d.snapshot,
                "vm driver: sandboxes are copy-on-write clones of a snapshot template VM");
  sub->add_option("--initrd", d.initrd,
                  "vm driver: initramfs instead of the one warmbox assembles");
}

Result<void> ValidateDriver(const std::string& driver) {
  WB_RETURN_IF_ERROR(ParseDriverKind(driver, "--driver"));
  return Ok();
}

vm::VmDriverOptions VmOptions(const GlobalOptions& g, const DriverChoice& d) {
  vm::VmDriverOptions o;
  o.state_dir = g.state_dir;
  o.agent_path = g.agent_path;
  o.kernel = d.kernel;
  o.initrd = d.initrd;
  o.accel = d.accel;
  o.snapshot = d.snapshot;
  o.cgroup_parent = g.cgroup_parent;
  // The passt group ids: above the ns driver's slirp4netns ids of the same ranges.
  o.net_gid_base = SlotBase(g.uid_base, g.uid_slots + 1) + vm::kVmNetGidOffset;
  return o;
}

Result<std::unique_ptr<Driver>> OpenDriver(const GlobalOptions& g, const DriverChoice& d,
                                           ImageStore* store) {
  DriverOptions o;
  o.kind = WB_TRY(ParseDriverKind(d.driver, "--driver"));
  if (!CapabilitiesOf(o.kind).boots_kernel && (!d.kernel.empty() || !d.initrd.empty())) {
    return Fail("--kernel/--initrd", d.kernel + d.initrd,
                "only the vm driver boots a kernel (add --driver vm)");
  }
  o.ns.state_dir = g.state_dir;
  o.ns.agent_path = g.agent_path;
  o.ns.uid_base = g.uid_base;
  o.ns.uid_slots = g.uid_slots;
  o.ns.cgroup_parent = g.cgroup_parent;
  o.vm = VmOptions(g, d);
  return wb::OpenDriver(o, store);
}

int ReportError(const Error& e) {
  std::fprintf(stderr, "warmbox: %s\n", e.ToString().c_str());
  return kExitWarmboxError;
}

}  // namespace wb::cli
