// Writing into the image store's content-addressed parts: blobs and
// unpacked layers. Each is made once however many processes want it (a
// flock per blob and per layer), written to a temp name, verified, and
// renamed into place, so a crash leaves nothing that looks complete.
#pragma once

#include <functional>
#include <string>

#include "base/error.h"
#include "image/store.h"
#include "imagetool/unpack.h"
#include "oci/manifest.h"

namespace wb::imagetool {

// Writes the blob's bytes to the given temp path and verifies them (size and
// digest); an error leaves the temp file for the caller to remove.
using BlobWriter = std::function<Result<void>(const std::string& tmp_path)>;

// True when the blob was already present.
[[nodiscard]] Result<bool> EnsureBlob(ImageStore& store, const oci::Descriptor& d,
                                      const BlobWriter& write);
// A small blob from memory, verified against d.
[[nodiscard]] Result<void> EnsureBlobBytes(ImageStore& store, const oci::Descriptor& d,
                                           const std::string& bytes);
// Unpacks the (present) blob of d into its layer dir unless it exists,
// within what the image's budget has left (and spends it).
[[nodiscard]] Result<void> EnsureLayer(ImageStore& store, const oci::Descriptor& d,
                                       UnpackBudget& budget);

// Copies a local file into tmp_path, verifying d's size and digest.
[[nodiscard]] Result<void> CopyVerified(const std::string& from, const oci::Descriptor& d,
                                        const std::string& tmp_path);

}  // namespace wb::imagetool
