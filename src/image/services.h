// Services an image starts in every pre-booted sandbox (docs/services.md):
// the OCI label org.warmbox.services, a JSON array of
//   {"name":"interp","argv":["python3","server.py"],"user":"","cwd":"","env":["K=V"],
//    "ready_port":49999,"ready_timeout_s":60}
// Pure parsing and validation, and the readiness poll's plan; the daemon
// starts them and polls (daemon/services.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
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
// ready_timeout_s: its default and bounds (a pre-boot that waits longer is
// a broken image, not a slow one).
inline constexpr uint32_t kDefaultReadyTimeoutS = 60;
inline constexpr uint32_t kMaxReadyTimeoutS = 600;

struct ServiceSpec {
  std::string name;               // [A-Za-z0-9._-], 1 to 64 characters, unique
  std::vector<std::string> argv;  // non-empty; argv[0] non-empty
  std::string user;               // "": the image's User
  std::string cwd;                // "": the image's WorkingDir, else the user's home
  std::vector<std::string> env;   // "K=V", after the image's Env
  // Readiness: a TCP port on the sandbox's loopback that accepts
  // connections only once the service is ready (0: none declared; the
  // service counts as ready once started). The pool polls it before the
  // sandbox goes idle, for at most ready_timeout_s.
  uint16_t ready_port = 0;
  uint32_t ready_timeout_s = kDefaultReadyTimeoutS;
};

// The label's value, for image (named in every error). Errors are
// kInvalidArgument: "image <name>: label org.warmbox.services: [1].argv:
// expected a non-empty array of strings".
[[nodiscard]] Result<std::vector<ServiceSpec>> ParseServicesLabel(std::string_view image,
                                                                  std::string_view value);
// The image's services: none when it has no such label.
[[nodiscard]] Result<std::vector<ServiceSpec>> ServicesOf(const std::string& image,
                                                          const ImageConfig& config);

// The readiness poll's plan: how long to wait before the next attempt,
// given the attempts made so far and the time since the service started;
// nullopt once the timeout has passed (the service is not ready: fail).
// Delays double from 1 ms to 20 ms: a service ready in 1.5 s costs the
// refill at most 20 ms more than its own start, for about 80 attempts.
struct ReadyPollPlan {
  std::chrono::milliseconds timeout;
  static constexpr std::chrono::milliseconds kFirst{1};
  static constexpr std::chrono::milliseconds kMax{20};
  std::optional<std::chrono::milliseconds> Next(uint32_t attempts,
                                                std::chrono::milliseconds elapsed) const;
};

// The kept process's tag for a service (docs/protocol.md, "Kept processes"):
// "service:<name>"; and back ("" when tag is not a service's).
std::string ServiceTag(const std::string& name);
std::string ServiceNameOfTag(std::string_view tag);

}  // namespace wb
