#include "imagetool/blob_verify.h"

namespace wb::imagetool {

Result<void> BlobVerifier::Update(std::string_view chunk) {
  got_ += chunk.size();
  if (got_ > size_) {
    return Fail("verify blob", digest_,
                "too long: " + std::to_string(got_) + " bytes or more where " +
                    std::to_string(size_) + " were announced");
  }
  hash_.Update(chunk);
  return Ok();
}

Result<void> BlobVerifier::Finish() {
  if (got_ != size_) {
    return Fail("verify blob", digest_,
                (got_ < size_ ? "truncated: " : "too long: ") + std::to_string(got_) +
                    " bytes where " + std::to_string(size_) + " were announced");
  }
  if (std::string got = hash_.Digest(); got != digest_) {
    return Fail("verify blob", digest_, "digest mismatch: the content hashes to " + got);
  }
  return Ok();
}

void BlobVerifier::Reset() {
  got_ = 0;
  hash_.Reset();
}

Result<void> VerifyBlob(const oci::Descriptor& d, std::string_view bytes) {
  BlobVerifier v(d);
  WB_RETURN_IF_ERROR(v.Update(bytes));
  return v.Finish();
}

}  // namespace wb::imagetool
