#include "image/default_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "image/tree_copy.h"

namespace wb {
namespace {

Result<void> WriteNew(const std::string& path, const std::string& data, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return Errno("create", path);
  return WriteAll(fd.get(), data);
}

Result<std::string> ListApplets() {
  Pipe out = WB_TRY(MakePipe());
  SpawnOptions o;
  o.path = kHostBusybox;
  o.argv = {"busybox", "--list-full"};
  o.fds = {{out.write.get(), 1}};
  ChildProcess child = WB_TRY(ChildProcess::Spawn(o));
  out.write.reset();
  std::string list = WB_TRY(ReadAll(out.read.get()));
  ExitStatus st = WB_TRY(child.Wait());
  if (st.code != 0 || st.signal)
    return Fail(std::string(kHostBusybox) + " --list-full", "", st.Describe());
  return list;
}

Result<void> CopyFile(const std::string& from, const std::string& to, mode_t mode) {
  std::string data = WB_TRY(ReadFile(from));
  return WriteNew(to, data, mode);
}

}  // namespace

Result<std::string> BuildDefaultImage(const std::string& dir, uint32_t uid_base) {
  struct stat st;
  if (::stat(kHostBusybox, &st) != 0) {
    return Fail(
        "default image", kHostBusybox,
        "the host's static busybox is missing; run scripts/setup (apt-get install busybox-static)");
  }
  std::string applets = WB_TRY(ListApplets());
  if (PathExists(dir)) return Fail("default image", dir, "exists");
  WB_RETURN_IF_ERROR(MkdirAll(dir, 0755));
  for (const char* d : {"bin", "sbin", "usr/bin", "usr/sbin", "etc", "home/user", "dev", "proc",
                        "sys", "run", "var/tmp"}) {
    WB_RETURN_IF_ERROR(MkdirAll(dir + "/" + d, 0755));
  }
  for (const char* d : {"/tmp", "/var/tmp"}) {
    WB_RETURN_IF_ERROR(MkdirAll(dir + d, 01777));
    if (::chmod((dir + d).c_str(), 01777) != 0) return Errno("chmod", dir + d);
  }
  WB_RETURN_IF_ERROR(MkdirAll(dir + "/root", 0700));
  WB_RETURN_IF_ERROR(CopyFile(kHostBusybox, dir + "/bin/busybox", 0755));
  for (const auto& line : Split(applets, '\n')) {
    std::string_view rel = Trim(line);
    if (rel.empty() || rel == "bin/busybox" || rel.find("..") != std::string_view::npos) continue;
    std::string link = dir + "/" + std::string(rel);
    if (::symlink("/bin/busybox", link.c_str()) != 0 && errno != EEXIST)
      return Errno("symlink", link);
  }
  WB_RETURN_IF_ERROR(WriteNew(dir + "/etc/passwd",
                              "root:x:0:0:root:/root:/bin/sh\n"
                              "user:x:1000:1000:user:/home/user:/bin/sh\n"
                              "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                              0644));
  WB_RETURN_IF_ERROR(WriteNew(dir + "/etc/group",
                              "root:x:0:\n"
                              "tty:x:5:\n"
                              "user:x:1000:\n"
                              "nogroup:x:65534:\n",
                              0644));
  WB_RETURN_IF_ERROR(WriteNew(dir + "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0644));
  // Everything above belongs to root inside; /home/user to user.
  WB_RETURN_IF_ERROR(ShiftOwnership(dir, uid_base));
  std::string home = dir + "/home/user";
  if (::lchown(home.c_str(), uid_base + 1000, uid_base + 1000) != 0) return Errno("lchown", home);
  return std::string("busybox-static (") + kHostBusybox + ")";
}

}  // namespace wb
