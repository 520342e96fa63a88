// Verifying a blob against its descriptor: exactly the announced size, and
// content that hashes to the announced sha256 digest. Every blob the image
// tool takes in goes through BlobVerifier, whether it streams (a download, a
// file copy) or is held in memory (manifests, configs, archive members).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"
#include "imagetool/sha256.h"
#include "oci/manifest.h"

namespace wb::imagetool {

class BlobVerifier {
 public:
  explicit BlobVerifier(const oci::Descriptor& d) : digest_(d.digest), size_(d.size) {}

  // Takes the next chunk; fails as soon as more than the announced size came
  // (so a stream can stop there).
  [[nodiscard]] Result<void> Update(std::string_view chunk);
  // Fails unless exactly the announced size came and it hashes to the digest.
  [[nodiscard]] Result<void> Finish();
  // Starts over (a retried download).
  void Reset();
  uint64_t received() const { return got_; }

 private:
  std::string digest_;
  uint64_t size_;
  uint64_t got_ = 0;
  Sha256 hash_;
};

// bytes against d, in one go.
[[nodiscard]] Result<void> VerifyBlob(const oci::Descriptor& d, std::string_view bytes);

}  // namespace wb::imagetool
