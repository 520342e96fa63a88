// OCI / Docker v2 schema 2 manifests, indexes and image configs, parsed
// without any I/O.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::oci {

inline constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
// The Accept header of a manifest request: every type we can read.
std::string ManifestAcceptHeader();

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::string os, architecture, variant;  // index entries only
  std::string ref_name;                   // org.opencontainers.image.ref.name annotation, if any
};

struct Manifest {
  Descriptor config;
  std::vector<Descriptor> layers;  // bottom first
};

// The image config's runtime defaults (the "config" object of the config blob).
struct RuntimeConfig {
  std::vector<std::string> env, cmd, entrypoint;
  std::string working_dir, user;
  std::map<std::string, std::string> labels;  // string values only
  // rootfs.diff_ids: the sha256 of each layer's uncompressed tar, bottom
  // first, as given (checked against the layers on import).
  std::vector<std::string> diff_ids;
};

enum class ManifestKind { kIndex, kManifest };

// Decides from the Content-Type (may be empty or generic) and the body's
// mediaType / shape. Docker schema 1 is refused with a clear error.
[[nodiscard]] Result<ManifestKind> ClassifyManifest(std::string_view content_type,
                                                    std::string_view body);
[[nodiscard]] Result<std::vector<Descriptor>> ParseIndex(std::string_view body);
[[nodiscard]] Result<Manifest> ParseManifest(std::string_view body);
// The entry for os/arch (attestation manifests, os "unknown", are never picked).
[[nodiscard]] Result<Descriptor> SelectPlatform(const std::vector<Descriptor>& index,
                                                std::string_view os, std::string_view arch);
[[nodiscard]] Result<RuntimeConfig> ParseImageConfig(std::string_view body);

// Layer compression from a layer media type ("" for an unknown type; the
// unpacker sniffs the bytes anyway). Foreign/non-distributable layers are
// accepted like the others.
bool IsLayerMediaType(std::string_view media_type);

}  // namespace wb::oci
