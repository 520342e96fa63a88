// The pool socket's live-sandbox ops (docs/protocol.md, "Live sandboxes on
// the pool socket"): requests parsed into the LiveService's terms, answers
// and error kinds. Pure.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "daemon/code_run.h"
#include "daemon/live_service.h"

namespace wb::daemon {

enum class LiveOp {
  kCreate,
  kList,
  kInspect,
  kKill,
  kSetTimeout,
  kPause,
  kResume,
  kLogs,
  kCode,
  kUpdateNetwork
};

struct LiveRequest {
  LiveOp op = LiveOp::kList;
  std::string id;                               // every op but create and list
  LiveCreateRequest create;                     // create
  std::map<std::string, std::string> metadata;  // list: the filter
  uint64_t timeout_s = 0;                       // set_timeout
  size_t tail = 0;                              // logs: 0 = all that is kept
  bool follow = false;                          // logs
  CodeRequest code;                             // code (sandbox_code: docs/services.md)
  NetworkSpec network;                          // update_network: the policy afterwards
};

// Whether a request body names a sandbox_* op (then ParseLiveRequest owns it).
bool IsLiveRequest(std::string_view body);
[[nodiscard]] Result<LiveRequest> ParseLiveRequest(std::string_view body);
// The JSON of a request (what the CLI sends).
std::string ToJson(const LiveRequest& r);

// The wire kind of a live op's error, from its code (docs/errors.md):
// bad_request, no_image, not_found, busy, draining, failed_precondition,
// internal.
const char* LiveErrorKind(const Error& e);
// {"ok":false,"error":"...","kind":"..."}
std::string LiveErrorJson(const Error& e);

}  // namespace wb::daemon
