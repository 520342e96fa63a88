// Services an image starts in every pre-booted sandbox (docs/services.md):
// the OCI label org.warmbox.services, a JSON array of
//   {"name":"interp","argv":["python3","server.py"],"user":"","cwd":"","env":["K=V"]}
// Pure parsing and validation; the daemon starts them (daemon/services.h).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "image/store.h"

namespace wb {

inline constexpr const char* kServicesLabel = "org.warmbox.services";
// Bounds: a label is a config, not a payload.
inline constexpr size_t kMaxServices = 16;
inline constexpr size_t kMaxServiceLabelBytes = 64 << 10;

struct ServiceSpec {
  std::string name;               // [A-Za-z0-9._-], 1 to 64 characters, unique
  std::vector<std::string> argv;  // non-empty; argv[0] non-empty
  std::string user;               // "": the image's User
  std::string cwd;                // "": the image's WorkingDir, else the user's home
  std::vector<std::string> env;   // "K=V", after the image's Env
};

// The label's value, for image (named in every error). Errors are
// kInvalidArgument: "image <name>: label org.warmbox.services: [1].argv:
// expected a non-empty array of strings".
[[nodiscard]] Result<std::vector<ServiceSpec>> ParseServicesLabel(std::string_view image,
                                                                  std::string_view value);
// The image's services: none when it has no such label.
[[nodiscard]] Result<std::vector<ServiceSpec>> ServicesOf(const std::string& image,
                                                          const ImageConfig& config);

// The kept process's tag for a service (docs/protocol.md, "Kept processes"):
// "service:<name>"; and back ("" when tag is not a service's).
std::string ServiceTag(const std::string& name);
std::string ServiceNameOfTag(std::string_view tag);

}  // namespace wb
