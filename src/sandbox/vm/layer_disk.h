// Read-only erofs disks of image layers, for the vm driver: one per layer
// dir, built once with mkfs.erofs and cached (STATE/vm/disks/), so VMs of the
// same image (and images sharing a layer dir) share the file, and the page
// cache holds it once.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"

namespace wb::vm {

// The cache file name of a layer dir: its path, inode and change time, so a
// re-imported image (a new dir) gets a new disk.
[[nodiscard]] Result<std::string> LayerDiskName(const std::string& layer_dir);

// Builds CACHE_DIR/<LayerDiskName> if missing and returns its path. Layer
// files are owned by the sandboxes' uid range on the host (uid u inside is
// uid_base+u): mkfs.erofs runs in a user namespace that maps that range back
// to 0..65535, so the disk holds the image's own owners. uid_base 0: no shift.
[[nodiscard]] Result<std::string> EnsureLayerDisk(const std::string& cache_dir,
                                                  const std::string& layer_dir, uint32_t uid_base);

}  // namespace wb::vm
