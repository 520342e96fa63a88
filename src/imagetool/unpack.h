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

// What one unpack may write: file content bytes and archive members. Past
// either, it fails (kResourceExhausted) naming the cap's source; the caller
// removes the partial tree. A 2 MB layer of zeros is 2 GiB unpacked.
struct UnpackCap {
  uint64_t bytes = UINT64_MAX;
  uint64_t entries = UINT64_MAX;
  std::string bytes_from, entries_from;  // e.g. "WARMBOX_MAX_LAYER_SIZE=16g"
};

// The caps of one layer and of one image (the layers it newly unpacks, and
// an archive to import), from the environment of warmbox-image:
// WARMBOX_MAX_LAYER_SIZE (16g), WARMBOX_MAX_LAYER_FILES (1000000),
// WARMBOX_MAX_IMAGE_SIZE (32g), WARMBOX_MAX_IMAGE_FILES (2000000).
struct UnpackLimits {
  UnpackCap layer, image;
};
[[nodiscard]] Result<UnpackLimits> UnpackLimitsFromEnv();

// An image's budget while its layers are unpacked one after another.
class UnpackBudget {
 public:
  explicit UnpackBudget(UnpackLimits limits) : limits_(std::move(limits)) {}
  // The tighter of the layer cap and what the image has left.
  UnpackCap NextLayer() const;
  void Spend(const UnpackStats& s);

 private:
  UnpackLimits limits_;
  uint64_t bytes_ = 0, entries_ = 0;
};

// Unpacks a layer into dest (an existing empty dir).
[[nodiscard]] Result<UnpackStats> UnpackLayer(const std::string& archive, const std::string& dest,
                                              uint32_t uid_base, const UnpackCap& cap);

// Extracts a plain archive (an image archive to import) into dest (an
// existing empty dir), with the same path safety, owned by the caller.
[[nodiscard]] Result<UnpackStats> ExtractArchive(const std::string& archive,
                                                 const std::string& dest, const UnpackCap& cap);

// "sha256:<hex>" of the archive's content once decompressed (gzip, zstd,
// xz sniffed; a plain tar as it is): what an image config's
// rootfs.diff_ids name. With blob, the file itself is verified against it in
// the same pass (its size and digest errors come first).
[[nodiscard]] Result<std::string> UncompressedDigest(const std::string& archive,
                                                     const oci::Descriptor* blob = nullptr);

}  // namespace wb::imagetool
