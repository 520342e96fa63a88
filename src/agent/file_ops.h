// File operations of live sandboxes (docs/protocol.md, "Files"), as a
// sandbox user: each runs inside an FsIdentity, so the kernel checks the
// user's permissions and new files are the user's. Paths resolve in the
// agent's own mount namespace and root, which are the sandbox's: no path
// reaches a host file. Synchronous; the server streams reads and writes.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "agent/users.h"
#include "base/error.h"
#include "base/fd.h"
#include "proto/agent_proto.h"

namespace wb::agent {

// The filesystem identity of one operation: fsuid, fsgid and supplementary
// groups of the user while it lives, the agent's own after.
class FsIdentity {
 public:
  // Skipped (a no-op) when the user is the agent's own uid and gid: the
  // only case an unprivileged agent (tests) can serve. Otherwise an agent
  // that cannot switch fails with permission_denied.
  [[nodiscard]] static Result<FsIdentity> Enter(const Credentials& cred);
  FsIdentity(FsIdentity&& o) noexcept;
  FsIdentity& operator=(FsIdentity&&) = delete;
  FsIdentity(const FsIdentity&) = delete;
  ~FsIdentity();

 private:
  FsIdentity() = default;
  bool active_ = false;
  uid_t uid_ = 0;  // the agent's, restored
  gid_t gid_ = 0;
  std::vector<gid_t> groups_;
};

// uid and gid names from the sandbox's passwd and group files.
struct NameMaps {
  std::map<uint32_t, std::string> users, groups;
  static NameMaps Parse(std::string_view passwd, std::string_view group);
};

// ls -l's mode string of st_mode: "-rw-r--r--", "drwxrwxrwt", ...
std::string PermissionString(mode_t mode);
// The error of errno for a file operation, with the codes of docs/errors.md.
Error FsErrno(const std::string& call, const std::string& path);

// lstat: the link itself.
[[nodiscard]] Result<proto::FileStat> StatPath(const std::string& path, const NameMaps& names);
// Entries under dir, depth levels deep (1: its children), sorted by path;
// symlinks are not followed. At most max_entries (resource_exhausted beyond).
[[nodiscard]] Result<std::vector<proto::FileStat>> ListDir(const std::string& dir, uint32_t depth,
                                                           const NameMaps& names,
                                                           size_t max_entries = 50000);
// mkdir -p; the last directory gets mode (exactly: no umask), parents 0755.
// *created: whether the last one was made (an existing directory is fine).
[[nodiscard]] Result<void> MakeDirs(const std::string& path, mode_t mode, bool* created);
// A non-empty directory without recursive is failed_precondition.
[[nodiscard]] Result<void> RemovePath(const std::string& path, bool recursive);
[[nodiscard]] Result<void> RenamePath(const std::string& from, const std::string& to);
// A regular file for reading (anything else: failed_precondition).
[[nodiscard]] Result<UniqueFd> OpenForRead(const std::string& path);

struct WriteTarget {
  UniqueFd fd;
  bool created = false;  // it did not exist
  off_t orig_size = 0;   // its size when appending (0 otherwise)
};
// Makes missing parents (0755), then creates (mode, exactly) or truncates
// the file, or opens it for appending.
[[nodiscard]] Result<WriteTarget> OpenForWrite(const std::string& path, mode_t mode, bool append);

}  // namespace wb::agent
