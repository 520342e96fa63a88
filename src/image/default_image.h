#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"

namespace wb {

// Host path of the static busybox the default image is built from.
inline constexpr const char* kHostBusybox = "/bin/busybox";

// Builds the default image's rootfs at dir (which must not exist): the host's
// static busybox with every applet linked in place, /etc/passwd, /etc/group,
// /tmp, and the usual empty mount points. Owners are shifted by uid_base.
// Returns a description of the source.
[[nodiscard]] Result<std::string> BuildDefaultImage(const std::string& dir, uint32_t uid_base);

}  // namespace wb
