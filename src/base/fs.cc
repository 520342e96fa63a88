#include "base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "base/fd.h"

namespace wb {

Result<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Errno("open", path);
  auto r = ReadAll(fd.get());
  if (!r.ok()) return r.error().Wrap("read " + path);
  return r;
}

Result<void> WriteFile(const std::string& path, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Errno("open", path);
  ssize_t n = ::write(fd.get(), data.data(), data.size());
  if (n < 0) return Errno("write", path + " <- " + data);
  if (static_cast<size_t>(n) != data.size()) return Fail("write", path, "short write");
  return Ok();
}

Result<void> WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string suffix = WB_TRY(RandomHex(4));
  std::string tmp = path + ".tmp-" + suffix;
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (!fd) return Errno("open", tmp);
    auto w = WriteAll(fd.get(), data);
    if (!w.ok()) {
      ::unlink(tmp.c_str());
      return w.error();
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = Errno("rename", tmp + " -> " + path);
    ::unlink(tmp.c_str());
    return e;
  }
  return Ok();
}

Result<void> MkdirAll(const std::string& path, mode_t mode) {
  if (path.empty()) return Fail("mkdir", path, "empty path");
  for (size_t pos = 1;; ++pos) {
    pos = path.find('/', pos);
    std::string part = path.substr(0, pos);
    if (::mkdir(part.c_str(), mode) != 0 && errno != EEXIST) return Errno("mkdir", part);
    if (pos == std::string::npos) break;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Errno("stat", path);
  if (!S_ISDIR(st.st_mode)) return Fail("mkdir", path, "exists and is not a directory");
  return Ok();
}

namespace {

// Removes the contents of the directory open at dfd; dev is the device of the
// top directory, so a mount point below it is refused instead of emptied.
Result<void> RemoveContents(int dfd, const std::string& path, dev_t dev) {
  int dup = ::fcntl(dfd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return Errno("fcntl(F_DUPFD_CLOEXEC)", path);
  DIR* dir = ::fdopendir(dup);
  if (!dir) {
    ::close(dup);
    return Errno("fdopendir", path);
  }
  Result<void> result = Ok();
  while (dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string child = path + "/" + name;
    struct stat st;
    if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      result = Errno("fstatat", child);
      break;
    }
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != dev) {
        result = Fail("remove", child, "is a mount point; refusing to descend");
        break;
      }
      UniqueFd sub(::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) {
        result = Errno("openat", child);
        break;
      }
      result = RemoveContents(sub.get(), child, dev);
      if (!result.ok()) break;
      if (::unlinkat(dfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        result = Errno("rmdir", child);
        break;
      }
    } else if (::unlinkat(dfd, name.c_str(), 0) != 0 && errno != ENOENT) {
      result = Errno("unlink", child);
      break;
    }
  }
  ::closedir(dir);
  return result;
}

}  // namespace

Result<void> RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return Errno("lstat", path);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("unlink", path);
    return Ok();
  }
  {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Errno("open", path);
    WB_RETURN_IF_ERROR(RemoveContents(fd.get(), path, st.st_dev));
  }
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return Errno("rmdir", path);
  return Ok();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Result<std::string> RandomHex(size_t n) {
  std::string bytes(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::getrandom(bytes.data() + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno("getrandom", std::to_string(n));
    }
    got += static_cast<size_t>(r);
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

Result<UniqueFd> LockPath(const std::string& path, bool exclusive) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Errno("open", path);
  while (::flock(fd.get(), exclusive ? LOCK_EX : LOCK_SH) != 0) {
    if (errno != EINTR) return Errno("flock", path);
  }
  return fd;
}

Result<std::string> SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n < 0) return Errno("readlink", "/proc/self/exe");
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

}  // namespace wb
