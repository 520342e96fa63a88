#include "sandbox/run_policy.h"

namespace wb {

Result<proto::ExecRequest> PrepareExec(const Image& image, const proto::ExecRequest& req) {
  proto::ExecRequest out = image.config.Apply(req);
  if (out.argv.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "run", image.name,
                "missing command (the image has no Cmd or Entrypoint): give CMD [ARG...] after --");
  }
  return out;
}

}  // namespace wb
