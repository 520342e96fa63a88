// Layer unpacking with libarchive: tar, optionally gzip/zstd/xz compressed
// (sniffed, not trusted from the media type).
//
// Every member goes through oci::PlanEntry (no absolute paths, no "..");
// nothing is created through a symlink (checked per component by us and by
// libarchive's ARCHIVE_EXTRACT_SECURE_* flags); owners are shifted into the
// sandbox's uid range; only user.* xattrs are kept; device nodes and sockets
// are skipped (a user namespace cannot use them); OCI whiteouts become
// overlay whiteouts. The destination is a fresh temp dir that the caller
// renames into place on success or removes on failure.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/error.h"
#include "oci/manifest.h"

namespace wb::imagetool {

struct UnpackStats {
  uint64_t entries = 0, bytes = 0, skipped_devices = 0;
};

// Unpacks a layer into dest (an existing empty dir).
[[nodiscard]] Result<UnpackStats> UnpackLayer(const std::string& archive, const std::string& dest,
                                              uint32_t uid_base);

// Extracts a plain archive (an image archive to import) into dest (an
// existing empty dir), with the same path safety, owned by the caller.
[[nodiscard]] Result<UnpackStats> ExtractArchive(const std::string& archive,
                                                 const std::string& dest);

// "sha256:<hex>" of the archive's content once decompressed (gzip, zstd,
// xz sniffed; a plain tar as it is): what an image config's
// rootfs.diff_ids name. With blob, the file itself is verified against it in
// the same pass (its size and digest errors come first).
[[nodiscard]] Result<std::string> UncompressedDigest(const std::string& archive,
                                                     const oci::Descriptor* blob = nullptr);

}  // namespace wb::imagetool
