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
  if (const char* env = std::getenv("WARMBOX_IMAGE_TOOL"); env && *env) {
    g.image_tool_path = env;
  } else {
    g.image_tool_path = WB_TRY(SelfDir()) + "/warmbox-image";
  }
  if (const char* env = std::getenv("WARMBOX_CGROUP_PARENT"); env && *env) g.cgroup_parent = env;
  return Ok();
}

Result<SecurityOptions> ParseSecurityOptions(const std::vector<std::string>& opts, const std::string& nofile) {
  SecurityOptions s;
  for (const auto& o : opts) {
    if (!StartsWith(o, "seccomp=")) return Fail("--security-opt", o, "expected seccomp=default|unconfined|PATH");
    std::string v = o.substr(8);
    if (v.empty()) return Fail("--security-opt", o, "empty seccomp value");
    if (v != "default" && v != "unconfined") {
      // The agent reads the file; check it here for a clear error.
      if (v.front() != '/') return Fail("--security-opt", o, "a profile path must be absolute");
      if (!PathExists(v)) return Fail("--security-opt", v, "no such seccomp profile");
    }
    s.seccomp = v;
  }
  if (!nofile.empty()) {
    s.nofile = WB_TRY(ParseUint(nofile, "--nofile"));
    if (s.nofile == 0) return Fail("--nofile", nofile, "must be at least 1");
  }
  return s;
}

int ReportError(const Error& e) {
  std::fprintf(stderr, "warmbox: %s\n", e.ToString().c_str());
  return kExitWarmboxError;
}

}  // namespace wb::cli
