#include "daemon/e2b/route.h"

#include <charconv>

#include "base/strings.h"
#include "daemon/e2b/envd.h"

namespace wb::daemon::e2b {

namespace {

bool HasPrefixPath(std::string_view path, std::string_view prefix) {
  return path == prefix || (path.size() > prefix.size() &&
                            path.substr(0, prefix.size()) == prefix && path[prefix.size()] == '/');
}

}  // namespace

Result<Route> Classify(std::optional<std::string_view> sandbox_id,
                       std::optional<std::string_view> sandbox_port, std::string_view path) {
  Route r;
  if (sandbox_id) {
    r.sandbox = std::string(Trim(*sandbox_id));
    r.port = kEnvdPort;
    if (sandbox_port) {
      std::string_view p = Trim(*sandbox_port);
      unsigned v = 0;
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
      if (ec != std::errc() || end != p.data() + p.size() || v == 0 || v > 65535) {
        return Error{.call = "E2b-Sandbox-Port",
                     .arg = std::string(p),
                     .detail = "expected a TCP port, 1 to 65535",
                     .code = ErrorCode::kInvalidArgument};
      }
      r.port = static_cast<uint16_t>(v);
    }
    r.plane = r.port == kEnvdPort ? Plane::kEnvd : Plane::kPort;
    return r;
  }
  if (HasPrefixPath(path, "/v2/sandboxes") || HasPrefixPath(path, "/sandboxes") ||
      HasPrefixPath(path, "/snapshots") || HasPrefixPath(path, "/templates")) {
    r.plane = Plane::kControl;
  }
  return r;
}

}  // namespace wb::daemon::e2b
