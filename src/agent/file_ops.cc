#include "agent/file_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/fs.h"
#include "base/strings.h"

namespace wb::agent {

// --- identity -------------------------------------------------------------------

Result<FsIdentity> FsIdentity::Enter(const Credentials& cred) {
  FsIdentity id;
  id.uid_ = ::geteuid();
  id.gid_ = ::getegid();
  if (cred.uid == id.uid_ && cred.gid == id.gid_) return id;
  int n = ::getgroups(0, nullptr);
  if (n < 0) return Errno("getgroups", "");
  id.groups_.resize(static_cast<size_t>(n));
  if (n > 0 && ::getgroups(n, id.groups_.data()) < 0) return Errno("getgroups", "");
  // From here every change is undone by the destructor, whatever failed.
  id.active_ = true;
  // Groups first, uid last: setgroups and setfsgid need CAP_SETGID, which a
  // non-zero fsuid leaves in place; the fsuid switch is the one that drops
  // the filesystem capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN...)
  // from the effective set, so from then on the kernel checks the user's
  // permissions. setfsuid/setfsgid report nothing: a second call with an
  // invalid id returns the current one, which verifies the first.
  auto denied = [&](const char* call) {
    return Fail(ErrorCode::kPermissionDenied, call, std::to_string(cred.uid),
                "the agent cannot take the user's filesystem identity");
  };
  if (::setgroups(cred.groups.size(), cred.groups.data()) != 0) return denied("setgroups");
  ::setfsgid(cred.gid);
  if (static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) != cred.gid) return denied("setfsgid");
  ::setfsuid(cred.uid);
  if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != cred.uid) return denied("setfsuid");
  return id;
}

FsIdentity::FsIdentity(FsIdentity&& o) noexcept
    : active_(std::exchange(o.active_, false)),
      uid_(o.uid_),
      gid_(o.gid_),
      groups_(std::move(o.groups_)) {}

FsIdentity::~FsIdentity() {
  if (!active_) return;
  // The reverse order: fsuid back to the agent's first, which (from
  // non-zero to 0) restores the filesystem capabilities to the effective
  // set; then fsgid and groups, with CAP_SETGID as ever.
  ::setfsuid(uid_);
  ::setfsgid(gid_);
  (void)::setgroups(groups_.size(), groups_.data());
}

// --- names and errors ------------------------------------------------------------

NameMaps NameMaps::Parse(std::string_view passwd, std::string_view group) {
  NameMaps m;
  auto fill = [](std::string_view text, size_t min_fields, std::map<uint32_t, std::string>& out) {
    for (const auto& line : Split(text, '\n')) {
      auto f = Split(line, ':');
      if (f.size() < min_fields || f[0].empty()) continue;
      auto id = ParseUint(f[2], "id");
      if (id.ok() && *id <= 0xffffffffULL) out.emplace(static_cast<uint32_t>(*id), f[0]);
    }
  };
  fill(passwd, 7, m.users);
  fill(group, 4, m.groups);
  return m;
}

std::string PermissionString(mode_t mode) {
  std::string s(10, '-');
  if (S_ISDIR(mode))
    s[0] = 'd';
  else if (S_ISLNK(mode))
    s[0] = 'l';
  else if (S_ISCHR(mode))
    s[0] = 'c';
  else if (S_ISBLK(mode))
    s[0] = 'b';
  else if (S_ISFIFO(mode))
    s[0] = 'p';
  else if (S_ISSOCK(mode))
    s[0] = 's';
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (mode & (0400 >> i)) s[1 + i] = rwx[i];
  }
  auto special = [&](int pos, mode_t bit, char set_exec, char set_noexec) {
    if (mode & bit) s[pos] = s[pos] == '-' ? set_noexec : set_exec;
  };
  special(3, S_ISUID, 's', 'S');
  special(6, S_ISGID, 's', 'S');
  special(9, S_ISVTX, 't', 'T');
  return s;
}

Error FsErrno(const std::string& call, const std::string& path) {
  int err = errno;
  Error e = ErrnoValue(err, call, path);
  switch (err) {
    case ENOTEMPTY:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case EXDEV:
    case EBUSY:
    case ETXTBSY:
      return e.WithCode(ErrorCode::kFailedPrecondition);
    case EROFS:
      return e.WithCode(ErrorCode::kPermissionDenied);
    case EINVAL:
    case ENAMETOOLONG:
      return e.WithCode(ErrorCode::kInvalidArgument);
    case EFBIG:
      return e.WithCode(ErrorCode::kResourceExhausted);
    default:
      return e;
  }
}

namespace {

std::string BaseName(const std::string& path) {
  if (path == "/") return "/";
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string Parent(const std::string& path) {
  size_t slash = path.find_last_not_of('/');
  if (slash == std::string::npos) return "/";
  slash = path.rfind('/', slash);
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

proto::FileStat FromStat(const std::string& path, const struct stat& st, const NameMaps& names) {
  proto::FileStat s;
  s.name = BaseName(path);
  s.path = path;
  s.type = S_ISREG(st.st_mode)   ? "file"
           : S_ISDIR(st.st_mode) ? "dir"
           : S_ISLNK(st.st_mode) ? "symlink"
                                 : "other";
  s.size = static_cast<uint64_t>(st.st_size);
  s.mode = st.st_mode & 07777;
  s.permissions = PermissionString(st.st_mode);
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  auto u = names.users.find(st.st_uid);
  s.owner = u != names.users.end() ? u->second : std::to_string(st.st_uid);
  auto g = names.groups.find(st.st_gid);
  s.group = g != names.groups.end() ? g->second : std::to_string(st.st_gid);
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return s;
}

Result<void> ListInto(const std::string& dir, uint32_t depth, const NameMaps& names,
                      size_t max_entries, std::vector<proto::FileStat>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return FsErrno("opendir", dir);
  std::vector<std::string> children;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") children.push_back(Join(dir, n));
  }
  int err = errno;
  ::closedir(d);
  if (err) return ErrnoValue(err, "readdir", dir);
  std::sort(children.begin(), children.end());
  for (const auto& child : children) {
    auto st = StatPath(child, names);
    if (!st.ok()) {
      if (st.error().err == ENOENT) continue;  // gone since readdir
      return st.error();
    }
    bool is_dir = st->type == "dir";
    out.push_back(std::move(*st));
    if (out.size() > max_entries) {
      return Fail(ErrorCode::kResourceExhausted, "list", dir,
                  "more than " + std::to_string(max_entries) + " entries; list less deep");
    }
    // Not into symlinks (lstat's type): a link to / would list the world.
    if (is_dir && depth > 1) {
      WB_RETURN_IF_ERROR(ListInto(child, depth - 1, names, max_entries, out));
    }
  }
  return Ok();
}

}  // namespace

// --- operations -------------------------------------------------------------------

Result<proto::FileStat> StatPath(const std::string& path, const NameMaps& names) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return FsErrno("lstat", path);
  proto::FileStat s = FromStat(path, st, names);
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
    if (n > 0) s.symlink_target.assign(buf, static_cast<size_t>(n));
  }
  return s;
}

Result<std::vector<proto::FileStat>> ListDir(const std::string& dir, uint32_t depth,
                                             const NameMaps& names, size_t max_entries) {
  std::vector<proto::FileStat> out;
  WB_RETURN_IF_ERROR(ListInto(dir, std::max<uint32_t>(depth, 1), names, max_entries, out));
  return out;
}

Result<void> MakeDirs(const std::string& path, mode_t mode, bool* created) {
  *created = false;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Ok();
    return Fail(ErrorCode::kAlreadyExists, "mkdir", path, "exists and is not a directory");
  }
  if (errno != ENOENT) return FsErrno("stat", path);
  std::string parent = Parent(path);
  if (parent != path) {
    bool ignored = false;
    WB_RETURN_IF_ERROR(MakeDirs(parent, 0755, &ignored));
  }
  if (::mkdir(path.c_str(), mode) != 0) {
    if (errno == EEXIST) return Ok();  // made meanwhile (by a command)
    return FsErrno("mkdir", path);
  }
  *created = true;
  // The mode asked for, not the agent's umask of it.
  if (::chmod(path.c_str(), mode) != 0) return FsErrno("chmod", path);
  return Ok();
}

Result<void> RemovePath(const std::string& path, bool recursive) {
  if (path == "/") return Fail(ErrorCode::kInvalidArgument, "remove", path, "refusing to remove /");
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return FsErrno("lstat", path);
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0) return FsErrno("unlink", path);
    return Ok();
  }
  if (::rmdir(path.c_str()) == 0) return Ok();
  if (errno != ENOTEMPTY && errno != EEXIST) return FsErrno("rmdir", path);
  if (!recursive) {
    return Fail(ErrorCode::kFailedPrecondition, "remove", path,
                "directory not empty (pass recursive)");
  }
  // Never follows symlinks and stays on this filesystem; as the user, so
  // what the user may not remove stays (and fails the call).
  return RemoveTree(path);
}

Result<void> RenamePath(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return FsErrno("rename", from + " -> " + to);
  return Ok();
}

Result<UniqueFd> OpenForRead(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang the agent (it is refused below).
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return FsErrno("open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return FsErrno("fstat", path);
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kFailedPrecondition, "read", path, "not a regular file");
  }
  WB_RETURN_IF_ERROR(SetNonBlocking(fd.get(), false));
  return fd;
}

Result<WriteTarget> OpenForWrite(const std::string& path, mode_t mode, bool append) {
  bool ignored = false;
  std::string parent = Parent(path);
  if (parent != path) WB_RETURN_IF_ERROR(MakeDirs(parent, 0755, &ignored));
  WriteTarget t;
  // O_EXCL first tells a file we create (whose mode we then set exactly)
  // from one we truncate or append to (whose mode stays).
  int flags = O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  t.fd = UniqueFd(::open(path.c_str(), flags | O_CREAT | O_EXCL, mode));
  if (t.fd) {
    t.created = true;
    if (::fchmod(t.fd.get(), mode) != 0) return FsErrno("fchmod", path);
  } else {
    if (errno != EEXIST) return FsErrno("open", path);
    t.fd = UniqueFd(::open(path.c_str(), flags | (append ? O_APPEND : O_TRUNC)));
    if (!t.fd) return FsErrno("open", path);
  }
  struct stat st;
  if (::fstat(t.fd.get(), &st) != 0) return FsErrno("fstat", path);
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kFailedPrecondition, "write", path, "not a regular file");
  }
  WB_RETURN_IF_ERROR(SetNonBlocking(t.fd.get(), false));
  t.orig_size = append ? st.st_size : 0;
  return t;
}

}  // namespace wb::agent
