// Incremental SHA-256 (OpenSSL EVP) for verifying blobs while they stream.
#pragma once

#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace wb::imagetool {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  // "sha256:<hex>"; the hasher is reset for reuse.
  std::string Digest();
  void Reset();

 private:
  evp_md_ctx_st* ctx_;
};

std::string Sha256Of(std::string_view data);

}  // namespace wb::imagetool
