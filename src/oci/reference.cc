#include "oci/reference.h"

#include <cctype>

#include "base/strings.h"

namespace wb::oci {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
bool ValidComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (IsLowerAlnum(ch)) continue;
    if (ch == '.' || ch == '-') {
      if (ch == '.' && !IsLowerAlnum(c[i + 1])) return false;
      continue;
    }
    if (ch == '_') {
      if (c[i + 1] == '_') ++i;
      if (!IsLowerAlnum(c[i + 1])) return false;
      continue;
    }
    return false;
  }
  return true;
}

bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  if (!(std::isalnum(static_cast<unsigned char>(t[0])) || t[0] == '_')) return false;
  for (char c : t) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
      return false;
  }
  return true;
}

bool ValidRegistry(std::string_view r) {
  if (r.empty()) return false;
  for (char c : r) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
          c == '[' || c == ']')) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<void> ValidateDigest(std::string_view digest) {
  if (!StartsWith(digest, "sha256:")) {
    return Fail("digest", std::string(digest), "expected sha256:<64 hex digits>");
  }
  std::string_view hex = digest.substr(7);
  if (hex.size() != 64)
    return Fail("digest", std::string(digest), "expected 64 hex digits after sha256:");
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Fail("digest", std::string(digest), "expected lowercase hex digits after sha256:");
    }
  }
  return Ok();
}

std::string DigestHex(std::string_view digest) {
  return std::string(digest.substr(digest.find(':') + 1));
}

Result<Reference> ParseReference(std::string_view text) {
  const std::string what(text);
  // The name (registry/repository) is capped at 255 below, after
  // normalisation; with a tag (128) and a digest (71) a whole reference
  // stays under this, so a canonical form always parses back.
  if (text.empty() || text.size() > 512)
    return Fail("image reference", what.substr(0, 64) + "...", "must be 1-512 characters");
  Reference r;
  std::string_view rest = text;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    r.digest = std::string(rest.substr(at + 1));
    if (auto v = ValidateDigest(r.digest); !v.ok()) {
      return Fail("image reference", what, "bad digest: " + v.error().detail);
    }
    rest = rest.substr(0, at);
  }
  // A tag follows the last ':' after the last '/' (a ':' before it is a port).
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    r.tag = std::string(rest.substr(colon + 1));
    if (!ValidTag(r.tag)) {
      return Fail("image reference", what,
                  "bad tag '" + r.tag + "' (letters, digits, _ . -; at most 128)");
    }
    rest = rest.substr(0, colon);
  }
  std::string_view path = rest;
  size_t first = rest.find('/');
  if (first != std::string_view::npos) {
    std::string_view head = rest.substr(0, first);
    if (head.find('.') != std::string_view::npos || head.find(':') != std::string_view::npos ||
        head == "localhost") {
      if (!ValidRegistry(head))
        return Fail("image reference", what, "bad registry '" + std::string(head) + "'");
      r.registry = std::string(head);
      path = rest.substr(first + 1);
    }
  }
  // Docker Hub's legacy name is the same registry (as docker's own
  // reference normalisation has it): one canonical name per image.
  if (r.registry.empty() || r.registry == "index.docker.io") r.registry = "docker.io";
  if (path.empty()) return Fail("image reference", what, "missing repository name");
  for (const auto& c : Split(path, '/')) {
    if (!ValidComponent(c)) {
      return Fail("image reference", what,
                  "bad repository component '" + c +
                      "' (lowercase letters and digits, separated by . _ __ or -)");
    }
  }
  r.repository = std::string(path);
  if (r.registry == "docker.io" && r.repository.find('/') == std::string::npos) {
    r.repository = "library/" + r.repository;
  }
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  // Docker's limit on a name, checked on the canonical name (the fuzzer
  // found a 249-character short name whose docker.io/library/ form was not).
  if (r.registry.size() + 1 + r.repository.size() > 255) {
    return Fail("image reference", what,
                "name too long (at most 255 characters with registry and library/)");
  }
  return r;
}

std::string Reference::Canonical() const {
  std::string s = registry + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::ApiHost() const {
  if (registry == "docker.io" || registry == "index.docker.io") return "registry-1.docker.io";
  return registry;
}

bool IsLoopbackRegistry(std::string_view registry) {
  std::string_view host = registry;
  if (StartsWith(host, "[")) {
    host = host.substr(
        1, host.find(']') == std::string_view::npos ? host.size() - 1 : host.find(']') - 1);
  } else if (size_t c = host.rfind(':'); c != std::string_view::npos) {
    host = host.substr(0, c);
  }
  return host == "localhost" || host == "::1" || StartsWith(host, "127.");
}

}  // namespace wb::oci
