// Registry authentication, the pure parts: WWW-Authenticate challenges, the
// token URL of the bearer flow, its JSON answer, and credentials from a
// docker config.json (~/.docker/config.json or $REGISTRY_AUTH_FILE).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace wb::oci {

struct Challenge {
  std::string scheme;                         // "bearer" or "basic" (lowercased)
  std::map<std::string, std::string> params;  // realm, service, scope (keys lowercased)
};

// `Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"`.
[[nodiscard]] Result<Challenge> ParseChallenge(std::string_view header);

// realm?service=...&scope=... (the challenge's scope, or repository:REPO:pull).
[[nodiscard]] Result<std::string> TokenUrl(const Challenge& c, std::string_view repository);
// {"token": ...} or {"access_token": ...}.
[[nodiscard]] Result<std::string> ParseTokenResponse(std::string_view body);

struct Credentials {
  std::string username, password;
  std::string BasicHeader() const;  // "Basic base64(user:pass)"
};

// The entry for registry in a config.json's "auths" (keys may be bare hosts
// or URLs such as https://index.docker.io/v1/ for docker.io). nullopt when
// there is none; an error when the file is malformed.
[[nodiscard]] Result<std::optional<Credentials>> CredentialsFromDockerConfig(
    std::string_view json_text, std::string_view registry);

std::string Base64Encode(std::string_view in);
[[nodiscard]] Result<std::string> Base64Decode(std::string_view in);
// application/x-www-form-urlencoded value escaping.
std::string UrlEscape(std::string_view in);

}  // namespace wb::oci
