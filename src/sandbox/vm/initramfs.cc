#include "sandbox/vm/initramfs.h"

#include <sys/stat.h>

#include <cstdio>

#include "base/fs.h"

namespace wb::vm {
namespace {

void Pad4(std::string& out) {
  while (out.size() % 4) out.push_back('\0');
}

uint64_t Fnv1a(uint64_t h, std::string_view data) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

std::string CpioNewc(const std::vector<CpioEntry>& entries) {
  std::string out;
  uint32_t ino = 1;
  auto put = [&](const std::string& name, uint32_t mode, const std::string& data, uint32_t maj,
                 uint32_t min) {
    char hdr[111];
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    // rdevmajor, rdevminor, namesize (with its NUL), check
    std::snprintf(hdr, sizeof hdr, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
                  ino++, mode, 0u, 0u, S_ISDIR(mode) ? 2u : 1u, 0u,
                  static_cast<uint32_t>(data.size()), 0u, 0u, maj, min,
                  static_cast<uint32_t>(name.size() + 1), 0u);
    out.append(hdr, 110);
    out += name;
    out.push_back('\0');
    Pad4(out);
    out += data;
    Pad4(out);
  };
  for (const auto& e : entries)
    put(e.name, e.mode, S_ISREG(e.mode) ? e.data : "", e.rdev_major, e.rdev_minor);
  put("TRAILER!!!", 0, "", 0, 0);
  return out;
}

Result<std::vector<CpioEntry>> InitramfsEntries(const std::string& agent_path,
                                                const GuestKernel& k) {
  std::vector<CpioEntry> e;
  for (const char* d : {"dev", "proc", "sys", "lib", "lib/modules"})
    e.push_back({d, S_IFDIR | 0755, "", 0, 0});
  // The kernel opens /dev/console for init's stdio before anything is
  // mounted: it must exist in the archive.
  e.push_back({"dev/console", S_IFCHR | 0600, "", 5, 1});
  e.push_back({"init", S_IFREG | 0755, WB_TRY(ReadFile(agent_path)), 0, 0});
  int i = 0;
  for (const auto& m : k.modules) {
    std::string base = m.substr(m.rfind('/') + 1);
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "%02d-", i++);
    e.push_back(
        {"lib/modules/" + std::string(prefix) + base, S_IFREG | 0644, WB_TRY(ReadFile(m)), 0, 0});
  }
  return e;
}

Result<std::string> EnsureInitramfs(const std::string& cache_dir, const std::string& agent_path,
                                    const GuestKernel& k) {
  auto entries = WB_TRY(InitramfsEntries(agent_path, k));
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& e : entries) {
    h = Fnv1a(h, e.name);
    h = Fnv1a(h, e.data);
  }
  char name[40];
  std::snprintf(name, sizeof name, "/initrd-%016llx.cpio", static_cast<unsigned long long>(h));
  const std::string path = cache_dir + name;
  if (PathExists(path)) return path;
  WB_RETURN_IF_ERROR(MkdirAll(cache_dir, 0755));
  // Atomic: concurrent builders write the same bytes; the last rename wins.
  WB_RETURN_IF_ERROR(WriteFileAtomic(path, CpioNewc(entries), 0644));
  return path;
}

}  // namespace wb::vm
