// Snapshot templates (docs/architecture.md, "VM snapshot templates"): one
// template VM per key, booted once and saved; sandboxes are copy-on-write
// clones of it, each restored into a QEMU started ahead.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <tuple>
#include <utility>

#include "base/fs.h"
#include "base/log.h"
#include "proto/pool_proto.h"
#include "sandbox/vm/qmp.h"
#include "sandbox/vm/vm_driver.h"
#include "sandbox/vm/vm_sandbox.h"

namespace wb::vm {
namespace {

constexpr int kMigrateMs = 60000;

// "path:size:mtime" of a file: what the key says about an input.
std::string FileId(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return path + ":missing";
  return path + ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

const char* TemplateStateName(TemplateState s) {
  switch (s) {
    case TemplateState::kNone:
      return "none";
    case TemplateState::kBuilding:
      return "building";
    case TemplateState::kReady:
      return "ready";
    case TemplateState::kFailed:
      return "failed";
    case TemplateState::kFallback:
      return "fallback";
  }
  return "none";
}

std::string TemplateKeyText(const std::vector<std::string>& layer_dirs,
                            const std::string& kernel_id, const std::string& initrd_id,
                            const std::string& agent_id, uint32_t vcpus, uint64_t memory_mib,
                            const std::vector<std::string>& init_args, Accel accel) {
  std::string k = "warmbox-template-v1\n";
  for (const auto& l : layer_dirs) k += "layer " + l + "\n";
  k += "kernel " + kernel_id + "\ninitrd " + initrd_id + "\nagent " + agent_id + "\n";
  k += "vcpus " + std::to_string(vcpus) + "\nmemory_mib " + std::to_string(memory_mib) + "\n";
  k += "init";
  for (const auto& a : init_args) k += " " + a;
  k += std::string("\naccel ") + (accel == Accel::kKvm ? "kvm" : "tcg") + "\n";
  return k;
}

std::string TemplateKeyHash(const std::string& key_text) {
  // FNV-1a 64: a name, not a security boundary; the full key text is stored
  // beside the template and compared before use, so a collision is caught.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key_text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h));
  return b;
}

TemplateStatus VmDriver::template_status() const {
  std::lock_guard<std::mutex> l(tmpl_mu_);
  return tmpl_;
}

void VmDriver::AnnotateStat(proto::ImageStat& stat) const {
  if (!opts_.snapshot) return;
  const TemplateStatus t = template_status();
  stat.template_state = TemplateStateName(t.state);
  stat.clones = t.clones;
  stat.clone_failures = t.clone_failures;
  stat.template_failures = static_cast<uint64_t>(t.failures);
  stat.template_error = t.last_error;
}

void VmDriver::NoteTemplateFailure(const std::string& key, const Error& e) {
  std::lock_guard<std::mutex> l(tmpl_mu_);
  tmpl_.key = key;
  tmpl_.failures++;
  tmpl_.last_error = e.ToString();
  if (tmpl_.failures >= opts_.template_max_failures) {
    if (tmpl_.state != TemplateState::kFallback) {
      spdlog::warn("vm snapshot templates: {} failure(s), falling back to cold boots; last: {}",
                   tmpl_.failures, tmpl_.last_error);
    }
    tmpl_.state = TemplateState::kFallback;
  } else {
    tmpl_.state = TemplateState::kFailed;
  }
}

Result<std::unique_ptr<Sandbox>> VmDriver::CreateClone(const SandboxSpec& spec) {
  Image image = WB_TRY(store_->Get(spec.image));
  TemplatePaths t;
  // The key covers the guest agent's arguments as the boot passes them
  // (AgentArgs::KeyArgs: all but the hostname, which a clone is given).
  t.key_text =
      TemplateKeyText(image.lower_dirs, FileId(info_.kernel.vmlinux), FileId(info_.initrd),
                      FileId(opts_.agent_path), VcpusOf(spec.limits), MemoryMibOf(spec.limits),
                      GuestAgentArgs(spec, image.lower_dirs.size(), "").KeyArgs(), info_.accel);
  t.key = TemplateKeyHash(t.key_text);
  t.templates = VmDir(opts_.state_dir) + "/templates";
  t.dir = t.templates + "/" + t.key;
  t.state = t.dir + "/state";
  t.lock = t.templates + "/" + t.key + ".lock";
  t.ram = opts_.shm_dir + "/warmbox-tpl-" + t.key;
  std::tie(t.jail_uid, t.jail_gid) = JailIdsOf(opts_, image.uid_base);
  if (auto r = EnsureTemplate(spec, t); !r.ok()) {
    NoteTemplateFailure(t.key, r.error());
    spdlog::debug("vm template {}: {}", t.key, r.error().ToString());
    return r.error();
  }
  // A QEMU started ahead for this key (and these limits) saves its start-up;
  // any other is stale and goes.
  std::unique_ptr<Spawned> pre, stale;
  {
    std::lock_guard<std::mutex> l(tmpl_mu_);
    if (prestarted_ && prestarted_->key == t.key && prestarted_->pids == spec.limits.pids &&
        prestarted_->cpus == spec.limits.cpus && prestarted_->sb->process_.running()) {
      pollfd p{prestarted_->sb->process_.pidfd(), POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) pre = std::move(prestarted_);
    }
    stale = std::move(prestarted_);
  }
  stale.reset();  // destroyed outside the lock (QMP quit)
  Result<std::unique_ptr<Sandbox>> c = Fail("clone", t.key, "not started");
  if (!pre) {
    auto sp = Spawn(spec, Mode::kClone, &t);
    if (sp.ok())
      pre = std::move(*sp);
    else
      c = sp.error();
  }
  if (pre) c = Finish(spec, Mode::kClone, &t, std::move(pre));
  if (c.ok()) {
    // The next clone's QEMU starts now, while this one is handed out.
    auto next = Spawn(spec, Mode::kClone, &t);
    if (next.ok()) {
      (*next)->key = t.key;
      (*next)->pids = spec.limits.pids;
      (*next)->cpus = spec.limits.cpus;
      std::lock_guard<std::mutex> l(tmpl_mu_);
      stale = std::move(prestarted_);
      prestarted_ = std::move(*next);
    } else {
      spdlog::debug("pre-start of a clone QEMU: {}", next.error().ToString());
    }
  }
  stale.reset();
  if (!c.ok()) {
    // A template whose clones fail is not trusted again: removed, rebuilt on
    // the next creation (until the failures reach the fallback).
    {
      std::lock_guard<std::mutex> l(tmpl_mu_);
      tmpl_.clone_failures++;
    }
    NoteTemplateFailure(t.key, c.error());
    (void)RemoveTree(t.dir);
    ::unlink(t.ram.c_str());
    return c.error();
  }
  std::lock_guard<std::mutex> l(tmpl_mu_);
  tmpl_.clones++;
  return c;
}

Result<void> VmDriver::EnsureTemplate(const SandboxSpec& spec, const TemplatePaths& t) {
  std::lock_guard<std::mutex> build(build_mu_);
  auto valid = [&] {
    auto k = ReadFile(t.dir + "/key");
    struct stat st;
    return k.ok() && *k == t.key_text && PathExists(t.state) && ::stat(t.ram.c_str(), &st) == 0;
  };
  if (valid()) {
    std::lock_guard<std::mutex> l(tmpl_mu_);
    if (tmpl_.key != t.key || tmpl_.state != TemplateState::kReady) {
      tmpl_.key = t.key;
      tmpl_.state = TemplateState::kReady;
    }
    return Ok();
  }
  WB_RETURN_IF_ERROR(MkdirAll(t.templates, 0700));
  // Builds of one key are serialised across processes: the second waits and
  // then finds the first's template.
  UniqueFd lock(::open(t.lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return Errno("open", t.lock);
  if (::flock(lock.get(), LOCK_EX) != 0) return Errno("flock", t.lock);
  if (valid()) return Ok();
  {
    std::lock_guard<std::mutex> l(tmpl_mu_);
    tmpl_.key = t.key;
    tmpl_.state = TemplateState::kBuilding;
  }
  const int64_t t0 = NowUs();
  // Whatever a failed build left is not used: removed first.
  (void)RemoveTree(t.dir);
  ::unlink(t.ram.c_str());
  WB_RETURN_IF_ERROR(MkdirAll(t.dir, 0700));
  // Created here, 0600, before QEMU opens it: QEMU would create it 0644, and
  // the file is the template guest's whole memory. It belongs to QEMU's user
  // (jailed QEMU opens it by path; the clones' QEMUs, of the same user, open
  // it read-write too: QEMU 7.2 cannot map a read-only file privately). The
  // state file, which the template's QEMU writes through "cat" inside its
  // jail, likewise.
  const std::string tmp = t.state + ".tmp";
  for (const std::string* path : {&t.ram, &tmp}) {
    UniqueFd f(::open(path->c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!f) return Errno("create", *path);
    if (::fchown(f.get(), t.jail_uid, t.jail_gid) != 0) return Errno("fchown", *path);
  }
  auto vm = WB_TRY(Boot(spec, Mode::kTemplate, &t));
  auto* sb = static_cast<VmSandbox*>(vm.get());
  auto save = [&]() -> Result<void> {
    Qmp q = WB_TRY(Qmp::Connect(sb->dir_ + "/qmp.sock", opts_.ready_total_ms));
    // Paused first, so the RAM file is not written while the device state
    // is saved: the two must describe the same instant.
    WB_TRY(q.Execute("stop"));
    WB_TRY(q.Execute("migrate-set-capabilities",
                     {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}}));
    // The state file as the jail shows it (qemu_jail.h): tmp on the host.
    WB_TRY(q.Execute("migrate", {{"uri", std::string("exec:cat > ") + kJailState}}));
    WB_RETURN_IF_ERROR(q.WaitMigration(kMigrateMs));
    return Ok();
  };
  auto r = save();
  (void)vm->Destroy();  // QEMU quits; the RAM file stays (share=on: it is the file)
  if (!r.ok()) return Fail("build vm template", t.key, r.error().ToString());
  // Durable before it is named: a crash leaves state.tmp, which is never used.
  {
    UniqueFd f(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f || ::fsync(f.get()) != 0) return Errno("fsync", tmp);
  }
  WB_RETURN_IF_ERROR(WriteFileAtomic(t.dir + "/key", t.key_text, 0600));
  if (::rename(tmp.c_str(), t.state.c_str()) != 0) return Errno("rename", tmp);
  {
    UniqueFd d(::open(t.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d) (void)::fsync(d.get());
  }
  spdlog::info("vm template {} built in {} ms", t.key, Ms(static_cast<double>(NowUs() - t0)));
  // Templates of other keys are unused now (one key per driver): removed,
  // unless another process holds their lock (building or using them).
  if (DIR* d = ::opendir(t.templates.c_str())) {
    std::vector<std::string> others;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n[0] == '.' || n == t.key || n == t.key + ".lock" || n.size() < 16) continue;
      if (n.size() == 16) others.push_back(n);
    }
    ::closedir(d);
    for (const auto& k : others) {
      UniqueFd ol(
          ::open((t.templates + "/" + k + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
      if (!ol || ::flock(ol.get(), LOCK_EX | LOCK_NB) != 0) continue;
      (void)RemoveTree(t.templates + "/" + k);
      ::unlink((opts_.shm_dir + "/warmbox-tpl-" + k).c_str());
      ::unlink((t.templates + "/" + k + ".lock").c_str());
    }
  }
  std::lock_guard<std::mutex> l(tmpl_mu_);
  tmpl_.state = TemplateState::kReady;
  return Ok();
}

}  // namespace wb::vm
