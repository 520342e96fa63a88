// warmbox-agent: PID 1 of every sandbox.
//
//   warmbox-agent --listen-fd N [--hostname H]
//       serve on an inherited listening socket (tests)
//   warmbox-agent --port-fd N
//       serve an inherited stream as a VM's port (tests of the guest mode)
//   warmbox-agent --listen-fd N --ns-setup --scratch DIR
//                 (--lower DIR[:DIR] | --lower-fds FD[,FD])
//                 --tmpfs-size BYTES --hostname H
//       first build the namespace sandbox, then serve
//   /init --guest --tmpfs-size BYTES --layers N --hostname H
//       /init of a microVM (the vm driver; the kernel passes the words after
//       "--" on its command line): build the sandbox from the bare guest
//       kernel (agent/guest.h), then serve the virtio-serial port
//
// The listening socket is bound by the host before we exist, so the host can
// connect at once; setup errors go to fd 2 (a pipe the host reads) and the
// agent exits 1.
#include <fcntl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent/caps.h"
#include "agent/guest.h"
#include "agent/seccomp.h"
#include "agent/server.h"
#include "agent/setup.h"
#include "base/fs.h"
#include "base/strings.h"

namespace {

int Die(const std::string& msg) {
  std::string line = "warmbox-agent: " + msg + "\n";
  ssize_t ignored = ::write(2, line.data(), line.size());
  (void)ignored;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // A VM's first command after boot (vm_driver.cc, "warm-up"): nothing to do.
  if (argc == 2 && std::string(argv[1]) == "--warmup") return 0;
  wb::agent::ServerOptions opts;
  wb::agent::NsSetup setup;
  bool ns_setup = false;
  bool guest = false;
  wb::agent::GuestSetup guest_setup;
  std::string seccomp_option = "default";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        Die("missing value for " + a);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--listen-fd") {
      auto v = wb::ParseUint(value(), "--listen-fd");
      if (!v.ok()) return Die(v.error().ToString());
      opts.listen_fd = static_cast<int>(*v);
    } else if (a == "--hostname") {
      opts.hostname = setup.hostname = value();
    } else if (a == "--ns-setup") {
      ns_setup = true;
    } else if (a == "--port-fd") {
      // An already open port-like stream (tests of the guest's serving mode).
      auto v = wb::ParseUint(value(), "--port-fd");
      if (!v.ok()) return Die(v.error().ToString());
      opts.port_fd = static_cast<int>(*v);
    } else if (a == "--guest") {
      guest = true;
    } else if (a == "--layers") {
      auto v = wb::ParseUint(value(), "--layers");
      if (!v.ok() || *v == 0 || *v > 64) return Die("--layers: expected 1 to 64");
      guest_setup.layers = static_cast<int>(*v);
    } else if (a == "--net") {
      guest_setup.net = value();
    } else if (a == "--scratch") {
      setup.scratch_dir = value();
    } else if (a == "--lower") {
      setup.lower_dirs = wb::Split(value(), ':');
    } else if (a == "--lower-fds") {
      for (const auto& f : wb::Split(value(), ',')) {
        auto v = wb::ParseUint(f, "--lower-fds");
        if (!v.ok() || *v < 3 || *v > 63) return Die("--lower-fds: expected fds 3-63, got " + f);
        setup.lower_fds.push_back(static_cast<int>(*v));
      }
    } else if (a == "--seccomp") {
      seccomp_option = value();
    } else if (a == "--nofile") {
      auto v = wb::ParseUint(value(), "--nofile");
      if (!v.ok() || *v == 0) return Die("--nofile: expected a positive integer");
      opts.nofile = *v;
    } else if (a == "--tmpfs-size") {
      auto v = wb::ParseUint(value(), "--tmpfs-size");
      if (!v.ok()) return Die(v.error().ToString());
      setup.tmpfs_bytes = *v;
    } else if (guest && a.find('=') != std::string::npos && a.find('.') < a.find('=')) {
      // "virtio_mmio.device=...": QEMU appends the devices of a microvm
      // without ACPI to the kernel command line, after our "--", so they
      // reach /init too. They are the modules' (agent/guest.cc reads them
      // from /proc/cmdline).
      continue;
    } else {
      return Die("unknown argument " + a);
    }
  }
  if (opts.listen_fd < 0 && opts.port_fd < 0 && !guest) return Die("--listen-fd is required");
  opts.pid1 = ::getpid() == 1;

  // A profile file is read now, while the host's filesystem is still visible.
  std::string profile;
  if (seccomp_option != "default" && seccomp_option != "unconfined") {
    auto text = wb::ReadFile(seccomp_option);
    if (!text.ok()) return Die("--seccomp: " + text.error().ToString());
    profile = *text;
  }
  auto policy = wb::agent::SeccompPolicyFromOption(seccomp_option, profile);
  if (!policy.ok()) return Die(policy.error().ToString());
  auto prog = wb::agent::CompileSeccomp(*policy);
  if (!prog.ok()) return Die(prog.error().ToString());
  opts.seccomp = std::move(*prog);

  timespec t0, t1;
  ::clock_gettime(CLOCK_MONOTONIC, &t0);
  if (ns_setup) {
    if (auto r = wb::agent::SetUpNamespaceSandbox(setup); !r.ok()) {
      return Die("sandbox setup: " + r.error().ToString());
    }
  }
  if (guest) {
    // Errors go to the console (fd 2 is /dev/console); PID 1 exiting panics
    // the guest kernel, which (panic=-1, QEMU -no-reboot) ends the VM.
    guest_setup.tmpfs_bytes = setup.tmpfs_bytes ? setup.tmpfs_bytes : guest_setup.tmpfs_bytes;
    guest_setup.hostname = setup.hostname;
    auto g = wb::agent::SetUpGuest(guest_setup);
    if (!g.ok()) return Die("guest setup: " + g.error().ToString());
    opts.port_fd = g->port.release();
    opts.heartbeat_extra = g->timings.ToJson();
  }
  // Setup is done: keep only the capabilities commands may have (and that
  // the agent needs to start them), so no exec can regain the rest; and make
  // PID 1 non-dumpable, so the sandbox's root cannot ptrace or read the
  // agent that holds the host's socket.
  if (wb::agent::CanDropCaps()) {
    // A VM guest's agent keeps what a clone's identity needs (outside the
    // bounding set: no command ever gets them) until it is applied or the
    // first command starts.
    if (guest) opts.identity_caps = wb::agent::IdentityCaps();
    if (auto r = wb::agent::DropCapsTo(wb::agent::DefaultKeepCaps(), opts.identity_caps); !r.ok()) {
      return Die("drop capabilities: " + r.error().ToString());
    }
  }
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return Die("prctl(PR_SET_DUMPABLE)");
  ::clock_gettime(CLOCK_MONOTONIC, &t1);
  opts.setup_us =
      static_cast<uint64_t>((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000);
  auto server = wb::agent::CreateServer(opts);
  if (!server.ok()) return Die(server.error().ToString());
  // From here on nothing is written to fd 2: the host stops reading it once
  // the agent is ready, and a full pipe must never block PID 1.
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, 2);
    ::close(null);
  }
  auto rc = (*server)->Run();
  if (!rc.ok()) return 1;
  return *rc;
}
