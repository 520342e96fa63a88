// Resolution of "-u USER" inside the sandbox from its /etc/passwd and
// /etc/group, without NSS (the agent is static and must not load modules).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::agent {

struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary
  std::string home = "/";
};

// spec: "" (root), "name", "uid", "name:group", "uid:gid". A numeric uid not
// in passwd is allowed (gid = uid unless given), as Docker does.
[[nodiscard]] Result<Credentials> ResolveUser(std::string_view spec, std::string_view passwd,
                                              std::string_view group);

}  // namespace wb::agent
