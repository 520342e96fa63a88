// The namespace driver: a sandbox is warmbox-agent as PID 1 in new user,
// mount, pid, net, ipc, uts and cgroup namespaces, on an overlay of the image
// with a size-capped tmpfs upper, in its own cgroups.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "image/store.h"
#include "sandbox/driver.h"
#include "sandbox/net/net_attach.h"
#include "sandbox/ns/uid_slots.h"

namespace wb {

inline constexpr uint32_t kDefaultUidBase = 1000000000;
inline constexpr uint32_t kUidCount = 65536;

struct NsDriverOptions {
  std::string state_dir;
  std::string agent_path;               // the static warmbox-agent
  uint32_t uid_base = kDefaultUidBase;  // the store's range (slot 0): image files on disk
  // Sandbox uid ranges (uid_slots.h): sandbox on slot k has uid 0 inside =
  // uid_base + k*65536 outside, k in 1..uid_slots. 0: every sandbox shares
  // slot 0 (uid_base), as before per-sandbox ranges.
  uint32_t uid_slots = kDefaultUidSlots;
  std::string cgroup_parent;    // "" = default placement (see cgroup.h)
  int ready_attempt_ms = 1000;  // per heartbeat attempt
  int ready_total_ms = 10000;   // readiness cap
  // --network egress: the tools and table (sandbox/net/net_attach.h), and
  // the group ids of the sandboxes' slirp4netns processes: net_gid_base + n, one n
  // per sandbox (0: just above every sandbox range, slot uid_slots + 1).
  NetHostOptions net;
  uint32_t net_gid_base = 0;
  // When an egress sandbox goes, make a network for its policy ahead (rules,
  // resolver: SandboxNetwork::Begin, settled), handed to the next sandbox
  // that asks for the same policy, so that its create starts no resolver
  // and runs no nft (docs/network.md, "A network made ahead"). The daemon's
  // driver does; a one-shot `warmbox run` would only waste it.
  bool spare_network = false;
};

class NsDriver : public Driver {
 public:
  [[nodiscard]] static Result<std::unique_ptr<NsDriver>> Open(NsDriverOptions opts,
                                                              ImageStore* store);
  static constexpr DriverCapabilities kCapabilities{.seccomp_profile_files = true,
                                                    .boots_kernel = false};
  ~NsDriver() override;
  DriverKind kind() const override { return DriverKind::kNs; }
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> Adopt(const AdoptSpec& spec) override;
  struct NetSlots;  // the slirp4netns group ids in use (ns_driver.cc)

 private:
  NsDriver() = default;
  NsDriverOptions opts_;
  ImageStore* store_ = nullptr;
  struct CgroupLayoutHolder;
  std::shared_ptr<CgroupLayoutHolder> layout_;
  std::shared_ptr<class IdmapUsernsCache> idmaps_;
  std::shared_ptr<NetSlots> net_slots_;
};

}  // namespace wb
