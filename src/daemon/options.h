// The options of the warm-pool daemon (`warmbox pool start`).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "daemon/run_ceilings.h"
#include "pool/settings.h"
#include "pool/warm_spec.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/vm/vm_driver.h"

namespace wb::daemon {

struct DaemonOptions {
  std::string socket_path;
  std::string default_image;    // "" = none: requests must name an image
  std::vector<WarmEntry> warm;  // pre-warmed at start, beside the default image
  pool::PoolSettings pool;
  std::optional<gid_t> socket_group;                 // 0660 and this group may connect
  size_t creation_cap = 4;                           // concurrent sandbox creations, daemon-wide
  std::chrono::milliseconds drain_grace{10000};      // in-flight runs at stop
  std::chrono::milliseconds request_timeout{10000};  // to receive a request
  RunCeilings ceilings;                              // what one run may ask for
  NsDriverOptions driver;
  // The HTTP API: "ADDR:PORT" ("" = off), the bearer token's file ("" =
  // STATE/http-token, generated at first start) and the connection cap.
  std::string http;
  std::string http_token_file;
  size_t http_max_connections = 256;
  // An E2B create's network when it names none (--e2b-default-network;
  // docs/e2b.md, "Network"): none, warmbox's default, not E2B's.
  NetworkMode e2b_default_network = NetworkMode::kNone;
  // Whether to remove socket_path at exit (not when systemd passed the socket).
  bool unlink_socket = true;
  std::string image_tool_path;  // warmbox-image: pulls images the pools need
  vm::VmDriverOptions vm_driver;
  std::string default_driver = "ns";  // of runs that name none ("driver" in a run request)
  // Live sandboxes (docs/live-sandboxes.md).
  size_t max_sandboxes = 100;              // --max-sandboxes: beyond it, create is busy
  uint64_t max_sandbox_timeout_s = 86400;  // --max-sandbox-timeout
};

}  // namespace wb::daemon
