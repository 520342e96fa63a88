#include "sandbox/vm/layer_disk.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"

namespace wb::vm {
namespace {

constexpr const char* kMkfsErofs = "/usr/bin/mkfs.erofs";
constexpr uint32_t kIdCount = 65536;

}  // namespace

Result<std::string> LayerDiskName(const std::string& layer_dir) {
  struct stat st;
  if (::stat(layer_dir.c_str(), &st) != 0) return Errno("stat", layer_dir);
  if (!S_ISDIR(st.st_mode)) return Fail("layer disk", layer_dir, "not a directory");
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](std::string_view d) {
    for (unsigned char c : d) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
  };
  mix(layer_dir);
  mix(std::to_string(st.st_ino) + ":" + std::to_string(st.st_ctim.tv_sec) + "." +
      std::to_string(st.st_ctim.tv_nsec));
  char name[40];
  std::snprintf(name, sizeof name, "layer-%016llx.erofs", static_cast<unsigned long long>(h));
  return std::string(name);
}

Result<std::string> EnsureLayerDisk(const std::string& cache_dir, const std::string& layer_dir,
                                    uint32_t uid_base) {
  const std::string path = cache_dir + "/" + WB_TRY(LayerDiskName(layer_dir));
  if (PathExists(path)) return path;
  if (!PathExists(kMkfsErofs)) {
    return Fail("layer disk", kMkfsErofs, "not installed (scripts/setup installs erofs-utils)");
  }
  WB_RETURN_IF_ERROR(MkdirAll(cache_dir, 0755));
  const std::string tmp = path + ".tmp-" + WB_TRY(RandomHex(4));
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return Errno("create", tmp);
    // mkfs.erofs writes it as root of the user namespace, i.e. as uid_base.
    if (uid_base && ::fchown(fd.get(), uid_base, uid_base) != 0) {
      Error e = Errno("fchown", tmp);
      ::unlink(tmp.c_str());
      return e;
    }
  }
  auto fail = [&](Error e) -> Error {
    ::unlink(tmp.c_str());
    return e.Wrap("build the disk of layer " + layer_dir);
  };
  auto errpipe = MakePipe();
  if (!errpipe.ok()) return fail(errpipe.error());
  SpawnOptions o;
  o.path = kMkfsErofs;
  // -T0: no build time in the image; --quiet: stderr holds only errors.
  o.argv = {"mkfs.erofs", "--quiet", "-T0", tmp, layer_dir};
  o.fds = {{errpipe->write.get(), 2}};
  // A helper of one creation, not part of any VM: it dies with its process
  // (unlike the daemon's QEMUs, VmDriverOptions::outlive_owner), and the
  // temp file it leaves is never renamed into the cache.
  o.pdeath_signal = SIGKILL;
  if (uid_base) {
    o.clone_flags = CLONE_NEWUSER;
    o.hold_until_released = true;
    o.become_userns_root = true;
  }
  auto child = ChildProcess::Spawn(o);
  if (!child.ok()) return fail(child.error());
  errpipe->write.reset();
  if (uid_base) {
    // Maps written by host root (the child waits for them): the whole range,
    // so stat() in the namespace shows the image's own uids and gids.
    const std::string proc = "/proc/" + std::to_string(child->pid());
    const std::string map = "0 " + std::to_string(uid_base) + " " + std::to_string(kIdCount) + "\n";
    for (const char* f : {"/uid_map", "/gid_map"}) {
      if (auto r = WriteFile(proc + f, map); !r.ok()) return fail(r.error());
    }
    if (auto r = child->Release(); !r.ok()) return fail(r.error());
  }
  auto words = ReadAll(errpipe->read.get());
  auto st = child->Wait();
  if (!st.ok()) return fail(st.error());
  if (st->code != 0 || st->signal) {
    std::string w = words.ok() ? *words : "";
    while (!w.empty() && w.back() == '\n') w.pop_back();
    return fail(Fail("mkfs.erofs", layer_dir, st->Describe() + (w.empty() ? "" : ": " + w)));
  }
  if (uid_base && ::chown(tmp.c_str(), 0, 0) != 0) return fail(Errno("chown", tmp));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(Errno("rename", tmp));
  return path;
}

}  // namespace wb::vm
