// The OCI parsers of registry and archive input (src/oci/): image
// references, manifests and indexes, image configs, WWW-Authenticate
// challenges, token answers, docker config.json, layer member paths.
//
// Input: the first byte picks the parser, the rest is its input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "oci/auth.h"
#include "oci/layer_plan.h"
#include "oci/manifest.h"
#include "oci/reference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  using namespace wb::oci;
  switch (data[0] % 7) {
    case 0: {
      auto r = ParseReference(in);
      if (!r.ok()) break;
      // The canonical form parses back to itself.
      auto again = ParseReference(r->Canonical());
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(again->Canonical() == r->Canonical());
      FUZZ_CHECK(!r->tag.empty() || !r->digest.empty());
      break;
    }
    case 1: {
      auto k = ClassifyManifest("", in);
      (void)k;
      auto idx = ParseIndex(in);
      if (idx.ok()) {
        for (const auto& d : *idx) FUZZ_CHECK(ValidateDigest(d.digest).ok());
        (void)SelectPlatform(*idx, "linux", "amd64");
      }
      auto m = ParseManifest(in);
      if (m.ok()) {
        FUZZ_CHECK(ValidateDigest(m->config.digest).ok());
        for (const auto& l : m->layers) FUZZ_CHECK(ValidateDigest(l.digest).ok());
      }
      break;
    }
    case 2:
      (void)ParseImageConfig(in);
      break;
    case 3: {
      auto c = ParseChallenge(in);
      if (c.ok()) {
        FUZZ_CHECK(c->scheme == "bearer" || c->scheme == "basic");
        auto url = TokenUrl(*c, "a/b");
        if (url.ok()) FUZZ_CHECK(url->rfind("http", 0) == 0);
      }
      (void)ParseTokenResponse(in);
      break;
    }
    case 4:
      (void)CredentialsFromDockerConfig(in, "localhost:5000");
      (void)CredentialsFromDockerConfig(in, "docker.io");
      break;
    case 5: {
      auto p = CleanMemberPath(in);
      if (p.ok()) {
        FUZZ_CHECK(p->empty() || p->front() != '/');
        FUZZ_CHECK(("/" + *p + "/").find("/../") == std::string::npos);
        FUZZ_CHECK(CleanMemberPath(p->empty() ? "." : *p).value() == *p);
      }
      auto e = PlanEntry(in);
      if (e.ok()) {
        FUZZ_CHECK(e->path.empty() || e->path.front() != '/');
        FUZZ_CHECK(("/" + e->path + "/").find("/../") == std::string::npos);
      }
      break;
    }
    case 6: {
      auto d = Base64Decode(in);
      if (d.ok()) FUZZ_CHECK(Base64Decode(Base64Encode(*d)).value() == *d);
      break;
    }
  }
  return 0;
}
