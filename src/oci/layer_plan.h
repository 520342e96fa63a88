// What to do with each entry of a layer tarball, decided without touching
// the filesystem: the unpacker (src/imagetool/unpack.cc) applies the plan.
//
// A layer is unpacked into a directory of its own; layers are stacked by the
// sandbox's overlay mount (userxattr mode), so OCI whiteouts become overlay
// whiteouts: ".wh.NAME" a 0/0 character device NAME, ".wh..wh..opq" the
// user.overlay.opaque="y" xattr on its directory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace wb::oci {

enum class EntryAction {
  kWrite,     // create path (file, dir, link, ...)
  kWhiteout,  // create an overlay whiteout at path
  kOpaque,    // mark directory path opaque ("" = the layer root)
  kSkip,      // nothing to do (the root dir itself, other .wh..wh. metadata)
};

struct EntryPlan {
  EntryAction action = EntryAction::kSkip;
  std::string path;  // cleaned, relative, no "." or ".." components
};

// A tar member name -> a clean relative path. "./a//b/" -> "a/b". Absolute
// paths and any ".." component are rejected (never silently rewritten: a
// layer that tries is hostile or broken). "" for the root itself.
[[nodiscard]] Result<std::string> CleanMemberPath(std::string_view name);

[[nodiscard]] Result<EntryPlan> PlanEntry(std::string_view name);

// Extended attributes a layer may carry onto the host: user.* except the
// overlay's own user.overlay.* (which would let a layer forge whiteouts,
// redirects or opaque dirs). security.* (file capabilities, which host root
// would write in their host-wide v2 form), trusted.* and ACLs are dropped.
bool KeepXattr(std::string_view name);

// Owner u inside the sandbox is uid_base+u on the host; ids beyond the
// 65536-id range are refused.
[[nodiscard]] Result<uint32_t> ShiftId(int64_t id, uint32_t uid_base, std::string_view path);

}  // namespace wb::oci
