// Image references as docker spells them, parsed without any I/O.
//
//   python:3.12-slim            -> docker.io/library/python:3.12-slim
//   ghcr.io/org/tool:tag        -> ghcr.io/org/tool:tag
//   localhost:5000/team/img@sha256:<64 hex>
//
// The first path component is a registry when it contains '.' or ':' or is
// "localhost"; otherwise the registry is docker.io (and a one-component path
// gets docker's "library/" prefix). No tag and no digest means ":latest".
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace wb::oci {

struct Reference {
  std::string registry;    // "docker.io", "localhost:5000"
  std::string repository;  // "library/python", "team/img"
  std::string tag;         // "" when only a digest was given
  std::string digest;      // "sha256:..." or ""

  // registry/repository[:tag][@digest]
  std::string Canonical() const;
  // What the manifest is fetched by: the digest if any, else the tag.
  const std::string& ManifestRef() const { return digest.empty() ? tag : digest; }
  // The host the distribution API is served from (docker.io's is
  // registry-1.docker.io).
  std::string ApiHost() const;
};

[[nodiscard]] Result<Reference> ParseReference(std::string_view text);

// "sha256:" followed by 64 lowercase hex digits (the only algorithm we accept).
[[nodiscard]] Result<void> ValidateDigest(std::string_view digest);
// The hex part of a validated digest.
std::string DigestHex(std::string_view digest);

// A loopback registry host ("localhost:5000", "127.0.0.1:5000", "[::1]:5000"):
// plain HTTP is allowed for it without --insecure, as docker does.
bool IsLoopbackRegistry(std::string_view registry);

}  // namespace wb::oci
