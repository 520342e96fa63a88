// An OCI distribution API v2 client for one repository: manifests and blobs,
// anonymous bearer tokens and basic auth, retries with backoff.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "base/error.h"
#include "imagetool/http.h"
#include "oci/auth.h"
#include "oci/manifest.h"
#include "oci/reference.h"

namespace wb::imagetool {

struct RegistryOptions {
  bool insecure = false;  // plain HTTP (always allowed for loopback registries)
  std::optional<oci::Credentials> credentials;
  int attempts = 4;      // per request, transport errors and 5xx/429
  int backoff_ms = 250;  // doubled after each failed attempt
};

struct FetchedManifest {
  std::string content_type;
  std::string body;
  std::string digest;  // sha256 of body
};

// Called with (bytes so far, total) while a blob downloads.
using ProgressFn = std::function<void(uint64_t, uint64_t)>;

class Registry {
 public:
  Registry(oci::Reference ref, RegistryOptions opts);

  [[nodiscard]] Result<FetchedManifest> GetManifest(const std::string& tag_or_digest);
  // A blob streamed to path (created or truncated), its size and digest
  // verified while it streams; a mismatch is an error.
  [[nodiscard]] Result<void> DownloadBlob(const oci::Descriptor& d, const std::string& path,
                                          const ProgressFn& progress);

 private:
  // GET path below /v2/, with auth and retries. sink_factory makes a fresh
  // sink for each attempt.
  Result<HttpResponse> Request(const std::string& path, const std::string& accept,
                               const std::function<BodySink()>& sink_factory);
  Result<void> Connect();
  Result<void> Authenticate(const std::string& challenge);
  std::string Url(const std::string& path) const;

  oci::Reference ref_;
  RegistryOptions opts_;
  Http http_;
  std::string scheme_;
  std::string authorization_;  // the header line, or ""
  bool connected_ = false;
};

// Credentials for registry from $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json
// or ~/.docker/config.json (the first that exists).
[[nodiscard]] Result<std::optional<oci::Credentials>> LoadCredentials(const std::string& registry);

}  // namespace wb::imagetool
