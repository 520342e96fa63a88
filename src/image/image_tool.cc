#include "image/image_tool.h"

#include <unistd.h>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"

extern char** environ;

namespace wb {

namespace {

SpawnOptions Options(const ImageToolCall& call, bool quiet) {
  SpawnOptions o;
  o.path = call.tool_path;
  o.argv = {"warmbox-image", "--state-dir", call.state_dir, "--userns-base",
            std::to_string(call.uid_base)};
  if (quiet) o.argv.push_back("--quiet");
  o.argv.insert(o.argv.end(), call.args.begin(), call.args.end());
  // Operands come from users (an image named "--help"): after "--" the
  // helper reads them as operands whatever they look like.
  if (!call.operands.empty()) {
    o.argv.push_back("--");
    o.argv.insert(o.argv.end(), call.operands.begin(), call.operands.end());
  }
  // Proxy settings, $HOME (docker config), $REGISTRY_AUTH_FILE and
  // $WARMBOX_INSECURE_REGISTRIES reach the helper.
  for (char** e = environ; *e; ++e) o.env.push_back(*e);
  return o;
}

Result<void> CheckTool(const ImageToolCall& call) {
  if (!PathExists(call.tool_path)) {
    return Fail("image helper", call.tool_path,
                "warmbox-image not found (build it, or set WARMBOX_IMAGE_TOOL)");
  }
  return Ok();
}

}  // namespace

Result<int> ExecImageTool(const ImageToolCall& call) {
  WB_RETURN_IF_ERROR(CheckTool(call));
  SpawnOptions o = Options(call, false);
  o.fds = {{0, 0}, {1, 1}, {2, 2}};
  ChildProcess child = WB_TRY(ChildProcess::Spawn(o));
  ExitStatus st = WB_TRY(child.Wait());
  return st.ShellCode();
}

Result<void> RunImageTool(const ImageToolCall& call) {
  WB_RETURN_IF_ERROR(CheckTool(call));
  SpawnOptions o = Options(call, true);
  Pipe err = WB_TRY(MakePipe());
  o.fds = {{err.write.get(), 2}};
  ChildProcess child = WB_TRY(ChildProcess::Spawn(o));
  err.write.reset();
  std::string words = WB_TRY(ReadAll(err.read.get()));
  ExitStatus st = WB_TRY(child.Wait());
  if (st.code == 0 && !st.signal) return Ok();
  std::string what = call.args.empty() ? "" : call.args[0];
  if (!call.operands.empty()) what += " " + call.operands[0];
  std::string_view w = Trim(words);
  if (size_t nl = w.rfind('\n'); nl != std::string_view::npos) w = w.substr(nl + 1);
  if (StartsWith(w, "warmbox: ")) w.remove_prefix(9);
  return Fail("warmbox-image", what, w.empty() ? st.Describe() : std::string(w));
}

}  // namespace wb
