#include "oci/layer_plan.h"

#include "base/strings.h"

namespace wb::oci {

namespace {
constexpr std::string_view kWh = ".wh.";
constexpr std::string_view kOpq = ".wh..wh..opq";
constexpr std::string_view kWhMeta = ".wh..wh.";
}  // namespace

Result<std::string> CleanMemberPath(std::string_view name) {
  if (name.empty()) return Fail("layer entry", "", "empty name");
  if (name.front() == '/') return Fail("layer entry", std::string(name), "absolute path rejected");
  if (name.find('\0') != std::string_view::npos)
    return Fail("layer entry", std::string(name), "NUL in name");
  std::string out;
  for (const auto& c : Split(name, '/')) {
    if (c.empty() || c == ".") continue;
    if (c == "..") return Fail("layer entry", std::string(name), "path with '..' rejected");
    out += (out.empty() ? "" : "/") + c;
  }
  if (out.size() > 4095)
    return Fail("layer entry", std::string(name.substr(0, 64)), "path too long");
  return out;
}

Result<EntryPlan> PlanEntry(std::string_view name) {
  EntryPlan p;
  std::string clean = WB_TRY(CleanMemberPath(name));
  if (clean.empty()) return p;  // the root dir
  size_t slash = clean.rfind('/');
  std::string dir = slash == std::string::npos ? "" : clean.substr(0, slash);
  std::string base = slash == std::string::npos ? clean : clean.substr(slash + 1);
  if (base == kOpq) {
    p.action = EntryAction::kOpaque;
    p.path = dir;
    return p;
  }
  if (StartsWith(base, kWhMeta)) return p;  // aufs metadata (.wh..wh.plnk, ...): nothing to do
  if (StartsWith(base, kWh)) {
    std::string target = base.substr(kWh.size());
    if (target.empty() || target == "." || target == "..") {
      return Fail("layer entry", std::string(name), "bad whiteout name");
    }
    p.action = EntryAction::kWhiteout;
    p.path = dir.empty() ? target : dir + "/" + target;
    return p;
  }
  p.action = EntryAction::kWrite;
  p.path = std::move(clean);
  return p;
}

bool KeepXattr(std::string_view name) {
  return StartsWith(name, "user.") && !StartsWith(name, "user.overlay.");
}

Result<uint32_t> ShiftId(int64_t id, uint32_t uid_base, std::string_view path) {
  if (id < 0 || id >= 65536) {
    return Fail("layer entry", std::string(path),
                "owner id " + std::to_string(id) + " is outside the sandbox's 65536-id range");
  }
  return uid_base + static_cast<uint32_t>(id);
}

}  // namespace wb::oci
