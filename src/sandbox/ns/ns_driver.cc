#include "sandbox/ns/ns_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "base/child.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "sandbox/agent_args.h"
#include "sandbox/agent_client.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/idmap_mount.h"
#include "sandbox/ns/uid_slots.h"
#include "sandbox/sandbox_base.h"
#include "sandbox/sandbox_dir.h"

namespace wb {

struct NsDriver::CgroupLayoutHolder {
  CgroupLayout layout;
};

// The group ids of the slirp4netns processes of this driver's sandboxes: a slot
// is taken per egress sandbox and given back when the sandbox object goes.
// And the network made ahead (NsDriverOptions::spare_network), with its slot.
struct NsDriver::NetSlots {
  static constexpr uint32_t kSlots = 4096;
  std::mutex mu;
  std::vector<bool> used = std::vector<bool>(kSlots, false);
  bool open = true;  // false once the driver goes: no spare is made then
  struct Spare {
    // Members go in reverse order: the network (which kills its resolver)
    // before the slot (which removes the spare's dir, its pid file's).
    std::shared_ptr<void> slot;
    std::unique_ptr<SandboxNetwork> net;
  };
  Spare spare;
};

namespace {

struct NetSlot {
  NetSlot(std::shared_ptr<NsDriver::NetSlots> s, uint32_t i) : slots(std::move(s)), index(i) {}
  NetSlot(const NetSlot&) = delete;
  NetSlot& operator=(const NetSlot&) = delete;
  std::shared_ptr<NsDriver::NetSlots> slots;
  uint32_t index;
  // A spare's own dir (its resolver's pid file), removed with the slot:
  // after the network's Destroy, which killed that resolver.
  std::string dir;
  ~NetSlot() {
    if (!dir.empty()) (void)RemoveTree(dir);
    std::lock_guard<std::mutex> lock(slots->mu);
    slots->used[index] = false;
  }
};

// A free slot, or nullptr when all are taken.
std::shared_ptr<NetSlot> TakeNetSlot(const std::shared_ptr<NsDriver::NetSlots>& slots) {
  std::lock_guard<std::mutex> lock(slots->mu);
  for (uint32_t i = 0; i < NsDriver::NetSlots::kSlots; ++i) {
    if (slots->used[i]) continue;
    slots->used[i] = true;
    return std::make_shared<NetSlot>(slots, i);
  }
  return nullptr;
}

// The network made ahead, if it can serve spec: taken out of the driver's.
NsDriver::NetSlots::Spare TakeSpare(NsDriver::NetSlots& slots, const NetworkSpec& spec) {
  std::lock_guard<std::mutex> lock(slots.mu);
  if (!slots.spare.net || !slots.spare.net->CanServe(spec)) return {};
  return std::exchange(slots.spare, {});
}

// A spare that goes unused: its network removed, then its slot and dir.
void DropSpare(NsDriver::NetSlots::Spare spare) {
  if (!spare.net) return;
  if (auto r = spare.net->Destroy(); !r.ok())
    spdlog::debug("spare network: {}", r.error().ToString());
}

// Makes the driver's spare network for spec, settled, unless it has one for
// it already: the previous spare (another policy) goes first. Called when a
// sandbox with that policy went (SandboxBase::network_gone_hook_), on the
// destroying thread, so that nothing of it runs once Destroy returns. Best
// effort: a failure leaves no spare (the next create makes its own
// network) and nothing else.
void MakeSpareNetwork(const std::shared_ptr<NsDriver::NetSlots>& slots, const NetHostOptions& host,
                      uint32_t gid_base, const std::string& state_dir, const NetworkSpec& spec) {
  NsDriver::NetSlots::Spare old;
  {
    std::lock_guard<std::mutex> lock(slots->mu);
    if (!slots->open) return;
    if (slots->spare.net && slots->spare.net->CanServe(spec)) return;
    old = std::exchange(slots->spare, {});
  }
  DropSpare(std::move(old));
  auto made = [&]() -> Result<NsDriver::NetSlots::Spare> {
    std::shared_ptr<NetSlot> slot = TakeNetSlot(slots);
    if (!slot) return Fail(ErrorCode::kBusy, "spare network", "slots", "every slot is taken");
    // Its own dir among the sandboxes' (an owner record, so that gc removes
    // it and kills its resolver if this process dies), named by its tag.
    const std::string tag = WB_TRY(RandomHex(6));
    const std::string dir = SandboxesDir(state_dir) + "/" + tag;
    if (::mkdir(dir.c_str(), 0700) != 0) return Errno("mkdir", dir);
    slot->dir = dir;
    WB_RETURN_IF_ERROR(
        WriteSandboxRecord(dir, SandboxRecord{tag, ::getpid(), ProcessStartTime(::getpid()), {}}));
    NetAttachOptions no;
    no.host = host;
    no.dir = dir;
    no.tag = tag;
    no.gid = gid_base + slot->index;
    auto n = WB_TRY(SandboxNetwork::Begin(no, spec));
    WB_RETURN_IF_ERROR(n->Settle());
    return NsDriver::NetSlots::Spare{std::move(slot), std::move(n)};
  }();
  if (!made.ok()) {
    spdlog::debug("spare network: {}", made.error().ToString());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(slots->mu);
    if (slots->open && !slots->spare.net) {
      slots->spare = std::move(*made);
      return;
    }
  }
  // The driver went, or another sandbox's spare came first.
  DropSpare(std::move(*made));
}

}  // namespace

namespace {

class NsSandbox : public SandboxBase {
  friend class wb::NsDriver;  // Create fills it in

 public:
  CgroupLayout layout_;
  std::string cgroup_parent_;
  // For AttachNetwork: the driver's options and its group-id slots.
  NetHostOptions net_host_;
  uint32_t net_gid_base_ = 0, uid_base_ = 0;
  std::shared_ptr<NsDriver::NetSlots> net_slots_;

  void OnNetworkGone(std::function<void(const NetworkSpec&)> f) {
    network_gone_hook_ = std::move(f);
  }

  Result<void> AttachNetwork(const NetworkSpec& spec) override {
    if (spec.mode == NetworkMode::kNone) return Ok();
    if (!process_.running())
      return Fail(ErrorCode::kFailedPrecondition, "attach network", id_, "not running");
    WB_RETURN_IF_ERROR(BeginNetwork(spec));
    WB_RETURN_IF_ERROR(net_->StartHelper(process_.pid()));
    return FinishNetwork();
  }

  // The first of AttachNetwork's steps (SandboxNetwork::Begin): a group-id
  // slot, the sandbox's rules and resolver started. Needs no process yet.
  Result<void> BeginNetwork(const NetworkSpec& spec) {
    if (net_) {
      return Fail(ErrorCode::kFailedPrecondition, "attach network", id_, "already attached");
    }
    // A network made ahead for this policy: its rules and resolver are in
    // place, this sandbox's helper is all that is left to start.
    if (auto spare = TakeSpare(*net_slots_, spec); spare.net) {
      spare.net->Hand(uid_base_);
      net_ = std::move(spare.net);
      net_slot_ = std::move(spare.slot);
      spdlog::debug("{}: network made ahead", id_);
      return Ok();
    }
    // The slot's object lives as long as the sandbox's; its gid is slirp4netns's.
    std::shared_ptr<NetSlot> slot = TakeNetSlot(net_slots_);
    if (!slot) {
      return Fail(
          ErrorCode::kBusy, "attach network", id_,
          "every network slot (" + std::to_string(NsDriver::NetSlots::kSlots) + ") is taken");
    }
    NetAttachOptions no;
    no.host = net_host_;
    no.dir = dir_;
    no.tag = id_;
    no.gid = net_gid_base_ + slot->index;
    no.root_uid = uid_base_;
    net_ = WB_TRY(SandboxNetwork::Begin(no, spec));
    net_slot_ = slot;
    return Ok();
  }

  // The last: awaited, /etc/resolv.conf written in the agent's root.
  Result<void> FinishNetwork() {
    WB_RETURN_IF_ERROR(net_->Finish(process_.pid()));
    spdlog::debug("{}: network attached", id_);
    return Ok();
  }

  ResourceUsage Usage() const override {
    ResourceUsage u = cgroup_.Usage();
    // The writable layer is mounted only in the sandbox's mount namespace:
    // reach it through the agent's root. statfs of an overlay reports its
    // upper fs, the size-capped tmpfs.
    if (pid_t pid = host_pid(); pid > 0) {
      struct statfs fs;
      if (::statfs(("/proc/" + std::to_string(pid) + "/root/").c_str(), &fs) == 0) {
        const uint64_t bsize = static_cast<uint64_t>(fs.f_bsize);
        u.disk_total_bytes = static_cast<uint64_t>(fs.f_blocks) * bsize;
        u.disk_used_bytes = static_cast<uint64_t>(fs.f_blocks - fs.f_bfree) * bsize;
      }
    }
    return u;
  }

 private:
  Result<void> ApplyLimits(const Limits& limits) override {
    // The creation plan with other values; only the files of our own cgroup
    // dirs are written (the parents' controller switches are already on).
    CgroupPlan plan = PlanSandboxCgroup(layout_, id_, limits, cgroup_parent_);
    for (const auto& w : plan.writes) {
      bool ours = false;
      for (const auto& d : plan.dirs) ours |= StartsWith(w.file, d + "/");
      if (!ours || (w.optional && !PathExists(w.file))) continue;
      auto r = WriteFile(w.file, w.value);
      if (!r.ok() && !w.optional) return r.error().Wrap("set limits of " + id_);
    }
    // Unlimited CPU is no write in the plan: lift a quota set before.
    if (limits.cpus <= 0) {
      for (const auto& d : plan.dirs) {
        if (PathExists(d + "/cpu.max")) (void)WriteFile(d + "/cpu.max", "max");
        if (PathExists(d + "/cpu.cfs_quota_us")) (void)WriteFile(d + "/cpu.cfs_quota_us", "-1");
      }
    }
    return Ok();
  }
};

}  // namespace

Result<std::unique_ptr<NsDriver>> NsDriver::Open(NsDriverOptions opts, ImageStore* store) {
  if (::geteuid() != 0) {
    return Fail("ns driver", "uid " + std::to_string(::geteuid()),
                "needs root (it maps a uid range and manages cgroups); run as root");
  }
  if (!PathExists(opts.agent_path)) {
    return Fail("ns driver", opts.agent_path,
                "warmbox-agent not found (build it, or set WARMBOX_AGENT)");
  }
  WB_RETURN_IF_ERROR(MkdirAll(opts.state_dir, 0755));
  // The sandbox's uid range must be able to walk to the image and scratch
  // dirs: state dirs we own are made searchable (not readable) by others.
  WB_RETURN_IF_ERROR(MakeWalkableDirs({opts.state_dir, SandboxesDir(opts.state_dir)}));
  // ...and every directory above it must let them through.
  for (size_t pos = opts.state_dir.find('/', 1); pos != std::string::npos;
       pos = opts.state_dir.find('/', pos + 1)) {
    std::string up = opts.state_dir.substr(0, pos);
    struct stat st;
    if (::stat(up.c_str(), &st) == 0 && !(st.st_mode & S_IXOTH)) {
      return Fail("state dir", opts.state_dir,
                  "the sandboxes' uid range cannot reach it: " + up +
                      " is not searchable by others (chmod o+x it, or choose another --state-dir)");
    }
  }
  WB_RETURN_IF_ERROR(CheckUidSlots(opts.uid_base, opts.uid_slots));
  auto drv = std::unique_ptr<NsDriver>(new NsDriver());
  drv->idmaps_ = std::make_shared<IdmapUsernsCache>(opts.agent_path, opts.uid_base);
  drv->opts_ = std::move(opts);
  drv->store_ = store;
  drv->layout_ = std::make_shared<CgroupLayoutHolder>();
  drv->net_slots_ = std::make_shared<NetSlots>();
  // Leftovers of crashed warmbox processes go first.
  drv->layout_->layout = WB_TRY(PrepareSandboxHost(drv->opts_.state_dir, drv->opts_.cgroup_parent));
  return drv;
}

namespace {

// What AttachNetwork needs, the same at Create and Adopt.
void SetNetworkContext(NsSandbox& sb, const NsDriverOptions& o, uint32_t uid_base,
                       std::shared_ptr<NsDriver::NetSlots> slots) {
  sb.net_host_ = o.net;
  sb.uid_base_ = uid_base;
  // The slirp4netns group ids sit just above every sandbox range (slot 0..uid_slots).
  sb.net_gid_base_ = o.net_gid_base ? o.net_gid_base : SlotBase(o.uid_base, o.uid_slots + 1);
  sb.net_host_.helper_gid_first = sb.net_gid_base_;
  sb.net_host_.helper_gid_last = sb.net_gid_base_ + NsDriver::NetSlots::kSlots - 1;
  sb.net_slots_ = std::move(slots);
  if (o.spare_network) {
    sb.OnNetworkGone([slots = sb.net_slots_, host = sb.net_host_, base = sb.net_gid_base_,
                      state = o.state_dir](const NetworkSpec& spec) {
      MakeSpareNetwork(slots, host, base, state, spec);
    });
  }
}

}  // namespace

NsDriver::~NsDriver() {
  if (!net_slots_) return;
  // Its spare network goes (and none is made after), then the nft table its
  // sandboxes shared (kept between them).
  NsDriver::NetSlots::Spare spare;
  {
    std::lock_guard<std::mutex> lock(net_slots_->mu);
    net_slots_->open = false;
    spare = std::exchange(net_slots_->spare, {});
  }
  DropSpare(std::move(spare));
  ReleaseNetTable(opts_.net);
}

Result<std::unique_ptr<Sandbox>> NsDriver::Adopt(const AdoptSpec& spec) {
  auto sb = std::make_unique<NsSandbox>();
  sb->image_ = WB_TRY(store_->Get(spec.image));
  sb->layout_ = layout_->layout;
  sb->cgroup_parent_ = opts_.cgroup_parent;
  WB_RETURN_IF_ERROR(sb->AdoptHome(spec));
  // Its uid slot stays its own (recorded in its dir; none: shared mode).
  uint32_t uid_slot = 0;
  if (PathExists(spec.dir + "/uid_slot")) {
    auto slot = AdoptUidSlot(opts_.state_dir, sb->id_, spec.dir);
    if (!slot.ok()) {
      sb->Abandon();  // not taken over: left as it was
      return slot.error();
    }
    uid_slot = *slot;
    sb->release_hook_ = [state = opts_.state_dir, slot = *slot, id = sb->id_] {
      return ReleaseUidSlot(state, slot, id);
    };
  }
  // What AttachNetwork needs, as at Create (the new daemon attaches the
  // recorded network again).
  SetNetworkContext(*sb, opts_, SlotBase(opts_.uid_base, uid_slot), net_slots_);
  spdlog::debug("{}: adopted (pid {})", sb->id_, spec.pid);
  return std::unique_ptr<Sandbox>(std::move(sb));
}

Result<std::unique_ptr<Sandbox>> NsDriver::Create(const SandboxSpec& spec) {
  auto sb = std::make_unique<NsSandbox>();
  sb->image_ = WB_TRY(store_->Get(spec.image));
  WB_RETURN_IF_ERROR(sb->AssignId(opts_.state_dir));
  sb->layout_ = layout_->layout;
  sb->cgroup_parent_ = opts_.cgroup_parent;
  WB_RETURN_IF_ERROR(sb->MakeHome(
      0711, PlanSandboxCgroup(layout_->layout, sb->id_, spec.limits, opts_.cgroup_parent)));
  // From here on the sandbox's destructor removes whatever exists.
  // The sandbox's own uid range (uid_slots.h), given back by Destroy.
  uint32_t slot = 0;
  if (opts_.uid_slots > 0) {
    slot = WB_TRY(ClaimUidSlot(opts_.state_dir, opts_.uid_slots, sb->id_, sb->dir_));
    sb->release_hook_ = [state = opts_.state_dir, slot, id = sb->id_] {
      return ReleaseUidSlot(state, slot, id);
    };
  }
  const uint32_t base = SlotBase(opts_.uid_base, slot);
  SetNetworkContext(*sb, opts_, base, net_slots_);
  // Egress: the sandbox's nft transaction and resolver start now, its
  // network helper once the agent is cloned; all are awaited once the agent
  // is ready, so the network comes up while the sandbox boots.
  const bool egress = spec.network.mode != NetworkMode::kNone;
  if (egress) {
    if (auto r = sb->BeginNetwork(spec.network); !r.ok()) {
      return r.error().Wrap("create sandbox with --network egress");
    }
  }
  const std::string scratch = sb->dir_ + "/scratch";
  if (::mkdir(scratch.c_str(), 0700) != 0) return Errno("mkdir", scratch);
  if (::chown(scratch.c_str(), base, base) != 0) return Errno("chown", scratch);
  spdlog::debug("{}: dir ready", sb->id_);

  UniqueFd listener = WB_TRY(ListenUnix(sb->dir_ + "/agent.sock"));
  Pipe errpipe = WB_TRY(MakePipe());

  std::string lower;
  for (const auto& l : sb->image_.lower_dirs) lower += (lower.empty() ? "" : ":") + l;
  // A sandbox on its own slot sees the layers (owned by slot 0's range)
  // through idmapped mounts onto its range, handed to the agent as fds 4...
  std::vector<UniqueFd> layer_fds;
  if (slot != 0) {
    if (sb->image_.lower_dirs.size() > 59) {
      return Fail(ErrorCode::kInvalidArgument, "create sandbox", spec.image,
                  std::to_string(sb->image_.lower_dirs.size()) +
                      " layers: at most 59 fit a sandbox with its own uid range");
    }
    const int userns = WB_TRY(idmaps_->Get(slot));
    for (const auto& l : sb->image_.lower_dirs) {
      layer_fds.push_back(WB_TRY(IdmappedClone(l, userns)));
    }
  }
  // mount(2) takes at most a page of options (lowerdir=...,upperdir=...).
  if (layer_fds.empty() && lower.size() > 3800) {
    return Fail(
        "create sandbox", spec.image,
        std::to_string(sb->image_.lower_dirs.size()) +
            " layers do not fit in one overlay mount's options (a page); use a shorter --state-dir "
            "or an image with fewer layers");
  }
  SpawnOptions o;
  o.path = opts_.agent_path;
  AgentArgs args;
  args.listen_fd = 3;
  args.scratch = scratch;
  args.lower = lower;
  for (size_t i = 0; i < layer_fds.size(); ++i) args.lower_fds.push_back(4 + static_cast<int>(i));
  args.tmpfs_size = spec.limits.disk_bytes;
  args.hostname = sb->id_;
  args.seccomp = spec.security.seccomp;
  args.nofile = spec.security.nofile;
  o.argv = args.Argv();
  // The cgroup namespace is made by the agent once it sits in all its cgroups.
  o.clone_flags =
      CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  o.fds = {{listener.get(), 3}, {errpipe.write.get(), 2}};
  for (size_t i = 0; i < layer_fds.size(); ++i) {
    o.fds.emplace_back(layer_fds[i].get(), 4 + static_cast<int>(i));
  }
  if (slot != 0) {
    // The slot's root creates (owns) the user namespace, so the kernel
    // charges the sandbox's inotify, mqueue, namespace and process counts to
    // it, not to host root whom every sandbox would share (kernel/ucount.c).
    o.userns_owner = base;
  }
  // The agent is born in its cgroups: the cgroup2 one by CLONE_INTO_CGROUP,
  // the v1 ones (limits, on hybrid hosts) by this thread sitting in them for
  // the clone. Moving it there after the clone (writing its pid to
  // cgroup.procs) takes the kernel's global threadgroup lock, which waits
  // for an RCU grace period whenever no other move ran just before: about
  // 8 ms of a create that takes 4 (bench/net_bench.cc, docs/architecture.md).
  o.cgroup_fd = sb->cgroup_.clone_fd();
  Cgroup::CloneMoves moves = WB_TRY(sb->cgroup_.OpenCloneMoves());
  for (const auto& fd : moves.in) o.clone_in_tasks_fds.push_back(fd.get());
  for (const auto& fd : moves.out) o.clone_out_tasks_fds.push_back(fd.get());
  o.pdeath_signal = SIGKILL;  // the sandbox dies with its host process
  o.hold_until_released = true;
  o.become_userns_root = true;
  sb->process_ = WB_TRY(ChildProcess::Spawn(o));
  spdlog::debug("{}: cloned", sb->id_);
  // Its netns exists from the clone on, held before exec: slirp4netns
  // configures it while the id maps, cgroups and the agent's own start-up
  // happen (host root may enter it: the netns's user namespace is a
  // descendant of the host's).
  if (egress) {
    if (auto r = sb->net_->StartHelper(sb->process_.pid()); !r.ok()) {
      return r.error().Wrap("create sandbox with --network egress");
    }
  }
  listener.reset();  // the agent's copy is the only one: connects fail once it dies
  sb->cgroup_.CloseCloneFd();
  moves = {};
  errpipe.write.reset();
  layer_fds.clear();  // the agent's copies are the ones it attaches

  // The child waits until its uid/gid maps are in place.
  // Writing the maps as host root allows a 65536-id range and setgroups.
  const std::string proc = "/proc/" + std::to_string(sb->process_.pid());
  const std::string map = "0 " + std::to_string(base) + " " + std::to_string(kUidCount) + "\n";
  WB_RETURN_IF_ERROR(WriteFile(proc + "/uid_map", map));
  WB_RETURN_IF_ERROR(WriteFile(proc + "/gid_map", map));
  // The OOM killer should take the command that ran out of memory, not the
  // agent (its commands reset theirs to 0 before they exec). Best effort: it
  // needs CAP_SYS_RESOURCE, which some hosts (containers) do not grant.
  if (auto r = WriteFile(proc + "/oom_score_adj", "-998"); !r.ok()) {
    spdlog::debug("{}: {}", sb->id_, r.error().ToString());
  }
  spdlog::debug("{}: id maps written", sb->id_);
  WB_RETURN_IF_ERROR(sb->process_.Release());
  spdlog::debug("{}: agent exec'd", sb->id_);

  auto ready = WaitAgentReady(sb->endpoint(), opts_.ready_attempt_ms, opts_.ready_total_ms);
  if (!ready.ok()) {
    // Say why: the agent's own words and its exit status, when it died.
    (void)SetNonBlocking(errpipe.read.get());
    char buf[4096];
    ssize_t n = ::read(errpipe.read.get(), buf, sizeof buf);
    std::string words = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!words.empty() && words.back() == '\n') words.pop_back();
    std::string status;
    pollfd p{sb->process_.pidfd(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) {
      auto st = sb->process_.Wait();
      if (st.ok()) status = "agent " + st->Describe();
    }
    Error e = ready.error();
    if (!status.empty()) e.detail += "; " + status;
    if (!words.empty()) e.detail += ": " + words;
    return e.Wrap("create sandbox from image " + spec.image);
  }
  if (egress) {
    if (auto net = sb->FinishNetwork(); !net.ok()) {
      return net.error().Wrap("create sandbox with --network egress");
    }
  }
  // A creation at a lower priority (the pool's refills) hands the agent,
  // and so every command it starts, back the normal priority.
  sb->RestoreNormalPriority();
  spdlog::debug("{}: ready", sb->id_);
  return std::unique_ptr<Sandbox>(std::move(sb));
}

}  // namespace wb
