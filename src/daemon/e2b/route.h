// Which E2B plane a request of the daemon's HTTP listener belongs to, and
// the per-sandbox envd access token (docs/e2b.md, "Routing").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace wb::daemon::e2b {

enum class Plane {
  kNone,     // not E2B: warmbox's own API
  kControl,  // E2B's control plane: /v2/sandboxes..., /sandboxes..., /snapshots, /templates/...
  kEnvd,     // E2b-Sandbox-Id with E2b-Sandbox-Port 49983 (or no port)
  kPort,     // E2b-Sandbox-Id with another port: the sandbox's TCP service
};

struct Route {
  Plane plane = Plane::kNone;
  std::string sandbox;  // kEnvd, kPort
  uint16_t port = 0;    // kEnvd (49983), kPort
};

// path: the target without its query. A bad port header is
// invalid_argument naming it.
[[nodiscard]] Result<Route> Classify(std::optional<std::string_view> sandbox_id,
                                     std::optional<std::string_view> sandbox_port,
                                     std::string_view path);

}  // namespace wb::daemon::e2b
