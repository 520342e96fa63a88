#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"

namespace wb {

// Copies the tree at src to dst (which must not exist), keeping modes, times,
// user.* xattrs, hard and symbolic links, and shifting every
// owner by uid_base (uid u -> uid_base+u; ids >= 65536 are refused). Device
// nodes, sockets and fifos are skipped: a user namespace cannot use them.
[[nodiscard]] Result<void> CopyTreeShifted(const std::string& src, const std::string& dst,
                                           uint32_t uid_base);

// lchown -R of a tree we just built, shifting owners by uid_base.
[[nodiscard]] Result<void> ShiftOwnership(const std::string& root, uint32_t uid_base);

}  // namespace wb
