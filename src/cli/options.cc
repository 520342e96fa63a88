#include "cli/options.h"

#include <cstdio>
#include <cstdlib>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/ns/ns_driver.h"

namespace wb::cli {

Result<void> Finish(GlobalOptions& g) {
  if (g.state_dir.empty()) {
    const char* env = std::getenv("WARMBOX_STATE_DIR");
    g.state_dir = env && *env ? env : "/var/lib/warmbox";
  }
  if (g.state_dir.front() != '/') return Fail("--state-dir", g.state_dir, "must be an absolute path");
  if (g.userns_base.empty()) {
    const char* env = std::getenv("WARMBOX_USERNS_BASE");
    if (env && *env) g.userns_base = env;
  }
  g.uid_base = kDefaultUidBase;
  if (!g.userns_base.empty()) {
    uint64_t v = WB_TRY(ParseUint(g.userns_base, "--userns-base"));
    if (v == 0 || v + kUidCount > 0xffffffffULL) {
      return Fail("--userns-base", g.userns_base, "must be > 0 and leave room for 65536 ids below 2^32");
    }
    g.uid_base = static_cast<uint32_t>(v);
  }
  if (const char* env = std::getenv("WARMBOX_AGENT"); env && *env) {
    g.agent_path = env;
  } else {
    g.agent_path = WB_TRY(SelfDir()) + "/warmbox-agent";
  }
  if (const char* env = std::getenv("WARMBOX_CGROUP_PARENT"); env && *env) g.cgroup_parent = env;
  return Ok();
}

int ReportError(const Error& e) {
  std::fprintf(stderr, "warmbox: %s\n", e.ToString().c_str());
  return kExitWarmboxError;
}

}  // namespace wb::cli
