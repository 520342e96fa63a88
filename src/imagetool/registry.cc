#include "imagetool/registry.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>

#include "base/fd.h"
#include "base/fs.h"
#include "base/log.h"
#include "imagetool/blob_verify.h"
#include "imagetool/sha256.h"

namespace wb::imagetool {
namespace {

void SleepMs(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool Retryable(const Result<HttpResponse>& r) {
  if (!r.ok()) return IsTransportError(r.error());
  return r.value().status >= 500 || r.value().status == 429 || r.value().status == 408;
}

std::string Snippet(const std::string& body) {
  std::string s = body.substr(0, 200);
  for (auto& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

Registry::Registry(oci::Reference ref, RegistryOptions opts)
    : ref_(std::move(ref)), opts_(std::move(opts)) {
  scheme_ = opts_.insecure ? "http" : "https";
}

std::string Registry::Url(const std::string& path) const {
  return scheme_ + "://" + ref_.ApiHost() + "/v2/" + path;
}

Result<void> Registry::Connect() {
  if (connected_) return Ok();
  // The version check tells HTTPS from plain HTTP on loopback registries
  // (docker's rule: they may be plain HTTP) and brings the first challenge.
  auto r = http_.Get(Url(""), {});
  if (!r.ok() && IsTransportError(r.error()) && scheme_ == "https" &&
      oci::IsLoopbackRegistry(ref_.registry)) {
    spdlog::debug("{}: https failed ({}); trying plain http", ref_.registry, r.error().ToString());
    scheme_ = "http";
    r = http_.Get(Url(""), {});
  }
  for (int attempt = 1; !r.ok() && IsTransportError(r.error()) && attempt < opts_.attempts;
       ++attempt) {
    SleepMs(opts_.backoff_ms << (attempt - 1));
    r = http_.Get(Url(""), {});
  }
  if (!r.ok()) {
    Error e = r.error();
    e.detail = "cannot reach registry " + ref_.ApiHost() + ": " + e.detail +
               (ref_.registry == "docker.io"
                    ? " (no network access? only registries this host can reach work)"
                    : "");
    return e;
  }
  connected_ = true;
  if (r->status == 401 && r->headers.count("www-authenticate"))
    WB_RETURN_IF_ERROR(Authenticate(r->headers["www-authenticate"]));
  return Ok();
}

Result<void> Registry::Authenticate(const std::string& header) {
  oci::Challenge c = WB_TRY(oci::ParseChallenge(header));
  if (c.scheme == "basic") {
    if (!opts_.credentials) {
      return Fail("pull", ref_.registry,
                  "the registry requires a login: no credentials for it in $REGISTRY_AUTH_FILE or "
                  "~/.docker/config.json");
    }
    authorization_ = "Authorization: " + opts_.credentials->BasicHeader();
    return Ok();
  }
  std::string url = WB_TRY(oci::TokenUrl(c, ref_.repository));
  std::vector<std::string> headers;
  if (opts_.credentials) {
    // Credentials never travel in clear text to a realm named by an HTTPS
    // registry.
    if (scheme_ == "https" && url.rfind("http://", 0) == 0) {
      return Fail("get a token", c.params["realm"],
                  "refusing to send credentials to a plain-HTTP token realm");
    }
    headers.push_back("Authorization: " + opts_.credentials->BasicHeader());
  }
  auto r = http_.Get(url, headers);
  for (int attempt = 1; Retryable(r) && attempt < opts_.attempts; ++attempt) {
    SleepMs(opts_.backoff_ms << (attempt - 1));
    r = http_.Get(url, headers);
  }
  if (!r.ok()) return r.error().Wrap("get a token from " + c.params["realm"]);
  if (r->status == 401 || r->status == 403) {
    return Fail(
        "get a token", c.params["realm"],
        opts_.credentials
            ? "the token server refused our credentials (HTTP " + std::to_string(r->status) + ")"
            : "the token server requires a login (HTTP " + std::to_string(r->status) +
                  "); add credentials to $REGISTRY_AUTH_FILE or ~/.docker/config.json");
  }
  if (r->status != 200) {
    return Fail("get a token", c.params["realm"],
                "HTTP " + std::to_string(r->status) + ": " + Snippet(r->body));
  }
  std::string token = WB_TRY(oci::ParseTokenResponse(r->body));
  authorization_ = "Authorization: Bearer " + token;
  return Ok();
}

Result<HttpResponse> Registry::Request(const std::string& path, const std::string& accept,
                                       const std::function<BodySink()>& sink_factory) {
  WB_RETURN_IF_ERROR(Connect());
  bool reauthed = false;
  for (int attempt = 0;; ++attempt) {
    std::vector<std::string> headers;
    if (!accept.empty()) headers.push_back("Accept: " + accept);
    if (!authorization_.empty()) headers.push_back(authorization_);
    BodySink sink = sink_factory ? sink_factory() : nullptr;
    auto r = http_.Get(Url(path), headers, sink);
    if (r.ok() && r->status == 401 && !reauthed && r->headers.count("www-authenticate")) {
      // A token is scoped: the first request of a repository may need one.
      reauthed = true;
      WB_RETURN_IF_ERROR(Authenticate(r->headers["www-authenticate"]));
      --attempt;
      continue;
    }
    if (Retryable(r) && attempt + 1 < opts_.attempts) {
      spdlog::debug("GET {}: {}; retrying", path,
                    r.ok() ? "HTTP " + std::to_string(r->status) : r.error().ToString());
      SleepMs(opts_.backoff_ms << attempt);
      continue;
    }
    if (!r.ok()) return r.error();
    if (r->status == 401 || r->status == 403) {
      return Fail("GET", Url(path),
                  "access denied (HTTP " + std::to_string(r->status) + ")" +
                      (opts_.credentials ? "; check the credentials"
                                         : "; the registry may require a login"));
    }
    return r;
  }
}

Result<FetchedManifest> Registry::GetManifest(const std::string& tag_or_digest) {
  HttpResponse r = WB_TRY(Request(ref_.repository + "/manifests/" + tag_or_digest,
                                  oci::ManifestAcceptHeader(), nullptr));
  if (r.status == 404) {
    return Fail(
        "pull",
        ref_.registry + "/" + ref_.repository +
            (tag_or_digest.find(':') != std::string::npos && tag_or_digest.rfind("sha256:", 0) == 0
                 ? "@"
                 : ":") +
            tag_or_digest,
        "manifest unknown: the registry has no such image");
  }
  if (r.status != 200) {
    return Fail("GET manifest", tag_or_digest,
                "HTTP " + std::to_string(r.status) + ": " + Snippet(r.body));
  }
  FetchedManifest m;
  m.content_type = r.headers["content-type"];
  m.body = std::move(r.body);
  m.digest = Sha256Of(m.body);
  if (oci::ValidateDigest(tag_or_digest).ok() && m.digest != tag_or_digest) {
    return Fail("verify manifest", tag_or_digest, "digest mismatch: the registry sent " + m.digest);
  }
  return m;
}

Result<void> Registry::DownloadBlob(const oci::Descriptor& d, const std::string& path,
                                    const ProgressFn& progress) {
  UniqueFd fd;
  BlobVerifier verify(d);
  std::optional<Error> open_error;
  auto factory = [&]() -> BodySink {
    // Each attempt starts over: truncate the file, reset the verifier.
    fd =
        UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) open_error = Errno("open", path);
    verify.Reset();
    return [&](std::string_view chunk) -> Result<void> {
      if (open_error) return *open_error;
      WB_RETURN_IF_ERROR(verify.Update(chunk));
      WB_RETURN_IF_ERROR(WriteAll(fd.get(), chunk));
      if (progress) progress(verify.received(), d.size);
      return Ok();
    };
  };
  auto res = Request(ref_.repository + "/blobs/" + d.digest, "", factory);
  if (!res.ok() && IsTransportError(res.error()) && verify.received() < d.size) {
    return Fail("verify blob", d.digest,
                "truncated: got " + std::to_string(verify.received()) + " of " +
                    std::to_string(d.size) + " bytes (" + res.error().detail + ")");
  }
  HttpResponse r = WB_TRY(std::move(res));
  if (r.status != 200)
    return Fail("GET blob", d.digest, "HTTP " + std::to_string(r.status) + ": " + Snippet(r.body));
  WB_RETURN_IF_ERROR(verify.Finish());
  if (::fsync(fd.get()) != 0) return Errno("fsync", path);
  return Ok();
}

Result<std::optional<oci::Credentials>> LoadCredentials(const std::string& registry) {
  std::vector<std::string> candidates;
  if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) candidates.push_back(f);
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d)
    candidates.push_back(std::string(d) + "/config.json");
  if (const char* h = std::getenv("HOME"); h && *h)
    candidates.push_back(std::string(h) + "/.docker/config.json");
  for (const auto& c : candidates) {
    if (!PathExists(c)) continue;
    std::string text = WB_TRY(ReadFile(c));
    auto creds = oci::CredentialsFromDockerConfig(text, registry);
    if (!creds.ok()) return creds.error().Wrap(c);
    return *creds;
  }
  return std::optional<oci::Credentials>();
}

}  // namespace wb::imagetool
