// The "network" object of the daemon's APIs (docs/network.md, docs/protocol.md,
// docs/openapi.yaml): {"mode", "allow_out", "deny_out", "ports"}, the same on
// the socket (sandbox_create, sandbox_update_network, run) and on HTTP
// (POST /v1/sandboxes, PUT /v1/sandboxes/{id}/network, POST /v1/run). Pure.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "proto/pool_proto.h"
#include "sandbox/net/net_plan.h"

namespace wb::daemon {

struct NetworkJsonRules {
  // The mode when the object does not name one: "none" at create, "egress"
  // for an update (an update is of an egress policy).
  NetworkMode default_mode = NetworkMode::kNone;
  bool ports = true;  // whether "ports" is taken (create only)
};

// Parses and checks the object (null: the default mode, no policy). Errors
// are bad_request naming field.key ("network.allow_out: ..."): unknown keys,
// wrong types, a bad entry, a policy or ports without mode "egress".
[[nodiscard]] Result<NetworkSpec> ParseNetworkJson(const nlohmann::json& j,
                                                   const std::string& field = "network",
                                                   NetworkJsonRules rules = {});

// A run's network (the socket's and POST /v1/run's "network"; the shape
// checked by proto/pool_proto.h): the mode and the entries.
[[nodiscard]] Result<NetworkSpec> RunNetworkSpec(const proto::RunRequest::Network& n);

// {"mode":..,"allow_out":[..],"deny_out":[..],"ports":["[HOSTADDR:]HOSTPORT:PORT"]}
nlohmann::json NetworkToJson(const NetworkSpec& s);

}  // namespace wb::daemon
