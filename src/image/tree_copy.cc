#include "image/tree_copy.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <map>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/fs.h"

// A small tree copier instead of libarchive: warmbox is a static binary and
// Debian ships no static libacl, which libarchive's disk code needs. OCI layer
// unpacking (tar) will bring libarchive in a separate process.

namespace wb {
namespace {

constexpr uint32_t kRange = 65536;

class TreeCopier {
 public:
  TreeCopier(uint32_t base) : base_(base) {}

  // Copies the entry named `name` in src_dir (an open dir) into dst_dir.
  Result<void> CopyDir(int src_dir, int dst_dir, const std::string& src_path,
                       const std::string& dst_path) {
    int dup = ::fcntl(src_dir, F_DUPFD_CLOEXEC, 3);
    if (dup < 0) return Errno("fcntl(F_DUPFD_CLOEXEC)", src_path);
    DIR* d = ::fdopendir(dup);
    if (!d) {
      ::close(dup);
      return Errno("fdopendir", src_path);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    ::closedir(d);
    for (const auto& n : names) {
      WB_RETURN_IF_ERROR(CopyEntry(src_dir, dst_dir, n, src_path + "/" + n, dst_path + "/" + n));
    }
    return Ok();
  }

  Result<void> CopyEntry(int src_dir, int dst_dir, const std::string& name,
                         const std::string& src_path, const std::string& dst_path) {
    struct stat st;
    if (::fstatat(src_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return Errno("lstat", src_path);
    if (st.st_uid >= kRange || st.st_gid >= kRange) {
      return Fail("copy tree", src_path,
                  "owner " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) +
                      " is outside the sandbox's 65536 ids");
    }
    const uid_t uid = base_ + st.st_uid;
    const gid_t gid = base_ + st.st_gid;
    const char* n = name.c_str();
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != root_dev_) return Ok();  // a mount point below the tree: not ours to copy
      if (::mkdirat(dst_dir, n, 0700) != 0) return Errno("mkdir", dst_path);
      UniqueFd s(::openat(src_dir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!s) return Errno("open", src_path);
      UniqueFd d(::openat(dst_dir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!d) return Errno("open", dst_path);
      WB_RETURN_IF_ERROR(CopyDir(s.get(), d.get(), src_path, dst_path));
      WB_RETURN_IF_ERROR(CopyXattrs(s.get(), d.get(), src_path));
      return Finish(d.get(), dst_path, st, uid, gid);
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t len = ::readlinkat(src_dir, n, target.data(), target.size());
      if (len < 0) return Errno("readlink", src_path);
      target.resize(static_cast<size_t>(len));
      if (::symlinkat(target.c_str(), dst_dir, n) != 0) return Errno("symlink", dst_path);
      if (::fchownat(dst_dir, n, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        return Errno("lchown", dst_path);
      timespec ts[2] = {st.st_atim, st.st_mtim};
      if (::utimensat(dst_dir, n, ts, AT_SYMLINK_NOFOLLOW) != 0)
        return Errno("utimensat", dst_path);
      return Ok();
    }
    if (!S_ISREG(st.st_mode)) return Ok();  // devices, fifos, sockets: unusable in a user namespace
    if (st.st_nlink > 1) {
      auto it = links_.find({st.st_dev, st.st_ino});
      if (it != links_.end()) {
        if (::linkat(AT_FDCWD, it->second.c_str(), dst_dir, n, 0) != 0)
          return Errno("link", dst_path);
        return Ok();
      }
      links_[{st.st_dev, st.st_ino}] = dst_path;
    }
    UniqueFd s(::openat(src_dir, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!s) return Errno("open", src_path);
    UniqueFd d(::openat(dst_dir, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!d) return Errno("create", dst_path);
    off_t left = st.st_size;
    while (left > 0) {
      ssize_t c =
          ::copy_file_range(s.get(), nullptr, d.get(), nullptr, static_cast<size_t>(left), 0);
      if (c < 0) {
        if (errno == EINTR) continue;
        return Errno("copy_file_range", src_path);
      }
      if (c == 0) break;  // the file shrank while we copied
      left -= c;
    }
    WB_RETURN_IF_ERROR(CopyXattrs(s.get(), d.get(), src_path));
    return Finish(d.get(), dst_path, st, uid, gid);
  }

  dev_t root_dev_ = 0;

 private:
  // Owner first, then mode (chown clears set-id bits), then times.
  Result<void> Finish(int fd, const std::string& path, const struct stat& st, uid_t uid,
                      gid_t gid) {
    if (::fchown(fd, uid, gid) != 0) return Errno("chown", path);
    if (::fchmod(fd, st.st_mode & 07777) != 0) return Errno("chmod", path);
    timespec ts[2] = {st.st_atim, st.st_mtim};
    if (::futimens(fd, ts) != 0) return Errno("futimens", path);
    return Ok();
  }

  // user.* xattrs only: security.* and trusted.* name host-side privileges
  // that mean nothing (or too much) inside a user namespace.
  Result<void> CopyXattrs(int src, int dst, const std::string& path) {
    ssize_t n = ::flistxattr(src, nullptr, 0);
    if (n <= 0) return Ok();
    std::string names(static_cast<size_t>(n), '\0');
    n = ::flistxattr(src, names.data(), names.size());
    if (n < 0) return Ok();
    for (size_t pos = 0; pos < static_cast<size_t>(n);) {
      std::string key = names.c_str() + pos;
      pos += key.size() + 1;
      if (key.rfind("user.", 0) != 0) continue;
      ssize_t vlen = ::fgetxattr(src, key.c_str(), nullptr, 0);
      if (vlen < 0) continue;
      std::string value(static_cast<size_t>(vlen), '\0');
      vlen = ::fgetxattr(src, key.c_str(), value.data(), value.size());
      if (vlen < 0) continue;
      if (::fsetxattr(dst, key.c_str(), value.data(), static_cast<size_t>(vlen), 0) != 0 &&
          errno != ENOTSUP) {
        return Errno("fsetxattr", path + " " + key);
      }
    }
    return Ok();
  }

  uint32_t base_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace

Result<void> CopyTreeShifted(const std::string& src, const std::string& dst, uint32_t uid_base) {
  if (PathExists(dst)) return Fail("copy tree", dst, "destination exists");
  UniqueFd s(::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!s) return Errno("open", src);
  struct stat st;
  if (::fstat(s.get(), &st) != 0) return Errno("stat", src);
  if (st.st_uid >= kRange || st.st_gid >= kRange) {
    return Fail("copy tree", src,
                "owner " + std::to_string(st.st_uid) + " is outside the sandbox's 65536 ids");
  }
  if (::mkdir(dst.c_str(), 0700) != 0) return Errno("mkdir", dst);
  UniqueFd d(::open(dst.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) return Errno("open", dst);
  TreeCopier copier(uid_base);
  copier.root_dev_ = st.st_dev;
  WB_RETURN_IF_ERROR(copier.CopyDir(s.get(), d.get(), src, dst));
  if (::fchown(d.get(), uid_base + st.st_uid, uid_base + st.st_gid) != 0)
    return Errno("chown", dst);
  if (::fchmod(d.get(), st.st_mode & 07777) != 0) return Errno("chmod", dst);
  return Ok();
}

namespace {
thread_local uint32_t g_shift_base;
thread_local int g_shift_errno;
thread_local const char* g_shift_path;

int ShiftOne(const char* path, const struct stat* st, int, FTW*) {
  if (::lchown(path, g_shift_base + st->st_uid, g_shift_base + st->st_gid) != 0) {
    g_shift_errno = errno;
    g_shift_path = path;
    return 1;
  }
  return 0;
}
}  // namespace

Result<void> ShiftOwnership(const std::string& root, uint32_t uid_base) {
  g_shift_base = uid_base;
  g_shift_errno = 0;
  int r = ::nftw(root.c_str(), ShiftOne, 64, FTW_PHYS | FTW_MOUNT);
  if (r != 0) {
    if (g_shift_errno)
      return ErrnoValue(g_shift_errno, "lchown", g_shift_path ? g_shift_path : root);
    return Errno("nftw", root);
  }
  return Ok();
}

}  // namespace wb
