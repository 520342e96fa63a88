// Per-run policy: what every path that runs a command (warmbox run through
// Sandbox::Exec, the daemon through its own agent connection) does to a
// request before the agent sees it. Pure and unit-tested.
#pragma once

#include "base/error.h"
#include "image/store.h"
#include "proto/agent_proto.h"

namespace wb {

// The image's defaults applied (ImageConfig::Apply: Env, WorkingDir, User,
// Entrypoint + command or Cmd); refused when there is no command at all (no
// argv, and the image has neither Cmd nor Entrypoint), with the same error on
// every path and driver. A program that does not exist is not refused here:
// the agent reports it as exit 127, as a shell would.
[[nodiscard]] Result<proto::ExecRequest> PrepareExec(const Image& image,
                                                     const proto::ExecRequest& req);

}  // namespace wb
